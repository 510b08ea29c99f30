"""Which link of the chain from host to relay is broken, and what to try.

The chain, in order: the port exists and can be opened; the module answers ``AT``; the
SIM is ready; there is signal; the module is registered; a data bearer comes up; the
relay answers through the module's own socket. Each link is checked only when the
links before it hold, because a broken link hides everything behind it. A check
returns what it saw and, when broken, what a person should try next.

The doctor leaves the module as it found it: a bearer it brought up is taken down
again. It pings the relay without connecting as a card, so no running card is evicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from modembridge.detect import open_modem
from modembridge.discovery import holders
from modembridge.errors import ModemError, PortVanished, UnsupportedModem
from modembridge.modem import Modem, SimState
from modembridge.supervisor import port_present

_LOGGER = logging.getLogger(__name__)

RELAY_REPLY_SECONDS = 15.0
MIN_RSSI = 5
"""Below this CSQ value (about -103 dBm) links drop often enough to matter."""


class Verdict(enum.Enum):
    """The outcome of one check."""

    OK = "ok"
    WARN = "warn"
    BROKEN = "broken"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    """One link of the chain: what was seen, and what to try when it is broken."""

    name: str
    verdict: Verdict
    detail: str
    hint: str = ""


@dataclass
class Doctor:
    """Checks one module and one relay, link by link."""

    port: str
    relay: tuple[str, int]
    apn: str = ""
    wire_log: Path | None = None
    modem: Modem | None = None
    bearer_raised: bool = False

    async def run(self) -> list[Check]:
        """Every check in order; those after the first broken link are skipped."""
        steps: list[tuple[str, Callable[[], Awaitable[Check]]]] = [
            ("port", self.check_port),
            ("module", self.check_module),
            ("sim", self.check_sim),
            ("signal", self.check_signal),
            ("registration", self.check_registration),
            ("bearer", self.check_bearer),
            ("relay", self.check_relay),
        ]
        checks: list[Check] = []
        try:
            for name, step in steps:
                if any(c.verdict is Verdict.BROKEN for c in checks):
                    checks.append(
                        Check(name, Verdict.SKIPPED, "an earlier link is broken")
                    )
                    continue
                checks.append(await self._guarded(name, step))
        finally:
            await self._restore()
        return checks

    async def _guarded(self, name: str, step: Callable[[], Awaitable[Check]]) -> Check:
        try:
            return await step()
        except ModemError as exc:
            _LOGGER.debug("doctor[%s]: %s failed: %s", self.port, name, exc)
            return Check(name, Verdict.BROKEN, str(exc), HINTS.get(name, ""))

    async def check_port(self) -> Check:
        """The device node exists and nothing else holds it."""
        if not port_present(self.port):
            return Check(
                "port", Verdict.BROKEN, f"{self.port} does not exist", HINTS["port"]
            )
        manager = [h.describe() for h in holders(self.port) if h.is_modemmanager]
        if manager:
            detail = f"{self.port} is held by {', '.join(manager)}"
            return Check("port", Verdict.BROKEN, detail, HINTS["busy"])
        return Check("port", Verdict.OK, self.port)

    async def check_module(self) -> Check:
        """A supported module answers AT on the port."""
        try:
            self.modem = await open_modem(self.port, wire_log=self.wire_log)
        except UnsupportedModem as exc:
            return Check("module", Verdict.BROKEN, str(exc), HINTS["unsupported"])
        except PortVanished as exc:
            return Check("module", Verdict.BROKEN, f"cannot open: {exc}", HINTS["port"])
        identity = await self.modem.identify()
        return Check("module", Verdict.OK, f"{identity.model} {identity.firmware}")

    async def check_sim(self) -> Check:
        """The SIM is inserted and unlocked."""
        state = await self._modem().sim_state()
        if state is SimState.READY:
            return Check("sim", Verdict.OK, "ready")
        return Check("sim", Verdict.BROKEN, state.value, HINTS["sim"])

    async def check_signal(self) -> Check:
        """The module hears a cell."""
        signal = await self._modem().signal()
        if signal.dbm is None:
            return Check(
                "signal", Verdict.BROKEN, "no signal (CSQ 99)", HINTS["signal"]
            )
        detail = f"{signal.dbm} dBm (CSQ {signal.rssi})"
        if signal.rssi < MIN_RSSI:
            return Check("signal", Verdict.WARN, f"weak: {detail}", HINTS["signal"])
        return Check("signal", Verdict.OK, detail)

    async def check_registration(self) -> Check:
        """Registered on a home or roaming network."""
        modem = self._modem()
        registration = await modem.registration()
        if not registration.registered:
            states = ", ".join(
                f"{name} {stat.name.lower()}"
                for name, stat in vars(registration).items()
                if stat is not None
            )
            return Check("registration", Verdict.BROKEN, states, HINTS["registration"])
        where = "roaming" if registration.roaming else "home"
        return Check("registration", Verdict.OK, f"{where} on {await modem.operator()}")

    async def check_bearer(self) -> Check:
        """A data bearer is up, or comes up with the APN given."""
        modem = self._modem()
        if await modem.bearer_active():
            return Check("bearer", Verdict.OK, "already active")
        await modem.configure_apn(self.apn)
        address = await modem.bearer_up()
        self.bearer_raised = True
        return Check("bearer", Verdict.OK, f"up, address {address}")

    async def check_relay(self) -> Check:
        """The relay answers a ping through the module's own socket."""
        host, port = self.relay
        socket = await self._modem().open_socket(host, port)
        try:
            await socket.write(b'{"action":"ping"}\n')
            async with asyncio.timeout(RELAY_REPLY_SECONDS):
                reply = await socket.read()
        except TimeoutError:
            detail = f"{host}:{port} accepted the socket but said nothing"
            return Check("relay", Verdict.BROKEN, detail, HINTS["relay"])
        finally:
            with contextlib.suppress(ModemError):
                await socket.close()
        if not reply:
            detail = f"{host}:{port} closed the socket at once"
            return Check("relay", Verdict.BROKEN, detail, HINTS["relay"])
        answer = reply[:40].decode(errors="replace").strip()
        return Check("relay", Verdict.OK, f"{host}:{port} answered {answer}")

    def _modem(self) -> Modem:
        if self.modem is None:
            raise ModemError("the module is not open")
        return self.modem

    async def _restore(self) -> None:
        if self.modem is None:
            return
        if self.bearer_raised:
            with contextlib.suppress(ModemError):
                await self.modem.bearer_down()
        with contextlib.suppress(ModemError):
            await self.modem.close()


HINTS = {
    "port": "check the cable and `modembridge list`; the AT port is interface 2",
    "busy": "stop ModemManager (systemctl stop ModemManager) or install the udev rules"
    " (`modembridge udev`)",
    "module": "the port may not be the AT port: try the other ttyUSB ports of the "
    "module (`modembridge list`), or power-cycle it",
    "unsupported": "this device is not a SIM7600 or EC20/EC25; pick the module's AT "
    "port with `modembridge list`",
    "sim": "seat the SIM, or unlock it (AT+CPIN=<pin>); `modembridge at PORT AT+CPIN?`",
    "signal": "attach the antennas (main and diversity) and move closer to a window",
    "registration": "check the SIM's plan and the network band; denied means the "
    "operator refuses the SIM",
    "bearer": "check --apn (ask the operator); some SIMs need a user and password",
    "relay": "check --server and that the relay runs and is reachable from the "
    "internet (firewall, port forwarding)",
}
