"""A small control socket for a running simulated module.

``modembridge simulate --control PATH`` listens on a Unix socket; each line sent to
it is one fault, answered by one line (``ok``, or ``error: <why>``)::

    $ echo drop-bearer | socat - UNIX-CONNECT:/tmp/sim.ctl
    ok

Commands: ``drop-bearer``, ``close-socket <link>``, ``lose-registration <seconds>``,
``signal <rssi>``, ``no-signal on|off``, ``latency <in> <out>``, ``fragment <n>|off``,
``hang``, ``resume``, ``reboot [<seconds>]``, ``violations`` (one line each, then
``ok``). Lines are split into words and matched against this table; nothing else
is interpreted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from modembridge.simulator.modem import SimulatedModem

logger = logging.getLogger(__name__)

MAX_LINE = 256

ARGUMENTS = {
    "drop-bearer": 0,
    "close-socket": 1,
    "lose-registration": 1,
    "signal": 1,
    "no-signal": 1,
    "latency": 2,
    "fragment": 1,
    "hang": 0,
    "resume": 0,
    "reboot": 0,
    "violations": 0,
}


def execute(sim: SimulatedModem, line: str) -> list[str]:
    """The reply lines to one control line; the last is ``ok`` or ``error: ...``."""
    words = line.split()
    if not words:
        return ["error: empty command"]
    name, args = words[0], words[1:]
    needed = ARGUMENTS.get(name)
    if needed is None:
        return [f"error: unknown command {name[:40]!r}"]
    if len(args) < needed:
        return [f"error: {name} needs {needed} argument(s)"]
    try:
        return [*_apply(sim, name, args), "ok"]
    except ValueError as error:
        return [f"error: {error}"]


def _apply(sim: SimulatedModem, name: str, args: list[str]) -> list[str]:
    """Inject one fault; return the lines it reports (only ``violations`` has any)."""
    match name:
        case "drop-bearer":
            sim.drop_bearer()
        case "close-socket":
            sim.close_socket(int(args[0]))
        case "lose-registration":
            sim.lose_registration(_number(args[0]))
        case "signal":
            sim.set_signal(_rssi(args[0]))
        case "no-signal":
            sim.set_no_signal(_switch(args[0]))
        case "latency":
            sim.set_latency(_number(args[0]), _number(args[1]))
        case "fragment":
            sim.set_fragment(None if args[0] == "off" else max(1, int(args[0])))
        case "hang":
            sim.hang()
        case "resume":
            sim.resume()
        case "reboot":
            sim.reboot_soon(_number(args[0]) if args else None)
        case _:
            return [str(v) for v in sim.violations]
    return []


def _number(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1e6:
        raise ValueError(f"{text} is out of range")
    return value


def _rssi(text: str) -> int:
    value = int(text)
    if not (0 <= value <= 31 or value == 99):
        raise ValueError(f"{text} is not an RSSI (0-31, or 99)")
    return value


def _switch(text: str) -> bool:
    if text not in ("on", "off"):
        raise ValueError(f"{text!r} is not on or off")
    return text == "on"


class ControlSocket:
    """A Unix socket that applies faults to one simulated module."""

    def __init__(self, sim: SimulatedModem, path: str) -> None:
        self._sim = sim
        self._path = path
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen at the path, replacing a stale socket file."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        self._server = await asyncio.start_unix_server(
            self._serve, self._path, limit=MAX_LINE
        )
        logger.info("modem[%s]: control socket at %s", self._sim.name, self._path)

    async def stop(self) -> None:
        """Stop listening and remove the socket file."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                text = line.decode("utf-8", "replace")
                logger.info("modem[%s]: control: %s", self._sim.name, text.strip())
                reply = execute(self._sim, text)
                writer.write("".join(f"{r}\n" for r in reply).encode())
                await writer.drain()
        except (ValueError, ConnectionError) as error:
            logger.warning(
                "modem[%s]: control client dropped: %s", self._sim.name, error
            )
        finally:
            writer.close()
