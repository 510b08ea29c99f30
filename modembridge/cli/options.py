"""Options the commands share, each defined once, and how a command runs and fails.

A command that needs the port takes ``port_argument``; the relay address is
``server_option``; and so on. Where a person would keep a value for a whole session,
an environment variable stands in for the flag: ``MODEMBRIDGE_PORT``,
``MODEMBRIDGE_SERVER``, ``MODEMBRIDGE_APN``, ``MODEMBRIDGE_CARD``,
``MODEMBRIDGE_TOKEN``.

``run`` is how every command runs its coroutine: errors of the domain become one line
on standard error and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from modembridge.dialect import quoted_argument
from modembridge.discovery import holders
from modembridge.errors import (
    ModemError,
    ModemTimeout,
    PortVanished,
    RelayRefused,
    UnsupportedModem,
)

DEFAULT_RELAY_PORT = 8888

_HOST_PORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.\-]+))(?::(?P<port>\d{1,5}))?$"
)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def parse_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``, or a bare host); raises ValueError."""
    match = _HOST_PORT.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not HOST:PORT")
    host = match.group("v6") or match.group("host")
    if match.group("port") is None:
        if default_port is None:
            raise ValueError(f"{text!r} has no port (HOST:PORT)")
        return host, default_port
    port = int(match.group("port"))
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range 1-65535")
    return host, port


class HostPort(click.ParamType[tuple[str, int]]):
    """A ``HOST:PORT`` option value; the port may default."""

    name = "host:port"

    def __init__(self, default_port: int | None) -> None:
        self.default_port = default_port

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        """Parse the value, or fail the command with a usage error."""
        if isinstance(value, tuple):
            return value
        try:
            return parse_host_port(str(value), self.default_port)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _port_given(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """The port, or a usage error that also names its environment variable."""
    if not value:
        raise click.UsageError(
            "Missing argument 'PORT' (or set MODEMBRIDGE_PORT).", ctx=ctx
        )
    return value


port_argument = click.argument(
    "port",
    envvar="MODEMBRIDGE_PORT",
    type=click.Path(dir_okay=False),
    required=False,
    callback=_port_given,
)
server_option = click.option(
    "--server",
    envvar="MODEMBRIDGE_SERVER",
    type=HostPort(DEFAULT_RELAY_PORT),
    default=f"127.0.0.1:{DEFAULT_RELAY_PORT}",
    show_default=True,
    show_envvar=True,
    help="The relay, HOST[:PORT].",
)


def _apn_sendable(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The APN, or a usage error when it cannot stand in an AT command."""
    try:
        return quoted_argument(value, "APN")
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


apn_option = click.option(
    "--apn",
    envvar="MODEMBRIDGE_APN",
    default="",
    show_envvar=True,
    callback=_apn_sendable,
    help="Access point name of the SIM's operator (empty: the module's default).",
)
card_option = click.option(
    "--card",
    envvar="MODEMBRIDGE_CARD",
    required=True,
    show_envvar=True,
    help="The name this module registers under at the relay.",
)
token_option = click.option(
    "--token",
    envvar="MODEMBRIDGE_TOKEN",
    default=None,
    show_envvar=True,
    help="The card's token, when the relay requires one.",
)
wire_log_option = click.option(
    "--wire-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the whole AT dialogue, with timestamps, to this file.",
)
json_option = click.option(
    "--json", "json_output", is_flag=True, help="Print JSON, for other programs."
)
verbose_option = click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log output: -v progress, -vv debug, -vvv the AT dialogue.",
)


def configure_logging(verbose: int) -> None:
    """Log to standard error at the level ``-v`` asked for."""
    levels = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
    logging.basicConfig(
        level=levels.get(verbose, 5),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def check_port(port: str) -> None:
    """Fail with one line when the port does not exist, is no device, or is busy.

    Busy means ModemManager holds the port, or another program holds its advisory
    lock (as a running ``attach`` does). The lock is taken here, for as long as this
    process runs; programs that use neither are not detected.
    """
    if not os.path.exists(port):
        raise click.ClickException(f"{port}: no such port (is the module plugged in?)")
    if os.path.isdir(port):
        raise click.ClickException(f"{port}: is a directory, not a serial port")
    manager = [h.describe() for h in holders(port) if h.is_modemmanager]
    if manager:
        raise click.ClickException(
            f"{port}: busy, held by {', '.join(manager)} "
            "(stop it, or install the rules of `modembridge udev`)"
        )
    _lock(port)


_LOCKS: dict[str, int] = {}


def _lock(port: str) -> None:
    """Take the port's advisory lock, or fail naming who holds the port."""
    if port in _LOCKS:
        return
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise click.ClickException(describe_os_error(exc, port)) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        held = ", ".join(h.describe() for h in holders(port) if h.pid != os.getpid())
        by = f", held by {held}" if held else ""
        raise click.ClickException(
            f"{port}: busy, in use by another program{by}"
        ) from exc
    _LOCKS[port] = fd


def release_ports() -> None:
    """Give back the locks ``check_port`` took (for callers that run many commands)."""
    for fd in _LOCKS.values():
        os.close(fd)
    _LOCKS.clear()


def run(coroutine: Coroutine[Any, Any, T], port: str | None = None) -> T:
    """Run a command's coroutine; domain errors become a one-line ClickException."""
    try:
        return asyncio.run(coroutine)
    except RelayRefused as exc:
        raise click.ClickException(str(exc)) from exc
    except PortVanished as exc:
        cause = exc.__cause__
        why = f"cannot open it ({cause})" if cause else "the port went away"
        raise click.ClickException(f"{exc.port}: {why}") from exc
    except UnsupportedModem as exc:
        raise click.ClickException(f"{exc} (is this the module's AT port?)") from exc
    except ModemTimeout as exc:
        where = f"{port}: " if port else ""
        hint = " (is this the module's AT port?)" if exc.command == "AT" else ""
        raise click.ClickException(f"{where}{exc}{hint}") from exc
    except ModemError as exc:
        where = f"{port}: " if port and port not in str(exc) else ""
        raise click.ClickException(f"{where}{exc}") from exc
    except OSError as exc:
        raise click.ClickException(describe_os_error(exc, port)) from exc


def describe_os_error(exc: OSError, port: str | None) -> str:
    """One line for an OS error, naming who holds a busy port when we can tell."""
    if port and exc.errno in (errno.EBUSY, errno.EACCES, errno.EAGAIN):
        held_by = ", ".join(h.describe() for h in holders(port))
        if held_by:
            return f"{port}: busy, held by {held_by}"
        return f"{port}: {exc.strerror} (is another program using it?)"
    target = f"{port}: " if port else ""
    return f"{target}{exc.strerror or exc}"
