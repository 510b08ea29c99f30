"""A simulated SIM7600 or EC20 on a pseudo-terminal, with a control handle.

``SimulatedModem`` puts the pieces together on the running asyncio loop: the
pseudo-terminal the host opens, the transmitter that delays, cuts or holds the
module's output, the engine that reads command lines and payloads, the radio state,
and the personality that answers. Its methods are the faults a test can inject
while the module runs; the faults known at start are fields of ``SimConfig``.

Power-up: after ``boot_time`` seconds of silence (input ignored) the module prints
the first boot URCs of its model (``RDY``, and ``+CFUN: 1`` on EC20); once the SIM
is ready it prints the rest (``+CPIN: READY`` ... ``PB DONE``). Echo is on. A host
that opens the port after that simply misses them, as it does over USB.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from modembridge.models import MODELS, ModelFacts
from modembridge.simulator.ec20 import Ec20
from modembridge.simulator.engine import AtEngine
from modembridge.simulator.personality import Identity, ModuleLink, Personality
from modembridge.simulator.radio import Radio
from modembridge.simulator.sim7600 import Sim7600
from modembridge.simulator.terminal import PseudoTerminal
from modembridge.simulator.transmitter import Transmitter
from modembridge.simulator.violations import Violation

logger = logging.getLogger(__name__)

# Seconds between the module's last words and its port vanishing.
_POWER_OFF_GRACE = 0.2

_IDENTITIES = {
    "sim7600": Identity(
        model="SIMCOM_SIM7600G-H",
        revision="LE20B04SIM7600M22",
        imei="868822040061788",
    ),
    "ec20": Identity(
        model="EC20F",
        revision="EC20CEFDR02A09M4G",
        imei="867698041234567",
    ),
}


@dataclass
class SimConfig:
    """How the simulated module is built and which faults it starts with."""

    model: str = "sim7600"
    link: str | None = None
    latency_in: float = 0.0
    latency_out: float = 0.0
    fragment: int | None = None
    sim_absent: bool = False
    sim_busy_seconds: float = 0.0
    no_signal: bool = False
    registration_delay: float = 0.0
    imei: str | None = None
    signal: int = 20
    boot_time: float = 0.0
    bearer_delay: float = 0.0
    reboot_downtime: float = 1.0


class SimulatedModem:
    """One simulated module: start it, open ``path`` with pyserial, inject faults."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        if self.config.model not in MODELS:
            raise ValueError(f"unknown model {self.config.model!r}")
        self.facts: ModelFacts = MODELS[self.config.model]
        identity = _IDENTITIES[self.config.model]
        if self.config.imei:
            identity = Identity(**{**identity.__dict__, "imei": self.config.imei})
        self.identity = identity
        self._terminal = PseudoTerminal(self._data_received, self.config.link)
        self._transmitter = Transmitter(
            self._terminal.write,
            self.config.model,
            self.config.latency_out,
            self.config.fragment,
        )
        self._engine = AtEngine(self._transmitter, self.config.model)
        self._radio = Radio(
            sim_absent=self.config.sim_absent,
            sim_busy_seconds=self.config.sim_busy_seconds,
            no_signal=self.config.no_signal,
            registration_delay=self.config.registration_delay,
            signal=self.config.signal,
        )
        self._radio.sim_ready_changed = self._sim_ready
        self.personality: Personality = self._new_personality()
        self._loop_task: asyncio.Task[None] | None = None
        self._boot_task: asyncio.Task[None] | None = None
        self._power_task: asyncio.Task[None] | None = None
        self._hung = False
        self._boots = 0
        self._booted_now = asyncio.Event()
        self._inbound: deque[tuple[float, bytes]] = deque()
        self._inbound_timer: asyncio.TimerHandle | None = None

    def _new_personality(self) -> Personality:
        link = ModuleLink(
            engine=self._engine,
            transmitter=self._transmitter,
            radio=self._radio,
            name=self.config.model,
            reboot=self._reboot_requested,
            power_off=self._power_off_requested,
            bearer_delay=self.config.bearer_delay,
        )
        kind = Sim7600 if self.config.model == "sim7600" else Ec20
        return kind(link, self.identity)

    @property
    def path(self) -> str:
        """The device path the host opens (the link if one was asked for)."""
        return self._terminal.path

    @property
    def name(self) -> str:
        """The device as log lines name it (``pts/7``, or the link's file name)."""
        return self._terminal.name

    @property
    def boots(self) -> int:
        """How many times the module has booted (printed its boot URCs) so far."""
        return self._boots

    async def wait_booted(self, count: int) -> None:
        """Return once the module has booted ``count`` times since ``start``."""
        while self._boots < count:
            await self._booted_now.wait()

    @property
    def violations(self) -> list[Violation]:
        """Host-discipline problems seen so far."""
        return self._engine.violations

    @property
    def echo(self) -> bool:
        """True while the module echoes command lines."""
        return self._engine.echo

    # Life cycle

    async def start(self) -> None:
        """Create the terminal and power the module up on the running loop."""
        self._transmitter.start()
        self._power_up()
        logger.info("modem[%s]: simulated %s", self.name, self.facts.family)

    async def stop(self) -> None:
        """Power off for good and remove the terminal."""
        stopped = self._power_down()
        power_task = self._power_task
        if power_task is not None and power_task is not asyncio.current_task():
            power_task.cancel()
            stopped.append(power_task)
        await asyncio.gather(*stopped, return_exceptions=True)
        await self._transmitter.stop()

    def _power_up(self) -> None:
        self._terminal.open()
        self._name_parts(self._terminal.name)
        self._engine.reset()
        self._engine.muted = True
        self._loop_task = asyncio.get_running_loop().create_task(self._command_loop())
        if self.config.boot_time > 0:
            self._boot_task = asyncio.get_running_loop().create_task(self._boot())
        else:
            self._booted()

    def _name_parts(self, name: str) -> None:
        """Put the device name in every part's log lines."""
        self._engine.name = self._transmitter.name = self._radio.name = name
        self.personality.module.name = name

    def _power_down(self) -> list[asyncio.Task[None]]:
        """Cut the power: every task of the module is cancelled and returned."""
        stopped = self.personality.shutdown()
        for task in (self._loop_task, self._boot_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                stopped.append(task)
        self._loop_task = self._boot_task = None
        self._radio.cancel_timers()
        self._drop_inbound()
        self._transmitter.discard()
        self._engine.reset()
        self._terminal.close()
        return stopped

    async def _boot(self) -> None:
        await asyncio.sleep(self.config.boot_time)
        self._booted()

    def _booted(self) -> None:
        self._engine.muted = self._hung
        for text in self._boot_urcs()[0]:
            self.personality.urc(text)
        self._radio.boot()
        self._boots += 1
        self._booted_now.set()
        self._booted_now = asyncio.Event()

    def _boot_urcs(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The boot URCs before the SIM is ready, and those once it is."""
        urcs = self.facts.boot_urcs
        split = urcs.index("+CPIN: READY") if "+CPIN: READY" in urcs else len(urcs)
        return urcs[:split], urcs[split:]

    def _sim_ready(self) -> None:
        for text in self._boot_urcs()[1]:
            self.personality.urc(text)

    async def _command_loop(self) -> None:
        while True:
            line = await self._engine.next_line()
            try:
                reply = await self.personality.execute(line)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("modem[%s]: command %r failed", self.name, line)
                reply = b"\r\nERROR\r\n"
            self._engine.finish(reply)

    # Faults

    async def reboot(self, downtime: float | None = None) -> None:
        """Restart the module: the tty vanishes, comes back, boot URCs, echo on."""
        seconds = self.config.reboot_downtime if downtime is None else downtime
        logger.info("modem[%s]: rebooting, down for %.1f s", self.name, seconds)
        await asyncio.gather(*self._power_down(), return_exceptions=True)
        await asyncio.sleep(seconds)
        self.personality = self._new_personality()
        self._power_up()

    def power_off(self) -> None:
        """Switch the module off: the tty vanishes until ``reboot``."""
        logger.info("modem[%s]: powered down", self.name)
        self._power_down()

    def reboot_soon(self, downtime: float | None = None) -> None:
        """Start ``reboot`` in the background (from a signal or a control line).

        ``stop`` cancels it if it is still running.
        """
        self._power_task = asyncio.get_running_loop().create_task(self.reboot(downtime))

    def _reboot_requested(self) -> None:
        self._power_task = asyncio.get_running_loop().create_task(self._reboot_later())

    async def _reboot_later(self) -> None:
        await self._last_words()
        await self.reboot()

    def _power_off_requested(self) -> None:
        self._power_task = asyncio.get_running_loop().create_task(self._off_later())

    async def _off_later(self) -> None:
        await self._last_words()
        self.power_off()

    async def _last_words(self) -> None:
        """Let the last reply reach the host, and be read, before the port goes."""
        await self._transmitter.wait_below(0)
        await asyncio.sleep(_POWER_OFF_GRACE)

    def drop_bearer(self) -> None:
        """The network tears down the data bearer (``+CIPEVENT`` / ``pdpdeact``)."""
        self.personality.drop_bearer()

    def close_socket(self, link: int) -> None:
        """The network closes one socket; the module reports it as a far-end close."""
        self.personality.close_socket(link)

    def lose_registration(self, seconds: float) -> None:
        """Registration is lost now and comes back ``seconds`` later."""
        self._radio.lose_registration(seconds)

    def set_signal(self, rssi: int) -> None:
        """Report ``rssi`` (0..31, 99 unknown) in ``+CSQ``."""
        self._radio.set_signal(rssi)

    def set_no_signal(self, value: bool = True) -> None:
        """Lose all signal (and registration), or get it back."""
        self._radio.set_no_signal(value)

    def set_latency(self, inbound: float, outbound: float) -> None:
        """Delay the host's bytes by ``inbound`` and the module's by ``outbound``."""
        self.config.latency_in = inbound
        self._transmitter.latency = outbound

    def set_fragment(self, size: int | None) -> None:
        """Deliver output in writes of at most ``size`` bytes (None: whole)."""
        self._transmitter.fragment = size

    def hang(self) -> None:
        """Stop answering: input is ignored and output held."""
        logger.info("modem[%s]: hung", self.name)
        self._hung = True
        self._engine.muted = True
        self._transmitter.hold()

    def resume(self) -> None:
        """Answer again after ``hang``."""
        logger.info("modem[%s]: answering again", self.name)
        self._hung = False
        self._engine.muted = False
        self._transmitter.release()

    def _data_received(self, data: bytes) -> None:
        if self.config.latency_in <= 0 and not self._inbound:
            self._engine.feed(data)
            return
        due = asyncio.get_running_loop().time() + self.config.latency_in
        self._inbound.append((due, data))
        if self._inbound_timer is None:
            self._schedule_inbound()

    def _schedule_inbound(self) -> None:
        """Deliver the oldest delayed host bytes when due; order is never changed."""
        loop = asyncio.get_running_loop()
        self._inbound_timer = loop.call_at(self._inbound[0][0], self._inbound_due)

    def _inbound_due(self) -> None:
        self._inbound_timer = None
        now = asyncio.get_running_loop().time()
        while self._inbound and self._inbound[0][0] <= now:
            self._engine.feed(self._inbound.popleft()[1])
        if self._inbound:
            self._schedule_inbound()

    def _drop_inbound(self) -> None:
        """Forget host bytes still on their way (the module lost power)."""
        if self._inbound_timer is not None:
            self._inbound_timer.cancel()
            self._inbound_timer = None
        self._inbound.clear()
