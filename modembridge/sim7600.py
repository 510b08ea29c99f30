"""The SIMCom SIM7600 dialect: NETOPEN bearer, CIPOPEN sockets, manual receive.

Bearer and socket commands answer twice: ``OK`` at once and the real result later as
a line of its own (``+NETOPEN: 0``, ``+CIPOPEN: 0,0``, ``+CIPSEND: 0,5,5``,
``+CIPCLOSE: 0,0``), or an information line and ``ERROR`` when they fail at once.
Each is sent under the channel's exclusive hold with a URC waiter registered first.
Received data is buffered by the module (``AT+CIPRXGET=1``): ``+CIPRXGET: 1,<link>``
says data is waiting and ``AT+CIPRXGET=2,<link>,1500`` reads it. The push modes
(``RECV FROM:`` + ``+IPD<n>``, ``+RECEIVE,<link>,<n>``) are understood too, for modules
configured that way; ``+IPD`` names no link, so its bytes go to the socket whose
remote port the preceding ``RECV FROM:`` named, or to the only open socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import ClassVar

from modembridge.atreader import Payload
from modembridge.channel import ATChannel
from modembridge.dialect import (
    COMMON_COMMANDS,
    ATDialect,
    Command,
    DialectSocket,
    integers,
)
from modembridge.errors import BearerError, CommandRefused, ModemError, SocketError
from modembridge.models import SIM7600
from modembridge.modem import EventKind

log = logging.getLogger(__name__)

COMMANDS: Mapping[str, Command] = {
    **COMMON_COMMANDS,
    "iccid": Command("AT+CICCID", 5.0, "+ICCID:"),
    "reset": Command("AT+CRESET", 10.0),
    "command_mode": Command("AT+CIPMODE=0", 5.0),
    "manual_receive": Command("AT+CIPRXGET=1", 5.0),
    "socket_profile": Command("AT+CSOCKSETPN=1", 5.0),
    "netopen": Command("AT+NETOPEN", 150.0, "+NETOPEN:"),
    "netopen_query": Command("AT+NETOPEN?", 5.0, "+NETOPEN:"),
    "netclose": Command("AT+NETCLOSE", 60.0, "+NETCLOSE:"),
    "ipaddr": Command("AT+IPADDR", 5.0, "+IPADDR:"),
    "open": Command('AT+CIPOPEN={link},"TCP","{host}",{port}', 150.0, "+CIPOPEN:"),
    "send": Command("AT+CIPSEND={link},{length}", 15.0, "+CIPSEND:"),
    "read": Command("AT+CIPRXGET=2,{link},{length}", 5.0, "+CIPRXGET:"),
    "close": Command("AT+CIPCLOSE={link}", 15.0, "+CIPCLOSE:"),
}

NETWORK_LOST = "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY"
ALREADY_OPEN = "Network is already opened"
NOT_OPEN = 2  # +NETCLOSE: 2, network not opened


class Sim7600(ATDialect):
    """A SIMCom SIM7600 (E, G, SA, … with or without -H)."""

    facts = SIM7600
    COMMANDS: ClassVar[Mapping[str, Command]] = COMMANDS

    def __init__(
        self, channel: ATChannel, *, timeouts: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(channel, timeouts=timeouts)
        self._recv_from_port: int | None = None

    async def configure_apn(self, apn: str, user: str = "", password: str = "") -> None:
        """Context 1 with the APN, chosen for NETOPEN; command mode if still down."""
        if user or password:
            raise ModemError(f"{self.name}: APN credentials are not supported here")
        await super().configure_apn(apn)
        await self.run("socket_profile")
        if not await self.bearer_active():
            await self.run("command_mode")

    async def bearer_up(self) -> str:
        """``AT+NETOPEN`` until ``+NETOPEN: 0``, then the address from IPADDR."""
        async with self.channel.exclusive():
            with self.channel.urc_waiter(_starts("+NETOPEN:")) as waiter:
                try:
                    response = await self.run("netopen")
                except CommandRefused as refused:
                    if not any(ALREADY_OPEN in line for line in refused.info):
                        raise BearerError(f"{self.name}: {refused}") from refused
                    return await self._address()
                result = _line(response.info, "+NETOPEN:") or await waiter.wait(
                    response.command, self.seconds("netopen"), "+NETOPEN"
                )
        code = _first(result.removeprefix("+NETOPEN:"))
        if code != 0:
            raise BearerError(f"{self.name}: NETOPEN failed with {code}", code=code)
        return await self._address()

    async def bearer_down(self) -> None:
        """``AT+NETCLOSE``; closes every socket with the bearer."""
        self._all_sockets_closed()
        async with self.channel.exclusive():
            with self.channel.urc_waiter(_starts("+NETCLOSE:")) as waiter:
                try:
                    response = await self.run("netclose")
                except CommandRefused as refused:
                    if _first(_value(refused.info, "+NETCLOSE:")) == NOT_OPEN:
                        return
                    raise BearerError(f"{self.name}: {refused}") from refused
                result = _line(response.info, "+NETCLOSE:") or await waiter.wait(
                    response.command, self.seconds("netclose"), "+NETCLOSE"
                )
        code = _first(result.removeprefix("+NETCLOSE:"))
        if code not in (0, NOT_OPEN):
            raise BearerError(f"{self.name}: NETCLOSE failed with {code}", code=code)

    async def bearer_active(self) -> bool:
        """``AT+NETOPEN?`` says 1 (older firmware: ``1,0``)."""
        return _first(await self.answer("netopen_query") or "") == 1

    def new_socket(self, link: int, host: str, port: int) -> Sim7600Socket:
        """A socket of this module's stack."""
        return Sim7600Socket(self, link, host, port)

    async def open_link(self, socket: DialectSocket) -> None:
        """``AT+CIPOPEN`` a TCP link; success is the later ``+CIPOPEN: <l>,0``."""
        fields = {"link": socket.link, "host": socket.host, "port": socket.port}
        async with self.channel.exclusive():
            await self.run("manual_receive")
            with self.channel.urc_waiter(_starts(f"+CIPOPEN: {socket.link},")) as w:
                try:
                    response = await self.run("open", **fields)
                except CommandRefused as refused:
                    code = _second(_value(refused.info, "+CIPOPEN:"))
                    raise SocketError(f"{socket.name}: {refused}", code=code) from None
                result = _line(response.info, "+CIPOPEN:") or await w.wait(
                    response.command, self.seconds("open"), "+CIPOPEN"
                )
        code = _second(result.removeprefix("+CIPOPEN:"))
        if code != 0:
            raise SocketError(f"{socket.name}: CIPOPEN failed with {code}", code=code)

    async def _address(self) -> str:
        address = await self.answer("ipaddr")
        if not address:
            raise BearerError(f"{self.name}: AT+IPADDR gave no address")
        return address

    def dialect_urc(self, line: str) -> None:
        """Data waiting, a link closed, the network lost, a push header."""
        if line.startswith("+CIPRXGET: 1,"):
            socket = self._socket_named(_second(line.partition(":")[2]))
            if socket is not None:
                socket.data_waiting()
        elif line.startswith("+IPCLOSE:"):
            link = _first(line.partition(":")[2])
            socket = self._socket_named(link)
            if socket is not None:
                socket.closed_by_network()
            self.emit(EventKind.SOCKET_CLOSED, line, link)
        elif line.startswith(NETWORK_LOST):
            self.bearer_lost(line)
        elif line.startswith("RECV FROM:"):
            port = line.rpartition(":")[2]
            self._recv_from_port = int(port) if port.isdigit() else None

    def payload_pushed(self, payload: Payload) -> None:
        """``+RECEIVE,<link>,<n>`` names its link; ``+IPD<n>`` needs a guess."""
        link = payload.link if payload.link is not None else self._push_link()
        socket = self.socket(link) if link is not None else None
        if socket is None:
            log.warning(
                "%s: %d pushed bytes for no socket", self.name, len(payload.data)
            )
            return
        socket.pushed(payload.data)

    def _push_link(self) -> int | None:
        sockets = list(self._sockets.values())
        for socket in sockets:
            if socket.port == self._recv_from_port:
                return socket.link
        return sockets[0].link if len(sockets) == 1 else None

    def _socket_named(self, link: int | None) -> DialectSocket | None:
        return self.socket(link) if link is not None else None


class Sim7600Socket(DialectSocket):
    """A TCP link of the SIM7600's own stack."""

    modem: Sim7600

    async def send_piece(self, data: bytes) -> None:
        """``AT+CIPSEND``, prompt, bytes, ``OK``, then ``+CIPSEND: l,req,cnf``."""
        modem = self.modem
        command = modem.command_text("send", link=self.link, length=len(data))
        ends = (f"+CIPSEND: {self.link},", f"+IPCLOSE: {self.link},", NETWORK_LOST)
        async with modem.channel.exclusive():
            with modem.channel.urc_waiter(lambda line: line.startswith(ends)) as w:
                try:
                    response = await modem.channel.send_data(
                        command, data, seconds=modem.seconds("send")
                    )
                except CommandRefused as refused:
                    raise SocketError(f"{self.name}: {refused}") from None
                result = _line(response.info, "+CIPSEND:") or await w.wait(
                    command, modem.seconds("send"), "+CIPSEND"
                )
        self._check_sent(result, len(data))

    def _check_sent(self, result: str, length: int) -> None:
        if not result.startswith("+CIPSEND:"):
            raise SocketError(f"{self.name}: send failed, {result}")
        values = integers(result.removeprefix("+CIPSEND:"))
        confirmed = values[2] if len(values) == 3 else None
        if confirmed != length:
            raise SocketError(
                f"{self.name}: module took {confirmed} of {length} bytes",
                code=confirmed,
            )

    async def close_on_module(self) -> None:
        """``AT+CIPCLOSE``: ``OK`` then ``+CIPCLOSE: <link>,0``."""
        modem = self.modem
        async with modem.channel.exclusive():
            with modem.channel.urc_waiter(_starts(f"+CIPCLOSE: {self.link},")) as w:
                try:
                    response = await modem.run("close", link=self.link)
                except CommandRefused as refused:
                    log.debug("%s: already closed (%s)", self.name, refused)
                    return
                if not _line(response.info, "+CIPCLOSE:"):
                    await w.wait(response.command, modem.seconds("close"), "+CIPCLOSE")


def _starts(prefix: str) -> Callable[[str], bool]:
    return lambda line: line.startswith(prefix)


def _line(lines: tuple[str, ...], prefix: str) -> str:
    for line in lines:
        if line.startswith(prefix):
            return line
    return ""


def _value(lines: tuple[str, ...], prefix: str) -> str:
    return _line(lines, prefix).removeprefix(prefix)


def _first(text: str) -> int | None:
    values = integers(text)
    return values[0] if values else None


def _second(text: str) -> int | None:
    values = integers(text)
    return values[1] if len(values) >= 2 else None
