"""``modembridge attach``: a module as a card on the relay, for as long as wanted.

Lines typed on standard input go to the ``--to`` card, or to the card a ``B: text``
prefix names; what arrives is printed on standard output. With ``--listen`` the same
bridge is a TCP port for local programs. Status goes to standard error. Ctrl-D (end of
input) delivers what is held and exits; Ctrl-C or SIGTERM exits at once. Either way the
socket and the bearer are closed and the module is left ready for the next run; the
exit status is 1 when a message handed over was not delivered.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
from pathlib import Path

import click

from modembridge.agent import Agent, AgentConfig, EndpointError
from modembridge.cli.options import (
    HostPort,
    apn_option,
    card_option,
    check_port,
    configure_logging,
    json_option,
    port_argument,
    run,
    server_option,
    token_option,
    verbose_option,
    wire_log_option,
)
from modembridge.supervisor import RecoveryPolicy

_SECONDS = click.FloatRange(min=0.0, min_open=True)


@click.command("attach", short_help="Turn a module into a card on the relay.")
@port_argument
@card_option
@server_option
@apn_option
@click.option("--to", default=None, help="Send every input line to this card.")
@click.option(
    "--listen",
    type=HostPort(None),
    default=None,
    help="Serve the bridge on HOST:PORT for local programs instead of stdin/stdout.",
)
@click.option(
    "--raw",
    is_flag=True,
    help="With --listen and --to: bridge bytes, not lines (a device's own protocol).",
)
@token_option
@click.option(
    "--silence",
    type=_SECONDS,
    default=None,
    help="Seconds without a word from the relay that mean the socket is dead "
    "[default: 2.5 heartbeat intervals].",
)
@click.option(
    "--backoff",
    type=_SECONDS,
    default=1.0,
    show_default=True,
    help="First wait between recovery attempts; it doubles up to --backoff-max.",
)
@click.option(
    "--backoff-max",
    type=_SECONDS,
    default=60.0,
    show_default=True,
    help="Longest wait between recovery attempts.",
)
@click.option(
    "--command-timeout",
    type=_SECONDS,
    default=None,
    help="Longest wait for any one AT command, so a hung module is noticed sooner "
    "[default: each command's own limit, up to 150 s].",
)
@click.option(
    "--patience",
    type=_SECONDS,
    default=120.0,
    show_default=True,
    help="Seconds a message may wait for the relay before it is reported unsent.",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Messages in flight to one card; above 1 is faster but a card that goes "
    "away and comes back may get them out of order.",
)
@wire_log_option
@json_option
@verbose_option
def attach(
    *,
    port: str,
    card: str,
    server: tuple[str, int],
    apn: str,
    to: str | None,
    listen: tuple[str, int] | None,
    raw: bool,
    token: str | None,
    silence: float | None,
    backoff: float,
    backoff_max: float,
    command_timeout: float | None,
    patience: float,
    window: int,
    wire_log: Path | None,
    json_output: bool,
    verbose: int,
) -> None:
    """Bring the module at PORT up and bridge it to the relay as card --card."""
    configure_logging(verbose)
    if raw and (listen is None or to is None):
        raise click.UsageError("--raw needs --listen and --to")
    check_port(port)
    config = AgentConfig(
        port=port,
        card=card,
        server=server,
        apn=apn,
        wire_log=wire_log,
        to=to,
        listen=listen,
        raw=raw,
        token=token,
        json_output=json_output,
        silence_limit=silence,
        patience=patience,
        window=window,
        policy=RecoveryPolicy(backoff_base=backoff, backoff_max=backoff_max),
        command_timeout=command_timeout,
    )
    run(_attach(config), port)


async def _attach(config: AgentConfig) -> None:
    stdin = None if config.listen is not None else await _stdin_reader()
    agent = Agent(config, stdin=stdin)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, agent.interrupt)
    try:
        await agent.run()
    except EndpointError as exc:
        # Said without the port: the module is not what failed.
        raise click.ClickException(str(exc)) from exc
    if agent.undelivered:
        # Each was reported as it failed; the exit status tells a script.
        plural = "s" if agent.undelivered > 1 else ""
        raise click.ClickException(f"{agent.undelivered} message{plural} not sent")


async def _stdin_reader() -> asyncio.StreamReader:
    """Standard input as a stream; a file or a device like /dev/null is read at once."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    stdin = sys.stdin.buffer
    mode = os.fstat(stdin.fileno()).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stdin.isatty():
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), stdin
        )
    else:
        # Only pipes, sockets and terminals can be watched for input by the loop.
        reader.feed_data(await asyncio.to_thread(stdin.read))
        reader.feed_eof()
    return reader
