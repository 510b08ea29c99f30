"""The simulated SIMCom SIM7600: NETOPEN/CIPOPEN TCP stack over real sockets.

Shapes follow the recordings of real SIM7600 modules and the reference notes:
two-stage ``OK`` then ``+NETOPEN: 0`` / ``+CIPOPEN: <link>,0`` / ``+CIPCLOSE:``,
synchronous failures as an information line and ``ERROR`` with no ``OK``, the bare
``\\r\\n>`` prompt, ``OK`` then ``+CIPSEND: <link>,<n>,<n>`` after a payload, manual
receive (``+CIPRXGET: 1,<link>`` once until the link is drained, reads framed
``+CIPRXGET: 2,...`` + bytes + CR LF + ``OK``) and push receive (``RECV FROM:`` and
``+IPD<n>``, or ``+RECEIVE,<link>,<n>`` after ``AT+CIPCCFG`` header type 1). Losing
the bearer prints ``+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY`` and closes the links
without per-link URCs.

Error codes chosen where the sources leave a gap: a connection refused or broken is
``+CIPOPEN: <link>,1`` (network failure), a name that does not resolve is 11, a
connect timeout 10; opening on a busy link gives ``+CIPOPEN: <link>,4`` and
``ERROR``, without an open network ``+CIPOPEN: <link>,2`` and ``ERROR``. Not
modelled: UDP and servers (``+CIPOPEN: <link>,3`` and ``ERROR``), transparent mode
(``AT+CIPMODE=1`` is refused), variable-length sends.
"""

from __future__ import annotations

import asyncio
import logging

from modembridge.models import SIM7600
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

_OPEN_ERRORS = {
    OpenFailure.DNS: 11,
    OpenFailure.REFUSED: 1,
    OpenFailure.NETWORK: 1,
    OpenFailure.TIMEOUT: 10,
}

# What the read form of a stored-only setting shows before the host set it.
_SETTING_DEFAULTS = {"+CSOCKSETPN": "1", "+CGSOCKCONT": "1,IP,", "+CIPSENDMODE": "0"}

# Peer-closed reason of +IPCLOSE.
_CLOSED_BY_REMOTE = 1


class Sim7600(Personality):
    """A SIM7600 with its internal TCP/IP stack backed by real connections."""

    facts = SIM7600

    def __init__(self, module: ModuleLink, identity: Identity) -> None:
        super().__init__(module, identity)
        self.contexts[2] = ("IPV4V6", "ims")
        self.network_open = False
        self.manual_receive = False
        self.show_address = True
        self.show_header = True
        self.header_type = 0
        self.open_timeout = 120.0
        self.network_mode = 2
        self.settings: dict[str, str] = {}
        self.links: dict[int, TcpSocket] = {}
        self.opening: set[int] = set()
        self.notified: set[int] = set()
        self.handlers.update(
            {
                "+CICCID": self.iccid,
                "+CRESET": self.reset,
                "+CIPMODE": self.transfer_mode,
                "+CIPRXGET": self.receive,
                "+CSOCKSETPN": self.setting,
                "+CGSOCKCONT": self.setting,
                "+CIPCCFG": self.socket_config,
                "+CIPTIMEOUT": self.timeouts,
                "+CIPSENDMODE": self.setting,
                "+CIPHEAD": self.push_header,
                "+CIPSRIP": self.push_header,
                "+NETOPEN": self.net_open,
                "+NETCLOSE": self.net_close,
                "+IPADDR": self.ip_address,
                "+CIPOPEN": self.open_link,
                "+CIPCLOSE": self.close_link,
                "+CIPSEND": self.send,
                "+CDNSGIP": self.resolve_name,
                "+CNMP": self.preferred_mode,
                "+CPSI": self.system_information,
            }
        )

    def identification_lines(self) -> list[str]:
        """``ATI`` as SIMCom prints it."""
        return [
            f"Manufacturer: {self.facts.manufacturer}",
            f"Model: {self.identity.model}",
            f"Revision: {self.identity.revision}",
            f"IMEI: {self.identity.imei}",
            "+GCAP: +CGSM",
        ]

    async def revision(self, command: Command) -> Reply:
        """``AT+CGMR``: SIMCom prefixes the value."""
        return Reply([f"+CGMR: {self.identity.revision}"])

    async def iccid(self, command: Command) -> Reply:
        """``AT+CICCID``."""
        return self.sim_error() or Reply([f"+ICCID: {self.identity.iccid}"])

    async def reset(self, command: Command) -> Reply:
        """``AT+CRESET``: ``OK``, then the module reboots."""
        self.spawn(self._reboot_after_reply())
        return Reply()

    async def setting(self, command: Command) -> Reply:
        """Socket settings the simulator stores and reports but does not act on."""
        if command.form is Form.SET:
            self.settings[command.name] = ",".join(command.args)
            return Reply()
        if command.form is Form.READ:
            value = self.settings.get(command.name, _SETTING_DEFAULTS[command.name])
            return Reply([f"{command.name}: {value}"])
        return Reply()

    async def transfer_mode(self, command: Command) -> Reply:
        """``AT+CIPMODE``: only non-transparent mode (0) is offered."""
        if command.form is Form.READ:
            return Reply(["+CIPMODE: 0"])
        if command.form is Form.SET and command.arg(0) != "0":
            logger.warning("modem[%s]: transparent mode is not simulated", self.name)
            return Reply(result="ERROR")
        return Reply()

    async def socket_config(self, command: Command) -> Reply:
        """``AT+CIPCCFG``: the fifth value selects the push header type."""
        if command.form is Form.SET:
            self.header_type = command.int_arg(4, self.header_type) or 0
            self.settings[command.name] = ",".join(command.args)
            return Reply()
        if command.form is Form.READ:
            value = self.settings.get(command.name, "10,0,0,1,1,0,500")
            return Reply([f"+CIPCCFG: {value}"])
        return Reply()

    async def timeouts(self, command: Command) -> Reply:
        """``AT+CIPTIMEOUT=<netopen>,<cipopen>,<cipsend>`` in milliseconds."""
        if command.form is Form.SET:
            milliseconds = command.int_arg(1)
            if milliseconds is not None and milliseconds > 0:
                self.open_timeout = milliseconds / 1000
            return Reply()
        if command.form is Form.READ:
            return Reply(
                [f"+CIPTIMEOUT: 120000,{int(self.open_timeout * 1000)},120000"]
            )
        return Reply()

    async def push_header(self, command: Command) -> Reply:
        """``AT+CIPHEAD`` / ``AT+CIPSRIP``: what precedes pushed data."""
        flag = self.show_header if command.name == "+CIPHEAD" else self.show_address
        if command.form is Form.READ:
            return Reply([f"{command.name}: {int(flag)}"])
        if command.form is Form.SET:
            value = command.arg(0)
            if value not in ("0", "1"):
                return Reply(result="ERROR")
            if command.name == "+CIPHEAD":
                self.show_header = value == "1"
            else:
                self.show_address = value == "1"
        return Reply()

    async def preferred_mode(self, command: Command) -> Reply:
        """``AT+CNMP``: the preferred radio technology, stored only."""
        if command.form is Form.READ:
            return Reply([f"+CNMP: {self.network_mode}"])
        if command.form is Form.SET:
            self.network_mode = command.int_arg(0, self.network_mode) or 2
        return Reply()

    async def system_information(self, command: Command) -> Reply:
        """``AT+CPSI?``: serving cell, or no service."""
        if not self.radio.registered:
            return Reply(["+CPSI: NO SERVICE,Online"])
        rssi, _ber = self.radio.csq()
        rsrp = -113 + 2 * rssi if rssi != 99 else -140
        return Reply(
            [
                "+CPSI: LTE,Online,001-01,0x1A2B,30135525,399,EUTRAN-BAND3,1650,"
                f"5,5,-83,{rsrp * 10},-552,15"
            ]
        )

    # Bearer

    async def net_open(self, command: Command) -> Reply:
        """``AT+NETOPEN``: ``OK`` then ``+NETOPEN: 0``; ``?`` tells 1 open, 0 closed."""
        if command.form is Form.READ:
            return Reply([f"+NETOPEN: {int(self.network_open)}"])
        if command.form is not Form.EXEC:
            return Reply(result="ERROR")
        if self.network_open:
            return Reply(["+IP ERROR: Network is already opened"], "ERROR")
        if not self.radio.registered:
            # What SIM7600 firmware answers when the bearer cannot come up.
            return Reply(result="ERROR")
        self.spawn(self._finish_net_open())
        return Reply()

    async def _finish_net_open(self) -> None:
        await self.after_reply()
        await asyncio.sleep(self.module.bearer_delay)
        self.network_open = True
        logger.info("modem[%s]: network open", self.name)
        self.urc("+NETOPEN: 0")

    async def net_close(self, command: Command) -> Reply:
        """``AT+NETCLOSE``: close every link and the bearer."""
        if not self.network_open:
            return Reply(["+NETCLOSE: 2"], "ERROR")
        self.network_open = False
        self.drop_sockets()
        self.spawn(self._finish_net_close())
        return Reply()

    async def _finish_net_close(self) -> None:
        await self.after_reply()
        self.urc("+NETCLOSE: 0")

    async def ip_address(self, command: Command) -> Reply:
        """``AT+IPADDR``."""
        if not self.network_open:
            return Reply(["+IP ERROR: Network not opened"], "ERROR")
        return Reply([f"+IPADDR: {self.identity.address}"])

    def bearer_active(self) -> bool:
        """The bearer is the open network."""
        return self.network_open

    def drop_bearer(self) -> None:
        """The network dropped the bearer: one URC, links closed silently."""
        if not self.network_open:
            return
        self.network_open = False
        self.drop_sockets()
        self.urc("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")

    def radio_changed(self, on: bool) -> None:
        """Switching the radio off takes the bearer with it."""
        if not on:
            self.drop_bearer()

    def drop_sockets(self) -> None:
        """Close every link without a URC."""
        for sock in self.links.values():
            sock.close()
        self.links.clear()
        self.notified.clear()

    # Links

    def _link_number(self, command: Command) -> int | None:
        link = command.int_arg(0)
        if link is None or not 0 <= link < self.facts.socket_count:
            return None
        return link

    def _is_open(self, link: int) -> bool:
        sock = self.links.get(link)
        return sock is not None and sock.connected

    async def open_link(self, command: Command) -> Reply:
        """``AT+CIPOPEN=<link>,"TCP",<host>,<port>``; ``?`` lists the links."""
        if command.form is Form.READ:
            return Reply([self._link_line(n) for n in range(self.facts.socket_count)])
        if command.form is Form.TEST:
            return Reply(['+CIPOPEN: (0-9),("TCP","UDP")'])
        link = self._link_number(command)
        if link is None:
            return Reply(result="ERROR")
        host, port = command.arg(2), command.int_arg(3) or 0
        refusal = self._open_refusal(command, link, host, port)
        if refusal is not None:
            return Reply([f"+CIPOPEN: {link},{refusal}"], "ERROR")
        self.opening.add(link)
        self.spawn(self._connect(link, host, port))
        return Reply()

    def _open_refusal(
        self, command: Command, link: int, host: str, port: int
    ) -> int | None:
        """The error code refusing an open at once, or None to try connecting."""
        if command.arg(1).upper() != "TCP" or not host or not 0 < port < 65536:
            return 3
        if not self.network_open:
            return 2
        if self._is_open(link) or link in self.opening:
            return 4
        return None

    def _link_line(self, link: int) -> str:
        sock = self.links.get(link)
        if sock is None or not sock.connected:
            return f"+CIPOPEN: {link}"
        return f'+CIPOPEN: {link},"TCP","{sock.remote_ip}",{sock.remote_port},-1'

    async def _connect(self, link: int, host: str, port: int) -> None:
        await self.after_reply()
        try:
            sock = await open_tcp(
                host, port, link, self, self.open_timeout, name=self.name
            )
        except OpenError as error:
            logger.info("modem[%s]: link %d: %s", self.name, link, error)
            self.opening.discard(link)
            self.urc(f"+CIPOPEN: {link},{_OPEN_ERRORS[error.reason]}")
            return
        self.opening.discard(link)
        if not self.network_open:
            sock.close()
            self.urc(f"+CIPOPEN: {link},1")
            return
        self.links[link] = sock
        self.notified.discard(link)
        self.urc(f"+CIPOPEN: {link},0")

    async def close_link(self, command: Command) -> Reply:
        """``AT+CIPCLOSE=<link>``; ``?`` gives the open flag of every link."""
        if command.form is Form.READ:
            flags = ",".join(
                str(int(self._is_open(n))) for n in range(self.facts.socket_count)
            )
            return Reply([f"+CIPCLOSE: {flags}"])
        link = self._link_number(command)
        if link is None:
            return Reply(result="ERROR")
        if not self._is_open(link):
            return Reply([f"+CIPCLOSE: {link},4"], "ERROR")
        self.links.pop(link).close()
        self.notified.discard(link)
        self.spawn(self._closed_after_reply(link))
        return Reply()

    async def _closed_after_reply(self, link: int) -> None:
        await self.after_reply()
        self.urc(f"+CIPCLOSE: {link},0")

    def close_socket(self, link: int) -> None:
        """The network closed ``link``: the same as the far end closing it."""
        sock = self.links.get(link)
        if sock is not None and sock.connected:
            sock.close()
            self.socket_closed(sock)

    # Sending

    async def send(self, command: Command) -> Reply:
        """``AT+CIPSEND=<link>,<length>``: prompt, payload, ``OK``, ``+CIPSEND:``."""
        if command.form is not Form.SET:
            return Reply(result="ERROR")
        link = self._link_number(command)
        size = command.int_arg(1)
        if link is None or size is None or not 0 < size <= self.facts.max_send:
            return Reply(result="ERROR")
        if not self._is_open(link):
            return Reply(["+CIPERROR: 4"], "ERROR")

        payload = await self.module.engine.read_payload(size, self.facts.prompt)

        sock = self.links.get(link)
        confirmed = size if sock is not None and sock.send(payload) else -1
        self.spawn(self._sent_after_reply(link, size, confirmed))
        return Reply()

    async def _sent_after_reply(self, link: int, size: int, confirmed: int) -> None:
        await self.after_reply()
        self.urc(f"+CIPSEND: {link},{size},{confirmed}")

    # Receiving

    async def receive(self, command: Command) -> Reply:
        """``AT+CIPRXGET``: 0/1 choose push or manual; 2/3 read; 4 asks how much."""
        if command.form is Form.READ:
            return Reply([f"+CIPRXGET: {int(self.manual_receive)}"])
        if command.form is not Form.SET:
            return Reply(result="ERROR")
        mode = command.int_arg(0)
        if mode in (0, 1):
            self.manual_receive = mode == 1
            return Reply()
        link = command.int_arg(1, -1)
        size = command.int_arg(2, self.facts.max_read) or 0
        valid = (
            mode in (2, 3, 4)
            and link is not None
            and 0 <= link < self.facts.socket_count
            and 0 < size <= self.facts.max_read
        )
        if not valid or mode is None or link is None:
            return Reply(result="ERROR")
        if mode == 4:
            return self._pending_reply(link)
        return self._read_reply(link, mode, size)

    def _pending_reply(self, link: int) -> Reply:
        sock = self.links.get(link)
        unread = len(sock.unread) if sock is not None else 0
        if unread == 0:
            self.notified.discard(link)
        return Reply([f"+CIPRXGET: 4,{link},{unread}"])

    def _read_reply(self, link: int, mode: int, size: int) -> Reply:
        sock = self.links.get(link)
        if sock is None or not sock.unread:
            return Reply(["+IP ERROR: No data"], "ERROR")
        data = sock.take(size)
        rest = len(sock.unread)
        if rest == 0:
            self.notified.discard(link)
        payload = data if mode == 2 else data.hex().upper().encode()
        return Reply([f"+CIPRXGET: {mode},{link},{len(data)},{rest}"], payload=payload)

    def socket_data(self, sock: TcpSocket, data: bytes) -> None:
        """Bytes from the far end: kept and announced once, or pushed to the host."""
        if self.links.get(sock.link) is not sock:
            return
        if self.manual_receive:
            sock.keep(data)
            if sock.link not in self.notified:
                self.notified.add(sock.link)
                self.urc(f"+CIPRXGET: 1,{sock.link}")
            return
        for start in range(0, len(data), self.facts.max_read):
            self._push(sock, data[start : start + self.facts.max_read])
        if self.module.transmitter.backlog > PUSH_BACKLOG:
            sock.pause()
            self.spawn(self._resume_when_drained(sock))

    def _push(self, sock: TcpSocket, chunk: bytes) -> None:
        if self.header_type == 1:
            self.urc_with_payload(f"+RECEIVE,{sock.link},{len(chunk)}", chunk)
            return
        lines = []
        if self.show_address:
            lines.append(f"RECV FROM:{sock.remote_ip}:{sock.remote_port}")
        if self.show_header:
            lines.append(f"+IPD{len(chunk)}")
        if not lines:
            self.module.transmitter.send(chunk)
            return
        self.urc_with_payload("\r\n".join(lines), chunk)

    async def _resume_when_drained(self, sock: TcpSocket) -> None:
        await self.module.transmitter.wait_below(PUSH_BACKLOG // 2)
        sock.resume()

    def socket_closed(self, sock: TcpSocket) -> None:
        """The far end closed: ``+IPCLOSE: <link>,1``; unread bytes stay readable."""
        if self.links.get(sock.link) is not sock:
            return
        logger.info("modem[%s]: link %d closed by the far end", self.name, sock.link)
        self.urc(f"+IPCLOSE: {sock.link},{_CLOSED_BY_REMOTE}")

    # Names

    async def resolve_name(self, command: Command) -> Reply:
        """``AT+CDNSGIP="<name>"``: resolved with this host's resolver."""
        host = command.arg(0)
        if command.form is not Form.SET or not host:
            return Reply(result="ERROR")
        if not self.network_open:
            return Reply(["+CDNSGIP: 0,10"], "ERROR")
        try:
            address = await resolve(host)
        except OpenError:
            return Reply(["+CDNSGIP: 0,10"], "ERROR")
        return Reply([f'+CDNSGIP: 1,"{host}","{address}"'])
