"""The simulated Quectel EC20: QIACT/QIOPEN TCP stack over real sockets.

Shapes follow the recordings of EC2x modules (and of the BG96, which shares the
socket commands) and the reference notes: ``OK`` then ``+QIOPEN: <id>,<err>``, the
``\\r\\n> `` prompt with its trailing space, ``SEND OK`` with no ``OK``, buffer access
(``+QIURC: "recv",<id>`` once until a read returns ``+QIRD: 0``; reads framed
``+QIRD: <n>`` + bytes + CR LF + ``OK``) and direct push (``+QIURC: "recv",<id>,<n>``
+ bytes + CR LF). A socket closed by the far end prints ``+QIURC: "closed",<id>`` and
stays allocated, in state 4, until ``AT+QICLOSE``; opening its id before that fails
with 563. Losing the bearer prints ``+QIURC: "pdpdeact",<ctx>``.

Choices where the sources leave a gap: opening on a context that is not active gives
``+QIOPEN: <id>,561``; ``AT+QIACT`` on an active context, or while unregistered,
answers ``ERROR``; after ``pdpdeact`` the context's sockets stay allocated in state 4
without a ``closed`` URC each. Not modelled: UDP, listeners, transparent access mode
2, variable-length and hex sends.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from modembridge.models import EC20
from modembridge.simulator.command import Command, Form
from modembridge.simulator.personality import (
    PUSH_BACKLOG,
    Identity,
    ModuleLink,
    Personality,
    Reply,
)
from modembridge.simulator.sockets import (
    OpenError,
    OpenFailure,
    TcpSocket,
    open_tcp,
    resolve,
)

logger = logging.getLogger(__name__)

ERROR_TEXT = {
    0: "operate successfully",
    550: "unknown error",
    552: "invalid parameters",
    561: "open PDP context failed",
    563: "socket identity has been used",
    565: "DNS parse failed",
    566: "socket connect failed",
    567: "socket has been closed",
    569: "operation timeout",
    570: "PDP context broken down",
}

_OPEN_ERRORS = {
    OpenFailure.DNS: 565,
    OpenFailure.REFUSED: 566,
    OpenFailure.NETWORK: 566,
    OpenFailure.TIMEOUT: 569,
}

# Socket states of +QISTATE.
OPENING = 1
CONNECTED = 2
CLOSING = 4

_OPEN_TIMEOUT = 150.0
_CONTEXTS = range(1, 17)


def _context(command: Command, index: int = 0) -> int | None:
    """The context id argument at ``index`` if it is one of the 16 valid ids."""
    context = command.int_arg(index)
    return context if context in _CONTEXTS else None


@dataclass
class Slot:
    """One allocated connect id and what the module knows about it."""

    context: int
    host: str
    port: int
    mode: int
    state: int = OPENING
    sock: TcpSocket | None = None
    notified: bool = False


class Ec20(Personality):
    """An EC20 with its internal TCP/IP stack backed by real connections."""

    facts = EC20

    def __init__(self, module: ModuleLink, identity: Identity) -> None:
        super().__init__(module, identity)
        self.cmee = 1
        self.apns: dict[int, str] = {}
        self.active: set[int] = set()
        self.slots: dict[int, Slot] = {}
        self.last_error = 0
        self.handlers.update(
            {
                "+QCCID": self.iccid,
                "+CSUB": self.sub_edition,
                "+QICSGP": self.context_setup,
                "+QIACT": self.activate,
                "+QIDEACT": self.deactivate,
                "+QIOPEN": self.open_socket,
                "+QISEND": self.send,
                "+QIRD": self.read,
                "+QICLOSE": self.close,
                "+QISTATE": self.state,
                "+QIGETERROR": self.get_error,
                "+QIDNSGIP": self.resolve_name,
                "+QURCCFG": self.urc_port,
                "+QPOWD": self.power_down,
            }
        )

    def identification_lines(self) -> list[str]:
        """``ATI`` as Quectel prints it."""
        return [
            self.facts.manufacturer,
            self.identity.model,
            f"Revision: {self.identity.revision}",
        ]

    async def iccid(self, command: Command) -> Reply:
        """``AT+QCCID``."""
        return self.sim_error() or Reply([f"+QCCID: {self.identity.iccid}"])

    async def sub_edition(self, command: Command) -> Reply:
        """``AT+CSUB``."""
        return Reply(["SubEdition: V04"])

    async def urc_port(self, command: Command) -> Reply:
        """``AT+QURCCFG="urcport"[,<port>]``: URCs always come on this port."""
        if command.form is not Form.SET or command.arg(0).lower() != "urcport":
            return Reply(result="ERROR")
        if len(command.args) == 1:
            return Reply(['+QURCCFG: "urcport","usbat"'])
        return Reply()

    async def power_down(self, command: Command) -> Reply:
        """``AT+QPOWD``: ``OK``, ``POWERED DOWN``, then the port vanishes."""
        self.spawn(self._power_down_after_reply())
        return Reply()

    async def _power_down_after_reply(self) -> None:
        await self.after_reply()
        self.urc("POWERED DOWN")
        self.module.power_off()

    def radio_changed(self, on: bool) -> None:
        """Radio on again: the SIM reports in as after boot; off drops the bearer."""
        if not on:
            self.drop_bearer()
            return
        self.spawn(self._sim_urcs_after_reply())

    async def _sim_urcs_after_reply(self) -> None:
        await self.after_reply()
        if self.sim_error() is None:
            for text in (
                "+CPIN: READY",
                "+QUSIM: 1",
                "+QIND: SMS DONE",
                "+QIND: PB DONE",
            ):
                self.urc(text)

    # Bearer

    async def context_setup(self, command: Command) -> Reply:
        """``AT+QICSGP=<ctx>,<type>,<apn>,<user>,<password>,<auth>``."""
        context = _context(command)
        if context is None:
            return Reply(result="ERROR")
        if len(command.args) == 1:
            apn = self.apns.get(context, "")
            return Reply([f'+QICSGP: 1,"{apn}","","",0'])
        self.apns[context] = command.arg(2)
        return Reply()

    async def activate(self, command: Command) -> Reply:
        """``AT+QIACT=<ctx>`` blocks until the bearer is up; ``?`` lists them."""
        if command.form is Form.READ:
            address = self.identity.address
            return Reply([f'+QIACT: {c},1,1,"{address}"' for c in sorted(self.active)])
        if command.form is Form.TEST:
            return Reply(["+QIACT: (1-16)"])
        context = _context(command)
        if context is None or context in self.active:
            return Reply(result="ERROR")
        await asyncio.sleep(self.module.bearer_delay)
        if not self.radio.registered:
            self.last_error = 561
            return Reply(result="ERROR")
        self.active.add(context)
        logger.info("modem[%s]: context %d active", self.name, context)
        return Reply()

    async def deactivate(self, command: Command) -> Reply:
        """``AT+QIDEACT=<ctx>``: the context and all its sockets go."""
        context = _context(command)
        if context is None:
            return Reply(result="ERROR")
        self.active.discard(context)
        for connect_id, slot in list(self.slots.items()):
            if slot.context == context:
                self._release(connect_id)
        return Reply()

    def bearer_active(self) -> bool:
        """Context 1 is the bearer ``+CGACT?`` reports."""
        return 1 in self.active

    def drop_bearer(self) -> None:
        """The network deactivated the contexts: ``+QIURC: "pdpdeact",<ctx>``."""
        for context in sorted(self.active):
            self.active.discard(context)
            for slot in self.slots.values():
                if slot.context == context:
                    self._break(slot)
            self.urc(f'+QIURC: "pdpdeact",{context}')

    def drop_sockets(self) -> None:
        """Close every connection and free every id."""
        for connect_id in list(self.slots):
            self._release(connect_id)

    def _break(self, slot: Slot) -> None:
        """The connection is gone but the id stays allocated until ``AT+QICLOSE``."""
        if slot.sock is not None:
            slot.sock.close()
        slot.state = CLOSING

    def _release(self, connect_id: int) -> None:
        slot = self.slots.pop(connect_id, None)
        if slot is not None and slot.sock is not None:
            slot.sock.close()

    # Sockets

    async def open_socket(self, command: Command) -> Reply:
        """``AT+QIOPEN=<ctx>,<id>,"TCP",<host>,<port>[,<local>[,<mode>]]``."""
        if command.form is Form.TEST:
            return Reply(
                [
                    '+QIOPEN: (1-16),(0-11),"TCP/UDP/TCP LISTENER/UDP SERVICE",'
                    '"<IP_address>/<domain_name>",<remote_port>,<local_port>,(0-2)'
                ]
            )
        request = self._open_request(command)
        if request is None:
            return Reply(result="ERROR")
        self.spawn(self._open(*request))
        return Reply()

    def _open_request(self, command: Command) -> tuple[int, int, str, int, int] | None:
        """Context, id, host, port and access mode of a valid TCP open request."""
        context, connect_id = _context(command), command.int_arg(1)
        host, port = command.arg(3), command.int_arg(4)
        mode = command.int_arg(6, 0)
        valid = (
            context is not None
            and connect_id is not None
            and 0 <= connect_id < self.facts.socket_count
            and mode in (0, 1)
            and command.arg(2).upper() == "TCP"
            and bool(host)
            and port is not None
            and 0 < port < 65536
        )
        if not valid:
            return None
        if context is None or connect_id is None or port is None or mode is None:
            return None
        return context, connect_id, host, port, mode

    async def _open(
        self, context: int, connect_id: int, host: str, port: int, mode: int
    ) -> None:
        await self.after_reply()
        if connect_id in self.slots:
            self._open_failed(connect_id, 563)
            return
        if context not in self.active:
            self._open_failed(connect_id, 561)
            return
        slot = Slot(context, host, port, mode)
        self.slots[connect_id] = slot
        try:
            sock = await open_tcp(
                host, port, connect_id, self, _OPEN_TIMEOUT, name=self.name
            )
        except OpenError as error:
            logger.info("modem[%s]: socket %d: %s", self.name, connect_id, error)
            self.slots.pop(connect_id, None)
            self._open_failed(connect_id, _OPEN_ERRORS[error.reason])
            return
        if self.slots.get(connect_id) is not slot or context not in self.active:
            sock.close()
            self._open_failed(connect_id, 566)
            return
        slot.sock, slot.state = sock, CONNECTED
        self.last_error = 0
        self.urc(f"+QIOPEN: {connect_id},0")

    def _open_failed(self, connect_id: int, code: int) -> None:
        self.last_error = code
        self.urc(f"+QIOPEN: {connect_id},{code}")

    async def close(self, command: Command) -> Reply:
        """``AT+QICLOSE=<id>[,<timeout>]``: frees the id whatever its state."""
        connect_id = command.int_arg(0)
        if connect_id is None or not 0 <= connect_id < self.facts.socket_count:
            return Reply(result="ERROR")
        self._release(connect_id)
        return Reply()

    def close_socket(self, link: int) -> None:
        """The network closed socket ``link``: the same as the far end closing it."""
        slot = self.slots.get(link)
        if slot is not None and slot.sock is not None and slot.sock.connected:
            sock = slot.sock
            sock.close()
            self.socket_closed(sock)

    async def state(self, command: Command) -> Reply:
        """``AT+QISTATE?``, ``AT+QISTATE=1,<id>``, ``AT+QISTATE=0,<ctx>``."""
        chosen = sorted(self.slots)
        if command.form is Form.SET:
            kind, value = command.int_arg(0), command.int_arg(1)
            if kind == 1:
                chosen = [value] if value in self.slots else []
            elif kind == 0:
                chosen = [i for i in chosen if self.slots[i].context == value]
            else:
                return Reply(result="ERROR")
        return Reply([self._state_line(i) for i in chosen])

    def _state_line(self, connect_id: int) -> str:
        slot = self.slots[connect_id]
        sock = slot.sock
        address = sock.remote_ip if sock and sock.remote_ip else slot.host
        local = sock.local_port if sock else 0
        return (
            f'+QISTATE: {connect_id},"TCP","{address}",{slot.port},{local},'
            f'{slot.state},{slot.context},0,{slot.mode},"usbat"'
        )

    async def get_error(self, command: Command) -> Reply:
        """``AT+QIGETERROR``: the code of the last TCP/IP failure."""
        text = ERROR_TEXT.get(self.last_error, "unknown error")
        return Reply([f"+QIGETERROR: {self.last_error},{text}"])

    # Sending

    async def send(self, command: Command) -> Reply:
        """``AT+QISEND=<id>,<n>``: prompt, payload, ``SEND OK``; ``n`` 0 asks counts."""
        slot = self.slots.get(command.int_arg(0, -1) or 0)
        size = command.int_arg(1, -1) or 0
        if command.form is not Form.SET or slot is None:
            return Reply(result="ERROR")
        if size == 0:
            return Reply([self._send_counts(slot)])
        sendable = slot.state == CONNECTED and slot.sock is not None
        if not sendable or not 0 < size <= self.facts.max_send:
            return Reply(result="ERROR")

        payload = await self.module.engine.read_payload(size, self.facts.prompt)

        if slot.sock is None or not slot.sock.send(payload):
            return Reply(result="SEND FAIL")
        return Reply(result="SEND OK")

    def _send_counts(self, slot: Slot) -> str:
        sent = slot.sock.sent if slot.sock else 0
        unacked = slot.sock.unacked if slot.sock else 0
        return f"+QISEND: {sent},{sent - unacked},{unacked}"

    # Receiving

    async def read(self, command: Command) -> Reply:
        """``AT+QIRD=<id>[,<n>]``: up to ``n`` bytes; ``n`` 0 asks the counters."""
        connect_id = command.int_arg(0)
        slot = self.slots.get(connect_id) if connect_id is not None else None
        if command.form is not Form.SET or slot is None or slot.mode != 0:
            return Reply(result="ERROR")
        size = command.int_arg(1, self.facts.max_read)
        if size is None or not 0 <= size <= self.facts.max_read:
            return Reply(result="ERROR")
        sock = slot.sock
        if size == 0:
            if sock is None:
                return Reply(["+QIRD: 0,0,0"])
            return Reply([f"+QIRD: {sock.received},{sock.read},{len(sock.unread)}"])
        data = sock.take(size) if sock is not None else b""
        if not data:
            slot.notified = False
            return Reply(["+QIRD: 0"])
        return Reply([f"+QIRD: {len(data)}"], payload=data)

    def socket_data(self, sock: TcpSocket, data: bytes) -> None:
        """Bytes from the far end: buffered and announced once, or pushed."""
        slot = self.slots.get(sock.link)
        if slot is None or slot.sock is not sock:
            return
        if slot.mode == 0:
            sock.keep(data)
            if not slot.notified:
                slot.notified = True
                self.urc(f'+QIURC: "recv",{sock.link}')
            return
        for start in range(0, len(data), self.facts.max_read):
            chunk = data[start : start + self.facts.max_read]
            self.urc_with_payload(f'+QIURC: "recv",{sock.link},{len(chunk)}', chunk)
        if self.module.transmitter.backlog > PUSH_BACKLOG:
            sock.pause()
            self.spawn(self._resume_when_drained(sock))

    async def _resume_when_drained(self, sock: TcpSocket) -> None:
        await self.module.transmitter.wait_below(PUSH_BACKLOG // 2)
        sock.resume()

    def socket_closed(self, sock: TcpSocket) -> None:
        """The far end closed: ``+QIURC: "closed",<id>``, the id stays allocated."""
        slot = self.slots.get(sock.link)
        if slot is None or slot.sock is not sock:
            return
        slot.state = CLOSING
        logger.info("modem[%s]: socket %d closed by the far end", self.name, sock.link)
        self.urc(f'+QIURC: "closed",{sock.link}')

    # Names

    async def resolve_name(self, command: Command) -> Reply:
        """``AT+QIDNSGIP=<ctx>,<name>``: ``OK``, then ``dnsgip`` URCs."""
        context, host = _context(command), command.arg(1)
        if command.form is not Form.SET or context is None or not host:
            return Reply(result="ERROR")
        self.spawn(self._resolve(context, host))
        return Reply()

    async def _resolve(self, context: int, host: str) -> None:
        await self.after_reply()
        if context not in self.active:
            self.urc(f'+QIURC: "dnsgip",{561}')
            return
        try:
            address = await resolve(host)
        except OpenError:
            self.urc('+QIURC: "dnsgip",565')
            return
        self.urc('+QIURC: "dnsgip",0,1,600')
        self.urc(f'+QIURC: "dnsgip","{address}"')
