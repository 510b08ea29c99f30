"""``modembridge at``: one raw AT command, or an interactive AT prompt.

With a command, it prints the module's answer (information lines, then the final
result) and exits 1 when the module refused the command. Without one, it reads
commands from standard input, line by line, and prints every answer and every
unsolicited result code the module sends meanwhile, each marked as such.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from modembridge.atreader import Payload, Urc
from modembridge.channel import ATChannel
from modembridge.cli.options import (
    check_port,
    configure_logging,
    port_argument,
    run,
    verbose_option,
    wire_log_option,
)
from modembridge.errors import CommandRefused

PROMPT = "AT> "


@click.command("at", short_help="Send one AT command, or open an AT prompt.")
@port_argument
@click.argument("command", required=False)
@click.option(
    "--timeout",
    "seconds",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the final result (AT+COPS=? needs up to 180).",
)
@wire_log_option
@verbose_option
def at(
    *,
    port: str,
    command: str | None,
    seconds: float,
    wire_log: Path | None,
    verbose: int,
) -> None:
    """Send COMMAND to the module at PORT, or open an AT prompt without one."""
    configure_logging(verbose)
    check_port(port)
    problem = None if command is None else command_problem(command)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="COMMAND")
    refused = run(_session(port, command, seconds, wire_log), port)
    if refused:
        sys.exit(1)


def command_problem(command: str) -> str | None:
    """Why ``command`` cannot be sent as one AT command, or None when it can."""
    if not command.upper().startswith("AT"):
        return "an AT command starts with AT"
    if not command.isprintable():
        return "an AT command is one line of printable characters"
    return None


async def _session(
    port: str, command: str | None, seconds: float, wire_log: Path | None
) -> bool:
    """True when a single command was refused."""
    channel = await ATChannel.open(port, wire_log=wire_log)
    try:
        if command is not None:
            return not await _one(channel, command, seconds)
        await _prompt(channel, seconds)
        return False
    finally:
        await channel.close()


async def _one(channel: ATChannel, command: str, seconds: float) -> bool:
    """Send one command and print its answer; False when the module refused it."""
    try:
        response = await channel.command(command, seconds=seconds)
    except CommandRefused as refused:
        for line in refused.info:
            click.echo(line)
        click.echo(refused.result)
        return False
    for line in response.info:
        click.echo(line)
    for payload in response.payloads:
        click.echo(payload.data.decode(errors="backslashreplace"))
    click.echo(response.final.line)
    return True


async def _prompt(channel: ATChannel, seconds: float) -> None:
    """Commands from standard input until end of input or ``exit``."""
    unsubscribe = channel.subscribe(_urc_received)
    interactive = sys.stdin.isatty()
    try:
        while True:
            if interactive:
                click.echo(PROMPT, nl=False)
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line or line.strip().lower() in ("exit", "quit"):
                return
            command = line.strip()
            problem = command_problem(command) if command else None
            if problem is not None:
                click.echo(f"not sent: {problem}", err=True)
            elif command:
                await _one(channel, command, seconds)
    finally:
        unsubscribe()


def _urc_received(event: Urc | Payload) -> None:
    if isinstance(event, Urc):
        click.echo(f"[urc] {event.line}")
    else:
        click.echo(f"[data] {event.data.decode(errors='backslashreplace')}")
