"""What the SIM7600 and EC20 dialects share: the 27.007 part of the modem interface.

Identity, SIM, signal, registration, operator, APN context and radio are standard
commands both modules answer the same way. Everything that differs (bearer, sockets,
their URCs) lives in :mod:`modembridge.sim7600` and :mod:`modembridge.ec20`, which
subclass :class:`ATDialect` and extend its command table. Commands and their time
limits are data (:class:`Command`); per-command limits can be overridden when the
dialect is made.

A module socket (:class:`DialectSocket`) keeps what the module delivered in a queue.
In the buffered receive modes a URC only says "data waiting"; the next ``read()``
drains the module's buffer with read commands until it is empty, because both modules
notify once and stay silent until the buffer was emptied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from modembridge.atreader import Payload, Urc
from modembridge.channel import ATChannel, Response
from modembridge.errors import (
    CommandRefused,
    ModemError,
    PortVanished,
    SocketError,
)
from modembridge.modem import (
    EventCallback,
    EventKind,
    Identity,
    Modem,
    ModemEvent,
    ModemSocket,
    Registration,
    RegStat,
    Signal,
    SimState,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Command:
    """One AT command: its text (a format template), time limit, answer prefix."""

    template: str
    seconds: float
    answer: str = ""

    def text(self, **fields: object) -> str:
        """The command line with ``fields`` filled in."""
        return self.template.format(**fields)


COMMON_COMMANDS: Mapping[str, Command] = {
    "probe": Command("AT", 1.0),
    "echo_off": Command("ATE0", 5.0),
    "verbose_errors": Command("AT+CMEE=2", 5.0),
    "info": Command("ATI", 5.0),
    "manufacturer": Command("AT+CGMI", 5.0, "+CGMI:"),
    "model": Command("AT+CGMM", 5.0, "+CGMM:"),
    "firmware": Command("AT+CGMR", 5.0, "+CGMR:"),
    "imei": Command("AT+CGSN", 5.0, "+CGSN:"),
    "sim": Command("AT+CPIN?", 5.0, "+CPIN:"),
    "signal": Command("AT+CSQ", 5.0, "+CSQ:"),
    "creg": Command("AT+CREG?", 5.0, "+CREG:"),
    "cgreg": Command("AT+CGREG?", 5.0, "+CGREG:"),
    "cereg": Command("AT+CEREG?", 5.0, "+CEREG:"),
    "operator": Command("AT+COPS?", 75.0, "+COPS:"),
    "radio_off": Command("AT+CFUN=0", 15.0),
    "radio_on": Command("AT+CFUN=1", 15.0),
    "define_context": Command('AT+CGDCONT=1,"IP","{apn}"', 5.0),
}

# +CPIN? answers, and the +CME ERROR numbers and words of a SIM that is not ready.
SIM_ANSWERS: Mapping[str, SimState] = {
    "READY": SimState.READY,
    "SIM PIN": SimState.PIN_REQUIRED,
    "SIM PUK": SimState.PUK_REQUIRED,
    "PH-SIM PIN": SimState.PIN_REQUIRED,
    "PH-NET PIN": SimState.PIN_REQUIRED,
}
SIM_ERRORS: Mapping[int | str, SimState] = {
    10: SimState.ABSENT,
    11: SimState.PIN_REQUIRED,
    12: SimState.PUK_REQUIRED,
    13: SimState.FAILURE,
    14: SimState.BUSY,
    15: SimState.FAILURE,
    "sim not inserted": SimState.ABSENT,
    "sim pin required": SimState.PIN_REQUIRED,
    "sim puk required": SimState.PUK_REQUIRED,
    "sim failure": SimState.FAILURE,
    "sim busy": SimState.BUSY,
    "sim wrong": SimState.FAILURE,
}

REGISTRATION_URCS = ("+CREG:", "+CGREG:", "+CEREG:")
BEARER_EVENTS = re.compile(r"\+CGEV: (?:NW|ME) (?:PDN )?(?:DEACT|DETACH)")

# The context both dialects bring their bearer up on.
BEARER_CONTEXT = 1

# Host names and APNs end up inside a quoted AT argument.
_SAFE_ARGUMENT = re.compile(r"[\x20-\x7e]*")


def integers(text: str) -> list[int]:
    """The integers in a comma separated answer (``"0,5"`` -> ``[0, 5]``)."""
    values = []
    for raw in text.split(","):
        field = raw.strip()
        if field.lstrip("-").isdigit():
            values.append(int(field))
    return values


def quoted_argument(value: str, what: str) -> str:
    """``value`` if it can stand between double quotes in a command line."""
    if '"' in value or not _SAFE_ARGUMENT.fullmatch(value):
        raise ValueError(f"{what} {value!r} cannot be sent in an AT command")
    return value


def ends_bearer(line: str, context: int = BEARER_CONTEXT) -> bool:
    """Whether a ``+CGEV`` line ends the default bearer of ``context``.

    A detach ends every context. ``PDN DEACT <cid>`` and the older
    ``DEACT <type>,<addr>[,<cid>]`` end the context they name (or ours when they name
    none); ``DEACT <p_cid>,<cid>,<event>`` only ends a dedicated bearer on top of it.
    """
    match = BEARER_EVENTS.match(line)
    if match is None:
        return False
    if match.group().endswith("DETACH"):
        return True
    fields = [field.strip() for field in line[match.end() :].split(",")]
    if "PDN" in match.group():
        named = integers(fields[0])
    elif fields[0].isdigit():
        return False
    else:
        named = integers(fields[2]) if len(fields) >= 3 else []
    return not named or named[0] == context


def registration_stat(text: str) -> RegStat | None:
    """The ``<stat>`` of a read answer (``n,stat[,…]``) or a URC (``stat[,…]``)."""
    fields = integers(text.split('"', maxsplit=1)[0])
    if not fields:
        return None
    value = fields[1] if len(fields) >= 2 and "," in text else fields[0]
    with contextlib.suppress(ValueError):
        return RegStat(value)
    return None


class ATDialect(Modem):
    """A modem driven by AT commands from a table, over one :class:`ATChannel`."""

    COMMANDS: ClassVar[Mapping[str, Command]] = COMMON_COMMANDS

    def __init__(
        self, channel: ATChannel, *, timeouts: Mapping[str, float] | None = None
    ) -> None:
        self.channel = channel
        self.port = channel.port
        self.name = channel.name
        self._seconds = {name: c.seconds for name, c in self.COMMANDS.items()}
        self._seconds.update(timeouts or {})
        self._callbacks: list[EventCallback] = []
        self._sockets: dict[int, DialectSocket] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        channel.subscribe(self._urc_received)
        channel.add_lost_callback(self._port_lost)

    def command_text(self, name: str, **fields: object) -> str:
        """The line the table holds for ``name``, with ``fields`` filled in."""
        return self.COMMANDS[name].text(**fields)

    def seconds(self, name: str) -> float:
        """The time limit for the command ``name``."""
        return self._seconds[name]

    async def run(self, name: str, **fields: object) -> Response:
        """Send the table's command ``name`` with its own time limit."""
        text = self.command_text(name, **fields)
        return await self.channel.command(text, seconds=self.seconds(name))

    async def answer(self, name: str, **fields: object) -> str | None:
        """The value of the command's answer line (without its prefix)."""
        response = await self.run(name, **fields)
        return response.value(self.COMMANDS[name].answer)

    async def prepare(self) -> None:
        """Answer to ``AT``, echo off, verbose errors."""
        await self.run("probe")
        await self.run("echo_off")
        await self.run("verbose_errors")

    async def identify(self) -> Identity:
        """Manufacturer, model, firmware and IMEI from CGMI/CGMM/CGMR/CGSN, ICCID."""
        return Identity(
            manufacturer=await self._plain("manufacturer"),
            model=await self._plain("model"),
            firmware=await self._plain("firmware"),
            imei=await self._plain("imei"),
            iccid=await self._iccid(),
        )

    async def sim_state(self) -> SimState:
        """The SIM's state from ``AT+CPIN?`` or from the error it answers."""
        try:
            value = await self.answer("sim")
        except CommandRefused as refused:
            state = SIM_ERRORS.get(refused.code or refused.text.lower())
            if state is None:
                raise
            return state
        return SIM_ANSWERS.get(value or "", SimState.FAILURE)

    async def signal(self) -> Signal:
        """``+CSQ: <rssi>,<ber>``."""
        values = integers(await self.answer("signal") or "")
        if len(values) != 2:
            raise ModemError(f"{self.name}: unexpected AT+CSQ answer")
        return Signal(rssi=values[0], ber=values[1])

    async def registration(self) -> Registration:
        """CREG, CGREG and CEREG; a domain the module refuses to report is None."""
        return Registration(
            creg=await self._registration("creg"),
            cgreg=await self._registration("cgreg"),
            cereg=await self._registration("cereg"),
        )

    async def operator(self) -> str | None:
        """The quoted name in ``+COPS: <mode>,<format>,"<oper>",<AcT>``."""
        value = await self.answer("operator") or ""
        parts = value.split('"')
        return parts[1] if len(parts) >= 3 and parts[1] else None

    async def configure_apn(self, apn: str, user: str = "", password: str = "") -> None:
        """Write the APN into PDP context 1."""
        await self.run("define_context", apn=quoted_argument(apn, "APN"))

    async def radio_off(self) -> None:
        """``AT+CFUN=0``."""
        await self.run("radio_off")

    async def radio_on(self) -> None:
        """``AT+CFUN=1``."""
        await self.run("radio_on")

    async def reset(self) -> None:
        """Reboot the module; its sockets are gone and its port will vanish."""
        await self.run("reset")
        self._all_sockets_closed()

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback`` for every module event; returns the unsubscribe."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    async def close(self) -> None:
        """Stop background work and close the serial port."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.channel.close()

    async def open_socket(self, host: str, port: int) -> DialectSocket:
        """Open a TCP connection on the lowest free socket number of the module."""
        quoted_argument(host, "host")
        link = self.free_link()
        socket = self.new_socket(link, host, port)
        self.add_socket(socket)
        try:
            await self.open_link(socket)
        except BaseException:
            self.socket_gone(link)
            raise
        log.info("%s: link %d open to %s:%d", self.name, link, host, port)
        return socket

    @abstractmethod
    def new_socket(self, link: int, host: str, port: int) -> DialectSocket:
        """This dialect's socket object for ``link``, not yet open on the module."""

    @abstractmethod
    async def open_link(self, socket: DialectSocket) -> None:
        """Ask the module to connect ``socket``; raise ``SocketError`` on failure."""

    def free_link(self) -> int:
        """The lowest socket number the module has free."""
        for link in range(self.facts.socket_count):
            if link not in self._sockets:
                return link
        raise SocketError(f"{self.name}: all {self.facts.socket_count} sockets in use")

    def socket_gone(self, link: int) -> None:
        """Forget socket ``link``; its number can be used again."""
        self._sockets.pop(link, None)

    def emit(self, kind: EventKind, urc: str, link: int | None = None) -> None:
        """Tell every subscriber about a module event."""
        event = ModemEvent(kind, urc, link)
        log.info("%s: %s (%s)", self.name, kind.value, urc)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("%s: event subscriber failed on %r", self.name, event)

    @abstractmethod
    def dialect_urc(self, line: str) -> None:
        """Handle a URC only this dialect prints."""

    @abstractmethod
    def payload_pushed(self, payload: Payload) -> None:
        """Deliver bytes the module pushed without being asked."""

    async def _plain(self, name: str) -> str:
        response = await self.run(name)
        prefix = self.COMMANDS[name].answer
        for line in response.info:
            return line.removeprefix(prefix).strip()
        raise ModemError(f"{self.name}: {response.command} gave no answer")

    async def _iccid(self) -> str | None:
        try:
            value = await self.answer("iccid")
        except CommandRefused:
            return None  # no SIM, or not readable yet
        return value or None

    async def _registration(self, name: str) -> RegStat | None:
        try:
            value = await self.answer(name)
        except CommandRefused:
            return None
        return registration_stat(value) if value else None

    def _urc_received(self, event: Urc | Payload) -> None:
        if isinstance(event, Payload):
            self.payload_pushed(event)
            return
        line = event.line
        if line == "RDY":
            self._rebooted(line)
        elif line.startswith(REGISTRATION_URCS):
            self.emit(EventKind.REGISTRATION_CHANGED, line)
        elif line.startswith("+CPIN:"):
            self.emit(EventKind.SIM_CHANGED, line)
        elif ends_bearer(line):
            self.bearer_lost(line)
        elif line.startswith("+CGEV:"):
            log.debug("%s: packet-domain event for another bearer: %s", self.name, line)
        else:
            self.dialect_urc(line)

    def bearer_lost(self, line: str) -> None:
        """The network took the bearer away, and every socket with it."""
        self._all_sockets_closed()
        self.emit(EventKind.BEARER_LOST, line)

    def socket(self, link: int) -> DialectSocket | None:
        """The open socket with number ``link``."""
        return self._sockets.get(link)

    def add_socket(self, socket: DialectSocket) -> None:
        """Route URCs and pushed bytes for ``socket.link`` to ``socket``."""
        self._sockets[socket.link] = socket

    def _rebooted(self, line: str) -> None:
        # A module that restarted by itself has echo on again and no sockets left.
        self._all_sockets_closed()
        self.emit(EventKind.REBOOTED, line)
        task = asyncio.create_task(self._echo_off_again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _echo_off_again(self) -> None:
        try:
            await self.run("echo_off")
        except ModemError as error:
            log.warning("%s: echo off after reboot failed: %s", self.name, error)

    def _all_sockets_closed(self) -> None:
        for socket in list(self._sockets.values()):
            socket.closed_by_network()

    def _port_lost(self, error: ModemError) -> None:
        for socket in list(self._sockets.values()):
            socket.port_lost(error)


class DialectSocket(ModemSocket):
    """A module TCP socket: a receive queue fed by buffered reads or pushes."""

    def __init__(self, modem: ATDialect, link: int, host: str, port: int) -> None:
        self.link = link
        self.host = host
        self.port = port
        self.modem = modem
        self.name = f"{modem.name} link {link}"
        self._chunks: deque[bytes] = deque()
        self._changed = asyncio.Event()
        self._data_waiting = False
        self._remote_closed = False
        self._released = False
        self._closed = False
        self._lost: ModemError | None = None

    def data_waiting(self) -> None:
        """The module said it holds bytes for this socket."""
        self._data_waiting = True
        self._changed.set()

    def pushed(self, data: bytes) -> None:
        """The module pushed bytes for this socket."""
        self._chunks.append(data)
        self._changed.set()

    def closed_by_network(self) -> None:
        """The peer or the network closed the connection."""
        self._remote_closed = True
        self._changed.set()

    def port_lost(self, error: ModemError) -> None:
        """The AT port is gone; every call raises from now on."""
        self._lost = error
        self._changed.set()

    async def read(self) -> bytes:
        """The next bytes received; ``b""`` once the peer or network closed it."""
        while True:
            if self._chunks:
                return self._take()
            self._check_port()
            if self._closed:
                return b""
            if self._data_waiting:
                self._data_waiting = False
                await self._drain()
                continue
            if self._remote_closed:
                await self._release_after_remote_close()
                return b""
            self._changed.clear()
            await self._changed.wait()

    async def write(self, data: bytes) -> None:
        """Send ``data`` in pieces of at most the module's per-send limit."""
        limit = self.modem.facts.max_send
        for start in range(0, len(data), limit):
            self._check_writable()
            await self.send_piece(data[start : start + limit])

    async def close(self) -> None:
        """Close the socket on the module; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._changed.set()
        self.modem.socket_gone(self.link)
        if self._lost is not None:
            return
        if self._remote_closed:
            await self._release_after_remote_close()
        else:
            await self.close_on_module()

    async def drain_piece(self) -> bytes:
        """Read once from the module's buffer; ``b""`` when it is empty."""
        response = await self.modem.run(
            "read", link=self.link, length=self.modem.facts.max_read
        )
        return b"".join(payload.data for payload in response.payloads)

    @abstractmethod
    async def send_piece(self, data: bytes) -> None:
        """Send at most ``max_send`` bytes and wait for the module's result."""

    @abstractmethod
    async def close_on_module(self) -> None:
        """Close an open connection."""

    async def release(self) -> None:
        """Free the socket number after the network closed it (if the module asks)."""

    async def _drain(self) -> None:
        while not self._closed:
            try:
                data = await self.drain_piece()
            except CommandRefused as refused:
                log.debug("%s: read refused (%s)", self.name, refused)
                return
            if not data:
                return
            self._chunks.append(data)

    def _take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    async def _release_after_remote_close(self) -> None:
        if self._released or self._lost is not None:
            return
        self._released = True
        self.modem.socket_gone(self.link)
        with contextlib.suppress(CommandRefused):
            await self.release()

    def _check_port(self) -> None:
        if isinstance(self._lost, PortVanished):
            raise PortVanished(self.modem.port)
        if self._lost is not None:
            raise ModemError(f"{self.name}: {self._lost}")

    def _check_writable(self) -> None:
        self._check_port()
        if self._closed:
            raise SocketError(f"{self.name}: socket is closed")
        if self._remote_closed:
            raise SocketError(f"{self.name}: closed by the network or the peer")
