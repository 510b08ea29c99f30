"""The Quectel EC20/EC25 dialect: QIACT bearer, QIOPEN sockets in buffer access mode.

``AT+QIACT=1`` blocks the port until the context is up and answers ``OK`` or
``ERROR`` (``AT+QIGETERROR`` then says why); ``AT+QIACT?`` gives the address.
``AT+QIOPEN`` answers ``OK`` and later ``+QIOPEN: <id>,<err>``. Sends get the
``> `` prompt and end in ``SEND OK`` (no ``OK``). In buffer access mode
``+QIURC: "recv",<id>`` says data waits, once, until ``AT+QIRD`` has read the buffer
down to ``+QIRD: 0``. The direct push form ``+QIURC: "recv",<id>,<n>`` with its bytes is
understood too. A socket the network closed (``+QIURC: "closed",<id>``) stays
allocated until the host sends ``AT+QICLOSE``, which ``read()`` does once it has
returned the last bytes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import ClassVar

from modembridge.atreader import Payload
from modembridge.dialect import (
    BEARER_CONTEXT,
    COMMON_COMMANDS,
    ATDialect,
    Command,
    DialectSocket,
    integers,
    quoted_argument,
)
from modembridge.errors import BearerError, CommandRefused, SocketError
from modembridge.models import EC20
from modembridge.modem import EventKind

log = logging.getLogger(__name__)

CONTEXT = BEARER_CONTEXT

COMMANDS: Mapping[str, Command] = {
    **COMMON_COMMANDS,
    "iccid": Command("AT+QCCID", 5.0, "+QCCID:"),
    "reset": Command("AT+CFUN=1,1", 15.0),
    "context": Command(
        'AT+QICSGP={context},1,"{apn}","{user}","{password}",{auth}', 5.0
    ),
    "activate": Command("AT+QIACT={context}", 150.0),
    "activate_query": Command("AT+QIACT?", 5.0, "+QIACT:"),
    "deactivate": Command("AT+QIDEACT={context}", 40.0),
    "open": Command(
        'AT+QIOPEN={context},{link},"TCP","{host}",{port},0,0', 150.0, "+QIOPEN:"
    ),
    "send": Command("AT+QISEND={link},{length}", 15.0),
    "read": Command("AT+QIRD={link},{length}", 5.0, "+QIRD:"),
    "close": Command("AT+QICLOSE={link}", 15.0),
    "state": Command("AT+QISTATE=1,{link}", 5.0, "+QISTATE:"),
    "last_error": Command("AT+QIGETERROR", 5.0, "+QIGETERROR:"),
}

AUTH_NONE = 0
AUTH_PAP_OR_CHAP = 3

_URC = re.compile(r'\+QIURC: "(?P<what>[a-z]+)",(?P<id>\d+)(?:,(?P<n>\d+))?')


class Ec20(ATDialect):
    """A Quectel EC20, EC25 or EC21."""

    facts = EC20
    COMMANDS: ClassVar[Mapping[str, Command]] = COMMANDS

    async def configure_apn(self, apn: str, user: str = "", password: str = "") -> None:
        """``AT+QICSGP`` for context 1, IPv4, with PAP or CHAP if a user is given."""
        await self.run(
            "context",
            context=CONTEXT,
            apn=quoted_argument(apn, "APN"),
            user=quoted_argument(user, "user"),
            password=quoted_argument(password, "password"),
            auth=AUTH_PAP_OR_CHAP if user else AUTH_NONE,
        )

    async def bearer_up(self) -> str:
        """``AT+QIACT=1`` unless active; the address from ``AT+QIACT?``."""
        address = await self._address()
        if address is not None:
            return address
        try:
            await self.run("activate", context=CONTEXT)
        except CommandRefused as refused:
            code, text = await self._last_error()
            raise BearerError(f"{self.name}: {refused}: {text}", code=code) from None
        address = await self._address()
        if address is None:
            raise BearerError(f"{self.name}: QIACT answered OK, context not active")
        return address

    async def bearer_down(self) -> None:
        """``AT+QIDEACT=1``; closes every socket of the context."""
        self._all_sockets_closed()
        try:
            await self.run("deactivate", context=CONTEXT)
        except CommandRefused as refused:
            if await self.bearer_active():
                raise BearerError(f"{self.name}: {refused}") from None

    async def bearer_active(self) -> bool:
        """Whether ``AT+QIACT?`` lists context 1 as active."""
        return await self._address() is not None

    def new_socket(self, link: int, host: str, port: int) -> Ec20Socket:
        """A socket of this module's stack."""
        return Ec20Socket(self, link, host, port)

    async def open_link(self, socket: DialectSocket) -> None:
        """``AT+QIOPEN`` in buffer access mode; success is ``+QIOPEN: <id>,0``."""
        fields = {"link": socket.link, "host": socket.host, "port": socket.port}
        prefix = f"+QIOPEN: {socket.link},"
        async with self.channel.exclusive():
            with self.channel.urc_waiter(lambda line: line.startswith(prefix)) as w:
                try:
                    response = await self.run("open", context=CONTEXT, **fields)
                except CommandRefused as refused:
                    raise SocketError(f"{socket.name}: {refused}") from None
                result = response.value("+QIOPEN:") or await w.wait(
                    response.command, self.seconds("open"), "+QIOPEN"
                )
            values = integers(result.removeprefix("+QIOPEN:"))
            code = values[1] if len(values) >= 2 else None
            if code != 0:
                # The vendor's advice after a failed open: release the number.
                await socket.release()
                raise SocketError(
                    f"{socket.name}: QIOPEN failed with {code}", code=code
                )

    async def _address(self) -> str | None:
        response = await self.run("activate_query")
        for value in response.values("+QIACT:"):
            fields = value.split(",")
            active = len(fields) >= 4 and integers(fields[1]) == [1]
            if active and integers(fields[0]) == [CONTEXT]:
                return fields[3].strip('"')
        return None

    async def _last_error(self) -> tuple[int | None, str]:
        try:
            value = await self.answer("last_error") or ""
        except CommandRefused:
            return None, ""
        code, _, text = value.partition(",")
        return (int(code) if code.strip().isdigit() else None), text.strip()

    def dialect_urc(self, line: str) -> None:
        """``+QIURC``: data waiting, a socket closed, the context deactivated."""
        match = _URC.fullmatch(line)
        if match is None:
            return
        what, number = match["what"], int(match["id"])
        socket = self.socket(number)
        if what == "recv" and socket is not None:
            socket.data_waiting()
        elif what == "closed":
            if socket is not None:
                socket.closed_by_network()
            self.emit(EventKind.SOCKET_CLOSED, line, number)
        elif what == "pdpdeact" and number == CONTEXT:
            self.bearer_lost(line)

    def payload_pushed(self, payload: Payload) -> None:
        """Direct push: ``+QIURC: "recv",<id>,<n>`` and its bytes."""
        socket = self.socket(payload.link) if payload.link is not None else None
        if socket is None:
            count = len(payload.data)
            log.warning("%s: %d pushed bytes for no socket", self.name, count)
            return
        socket.pushed(payload.data)


class Ec20Socket(DialectSocket):
    """A TCP socket of the EC20's own stack, in buffer access mode."""

    modem: Ec20

    async def send_piece(self, data: bytes) -> None:
        """``AT+QISEND``, ``> ``, bytes, ``SEND OK``."""
        modem = self.modem
        command = modem.command_text("send", link=self.link, length=len(data))
        try:
            await modem.channel.send_data(command, data, seconds=modem.seconds("send"))
        except CommandRefused as refused:
            raise SocketError(f"{self.name}: {refused}") from None

    async def close_on_module(self) -> None:
        """``AT+QICLOSE=<id>``."""
        await self.release()

    async def release(self) -> None:
        """``AT+QICLOSE=<id>``: the module keeps a closed socket until told."""
        try:
            await self.modem.run("close", link=self.link)
        except CommandRefused as refused:
            log.debug("%s: close refused (%s)", self.name, refused)
