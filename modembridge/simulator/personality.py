"""What both simulated modules share: the 3GPP 27.007 command set and reply framing.

A personality answers one command line. Each command of the line goes to a handler
found by name in ``handlers``; a handler returns a ``Reply`` (information lines, an
optional counted payload, a final result). The replies of one line are framed the
way both modules frame them with ``ATV1``: every block of information lines as
``\\r\\n<line>\\r\\n<line>\\r\\n``, a payload followed by CR LF, then
``\\r\\n<result>\\r\\n``. What a module prints later by itself (two-stage results,
data arrival, closes) goes out as URCs through ``urc``.

The SIM7600 and EC20 personalities add their own commands and their own TCP stack.
Not modelled: SMS, voice, PIN entry, transparent data mode.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from modembridge.models import ModelFacts
from modembridge.simulator.command import Command, Form, parse_line
from modembridge.simulator.engine import AtEngine
from modembridge.simulator.radio import HOME, Radio, SimState
from modembridge.simulator.transmitter import Transmitter

logger = logging.getLogger(__name__)

CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    14: "SIM busy",
    30: "no network service",
}

# Unread output beyond which a push-mode socket stops reading from the network.
PUSH_BACKLOG = 65536


@dataclass
class Reply:
    """The answer to one command: information lines, a payload, a final result."""

    lines: list[str] = field(default_factory=list)
    result: str = "OK"
    payload: bytes | None = None


Handler = Callable[[Command], Awaitable[Reply]]


@dataclass(frozen=True)
class Identity:
    """The strings a module reports about itself and its SIM."""

    model: str
    revision: str
    imei: str
    imsi: str = "001010123456789"
    iccid: str = "89882280000012345678"
    operator: str = "Simulated"
    address: str = "10.23.156.36"


@dataclass
class ModuleLink:
    """What a personality may ask of the module around it."""

    engine: AtEngine
    transmitter: Transmitter
    radio: Radio
    name: str
    reboot: Callable[[], None]
    power_off: Callable[[], None]
    bearer_delay: float = 0.0


class Personality:
    """The 27.007 commands both modules answer alike; subclasses add their own."""

    facts: ModelFacts

    def __init__(self, module: ModuleLink, identity: Identity) -> None:
        self.module = module
        self.identity = identity
        self.cmee = 2
        self.reg_urc_mode = {"+CREG": 0, "+CGREG": 0, "+CEREG": 0}
        self.contexts: dict[int, tuple[str, str]] = {1: ("IP", "")}
        self._tasks: set[asyncio.Task[None]] = set()
        self.handlers: dict[str, Handler] = {
            "E": self.echo,
            "I": self.identification,
            "&W": self.accept,
            "&F": self.accept,
            "&D": self.accept,
            "&C": self.accept,
            "V": self.accept,
            "Q": self.accept,
            "Z": self.accept,
            "+CMEE": self.error_mode,
            "+CGMI": self.manufacturer,
            "+GMI": self.manufacturer,
            "+CGMM": self.model,
            "+GMM": self.model,
            "+CGMR": self.revision,
            "+GMR": self.revision,
            "+CGSN": self.imei,
            "+GSN": self.imei,
            "+CIMI": self.imsi,
            "+CPIN": self.pin,
            "+CSQ": self.signal,
            "+CREG": self.registration,
            "+CGREG": self.registration,
            "+CEREG": self.registration,
            "+COPS": self.operator,
            "+CGATT": self.attach,
            "+CGDCONT": self.pdp_context,
            "+CGACT": self.pdp_activation,
            "+CFUN": self.functionality,
        }
        radio = module.radio
        radio.registration_changed = self.registration_changed

    @property
    def name(self) -> str:
        """The device name used in log lines."""
        return self.module.name

    @property
    def radio(self) -> Radio:
        """The cellular state behind this module."""
        return self.module.radio

    # Running a line

    async def execute(self, line: str) -> bytes:
        """The bytes that answer one command line, final result included."""
        commands = parse_line(line)
        if commands is None:
            logger.warning("modem[%s]: not a command line: %r", self.name, line)
            return b"\r\nERROR\r\n"
        output = bytearray()
        for command in commands:
            reply = await self._run(command)
            output += render_information(reply)
            if reply.result != "OK":
                return bytes(output) + frame(reply.result)
        return bytes(output) + frame("OK")

    async def _run(self, command: Command) -> Reply:
        handler = self.handlers.get(command.name)
        if handler is None:
            logger.warning("modem[%s]: unknown command %s", self.name, command)
            return Reply(result="ERROR")
        return await handler(command)

    # Output helpers

    def urc(self, text: str) -> None:
        """Print an unsolicited line."""
        self.module.transmitter.send(frame(text))

    def urc_with_payload(self, header: str, data: bytes) -> None:
        """Print an unsolicited header line followed by counted bytes and CR LF."""
        self.module.transmitter.send(frame(header) + data + b"\r\n")

    def cme(self, code: int) -> Reply:
        """A ``+CME ERROR`` in the form ``AT+CMEE`` asked for."""
        if self.cmee == 0:
            return Reply(result="ERROR")
        if self.cmee == 1:
            return Reply(result=f"+CME ERROR: {code}")
        return Reply(result=f"+CME ERROR: {CME_TEXT.get(code, 'unknown')}")

    def sim_error(self) -> Reply | None:
        """The error a SIM command gets now, or None when the SIM is ready."""
        state = self.radio.sim_state()
        if state is SimState.ABSENT:
            return self.cme(10)
        if state is SimState.BUSY:
            return self.cme(14)
        return None

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work of this module; it dies with the module."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def after_reply(self) -> None:
        """Wait until the running command's final result is on the wire."""
        await self.module.engine.wait_idle()

    def shutdown(self) -> list[asyncio.Task[None]]:
        """The module lost power: cancel background work, drop all sockets."""
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        self.drop_sockets()
        return tasks

    def drop_sockets(self) -> None:
        """Close every connection without telling the host."""

    def bearer_active(self) -> bool:
        """True while the data bearer is up (for ``+CGACT?``)."""
        return False

    def drop_bearer(self) -> None:
        """The network tore the bearer down."""

    def close_socket(self, link: int) -> None:
        """The network closed one socket."""

    def radio_changed(self, on: bool) -> None:
        """Hook for ``AT+CFUN`` switching the radio."""

    # Common commands

    async def accept(self, command: Command) -> Reply:
        """Settings the simulator accepts and ignores."""
        return Reply()

    async def echo(self, command: Command) -> Reply:
        """``ATE0`` / ``ATE1``."""
        value = command.arg(0, "0")
        if value not in ("0", "1"):
            return Reply(result="ERROR")
        self.module.engine.echo = value == "1"
        return Reply()

    async def identification(self, command: Command) -> Reply:
        """``ATI``."""
        return Reply(self.identification_lines())

    def identification_lines(self) -> list[str]:
        """The lines of ``ATI``."""
        return [self.facts.manufacturer, self.identity.model]

    async def error_mode(self, command: Command) -> Reply:
        """``AT+CMEE``: bare ERROR, numeric or verbose equipment errors."""
        if command.form is Form.READ:
            return Reply([f"+CMEE: {self.cmee}"])
        if command.form is Form.TEST:
            return Reply(["+CMEE: (0-2)"])
        value = command.int_arg(0, 0)
        if value not in (0, 1, 2):
            return Reply(result="ERROR")
        self.cmee = value
        return Reply()

    async def manufacturer(self, command: Command) -> Reply:
        """``AT+CGMI``."""
        return Reply([self.facts.manufacturer])

    async def model(self, command: Command) -> Reply:
        """``AT+CGMM``."""
        return Reply([self.identity.model])

    async def revision(self, command: Command) -> Reply:
        """``AT+CGMR``."""
        return Reply([self.identity.revision])

    async def imei(self, command: Command) -> Reply:
        """``AT+CGSN`` / ``AT+GSN``: the bare IMEI."""
        if command.form is Form.TEST:
            return Reply()
        return Reply([self.identity.imei])

    async def imsi(self, command: Command) -> Reply:
        """``AT+CIMI``: the bare IMSI, once the SIM is ready."""
        return self.sim_error() or Reply([self.identity.imsi])

    async def pin(self, command: Command) -> Reply:
        """``AT+CPIN?``."""
        if command.form is not Form.READ:
            return Reply(result="ERROR") if command.form is Form.SET else Reply()
        return self.sim_error() or Reply(["+CPIN: READY"])

    async def signal(self, command: Command) -> Reply:
        """``AT+CSQ``."""
        if command.form is Form.TEST:
            return Reply(["+CSQ: (0-31,99),(0-7,99)"])
        rssi, ber = self.radio.csq()
        return Reply([f"+CSQ: {rssi},{ber}"])

    async def registration(self, command: Command) -> Reply:
        """``AT+CREG`` / ``+CGREG`` / ``+CEREG``: read, or set the URC mode."""
        name = command.name
        if command.form is Form.TEST:
            return Reply([f"{name}: (0-2)"])
        if command.form is Form.SET:
            mode = command.int_arg(0)
            if mode not in (0, 1, 2):
                return Reply(result="ERROR")
            self.reg_urc_mode[name] = mode
            return Reply()
        mode = self.reg_urc_mode[name]
        stat = self.radio.registration()
        return Reply([f"{name}: {mode},{stat}{self._cell(mode, stat)}"])

    def _cell(self, mode: int, stat: int) -> str:
        """The location fields shown with mode 2 while registered."""
        if mode != 2 or stat != HOME:
            return ""
        return ',"1A2B","01C3D4E5",7'

    def registration_changed(self, stat: int) -> None:
        """Announce a registration change to the hosts that asked for URCs."""
        for name, mode in self.reg_urc_mode.items():
            if mode:
                self.urc(f"{name}: {stat}{self._cell(mode, stat)}")

    async def operator(self, command: Command) -> Reply:
        """``AT+COPS``."""
        if command.form is Form.TEST:
            name = self.identity.operator
            return Reply([f'+COPS: (2,"{name}","{name}","00101",7),,(0-4),(0-2)'])
        if command.form is Form.SET:
            return Reply()
        if not self.radio.registered:
            return Reply(["+COPS: 0"])
        return Reply([f'+COPS: 0,0,"{self.identity.operator}",7'])

    async def attach(self, command: Command) -> Reply:
        """``AT+CGATT``: attached whenever registered."""
        if command.form is Form.READ:
            return Reply([f"+CGATT: {int(self.radio.registered)}"])
        if command.form is Form.TEST:
            return Reply(["+CGATT: (0,1)"])
        return Reply()

    async def pdp_context(self, command: Command) -> Reply:
        """``AT+CGDCONT``: define, delete and list PDP contexts."""
        if command.form is Form.TEST:
            return Reply(['+CGDCONT: (1-24),"IP",,,(0-2),(0-4),(0,1),(0,1)'])
        if command.form is Form.READ:
            return Reply(
                [
                    f'+CGDCONT: {cid},"{kind}","{apn}","0.0.0.0",0,0,0,0'
                    for cid, (kind, apn) in sorted(self.contexts.items())
                ]
            )
        cid = command.int_arg(0)
        if cid is None or not 1 <= cid <= 24:
            return Reply(result="ERROR")
        if len(command.args) == 1:
            self.contexts.pop(cid, None)
        else:
            self.contexts[cid] = (command.arg(1, "IP").upper(), command.arg(2))
        return Reply()

    async def pdp_activation(self, command: Command) -> Reply:
        """``AT+CGACT``: list context states; activation requests are accepted."""
        if command.form is Form.TEST:
            return Reply(["+CGACT: (0,1)"])
        if command.form is Form.READ:
            active = int(self.bearer_active())
            return Reply(
                [
                    f"+CGACT: {cid},{active if cid == 1 else 0}"
                    for cid in sorted(self.contexts)
                ]
            )
        return Reply()

    async def functionality(self, command: Command) -> Reply:
        """``AT+CFUN``: radio on or off, and ``=1,1`` to reboot."""
        if command.form is Form.READ:
            return Reply([f"+CFUN: {int(self.radio.powered)}"])
        if command.form is Form.TEST:
            return Reply(["+CFUN: (0,1,4),(0,1)"])
        level = command.int_arg(0)
        if level not in (0, 1, 4):
            return Reply(result="ERROR")
        if command.int_arg(1, 0) == 1:
            self.spawn(self._reboot_after_reply())
            return Reply()
        self.radio.set_power(level == 1)
        self.radio_changed(level == 1)
        return Reply()

    async def _reboot_after_reply(self) -> None:
        await self.after_reply()
        self.module.reboot()


def frame(text: str) -> bytes:
    """One line as the module frames it: CR LF before and after."""
    return b"\r\n" + text.encode("latin-1") + b"\r\n"


def render_information(reply: Reply) -> bytes:
    """A reply's information lines and payload, without its final result."""
    output = b""
    if reply.lines:
        output = b"\r\n" + "\r\n".join(reply.lines).encode("latin-1") + b"\r\n"
    if reply.payload is not None:
        output += reply.payload + b"\r\n"
    return output
