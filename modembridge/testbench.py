"""The bench a hardware-in-the-loop session runs on: its modules and its relay.

A bench is described by ``BenchConfig`` (what the pytest options said): each module is
a serial port of a real one or a simulated model (``sim:sim7600``), and the relay is
an address or, by default, one started for the session.

The session's own relay and simulated modules run on a ``BenchLoop``: an event loop in
a thread of its own. They must outlive every test, while each test runs on its own
loop; from the test's side a simulated module is only a pseudo-terminal, exactly as
a real one is only a tty, and the relay only a TCP address. Faults are injected into a
simulator through a ``SimulatorHandle``, which hops onto the bench loop.

``check_health`` is the gate a bench of real modules passes before its tests run:
SIM ready, registered, signal above a threshold, relay reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from modembridge.errors import ModemError
from modembridge.models import MODELS
from modembridge.modem import Modem, SimState
from modembridge.simulator import SimConfig, SimulatedModem, Violation
from relayserver.server import RelayConfig, RelayServer

logger = logging.getLogger(__name__)

T = TypeVar("T")

SIM_PREFIX = "sim:"
DEFAULT_MODEMS = ("sim:sim7600", "sim:ec20")
DEFAULT_APN = "internet"
DEFAULT_MIN_SIGNAL_DBM = -105
SESSION_HEARTBEAT = 1.0
"""Heartbeat interval of the session's own relay: short, so heartbeat tests are fast."""
SIM_COMMAND_TIMEOUT = 2.0
"""Longest wait for one AT command of a simulated module, which answers at once: a
hung one is noticed in seconds instead of after the dialect's limit (up to 150 s)."""
SIM_REBOOT_DOWNTIME = 0.5
"""How long a simulated module's port is gone when it reboots: enough for the agent
to see it vanish, short enough to keep the reboot tests quick."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)?", re.IGNORECASE)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}
_STABLE_NAME = re.compile(r"/modembridge/([a-z0-9]+)-[^/]+/[a-z]+$")
"""A udev stable name (``/dev/modembridge/ec20-1-1.2/at``) tells the model."""


@dataclass(frozen=True)
class ModemSpec:
    """One ``--modem`` value: a real module's serial port, or a simulated model."""

    text: str
    simulated_model: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModemSpec:
        """Read ``/dev/ttyUSB2``, ``/dev/modembridge/...`` or ``sim:ec20``."""
        if not text.startswith(SIM_PREFIX):
            if not text:
                raise ValueError("an empty --modem")
            return cls(text)
        model = text.removeprefix(SIM_PREFIX).lower()
        if model not in MODELS:
            known = ", ".join(SIM_PREFIX + name for name in MODELS)
            raise ValueError(f"no simulated model {model!r}; use one of {known}")
        return cls(text, model)

    @property
    def simulated(self) -> bool:
        """Whether this module is a simulator."""
        return self.simulated_model is not None

    @property
    def model_hint(self) -> str | None:
        """The model known before opening: simulated, or in a udev stable name."""
        if self.simulated_model:
            return self.simulated_model
        match = _STABLE_NAME.search(self.text)
        return match.group(1) if match and match.group(1) in MODELS else None


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``10m``, ``2h``, ``1h30m``; raises ValueError."""
    position = 0
    total = 0.0
    compact = text.strip()
    while position < len(compact):
        match = _DURATION.match(compact, position)
        if match is None or match.end() == position:
            raise ValueError(f"{text!r} is not a duration like 90s, 10m or 2h")
        unit = match.group(2).lower() if match.group(2) else None
        total += float(match.group(1)) * _UNIT_SECONDS[unit]
        position = match.end()
    if total <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return total


@dataclass(frozen=True)
class BenchConfig:
    """What the session runs on, from the command line."""

    modems: tuple[ModemSpec, ...] = tuple(ModemSpec.parse(m) for m in DEFAULT_MODEMS)
    relay: tuple[str, int] | None = None
    apn: str = DEFAULT_APN
    min_signal_dbm: int = DEFAULT_MIN_SIGNAL_DBM
    soak_seconds: float | None = None
    timeline_dir: Path = Path("hil-timelines")
    command_timeout: float | None = None

    def command_timeout_of(self, index: int) -> float | None:
        """The cap on module ``index``'s AT command waits; None keeps the dialect's.

        ``--command-timeout`` applies to every module; without it a simulated module
        gets ``SIM_COMMAND_TIMEOUT`` and a real one its dialect's own limits.
        """
        if self.command_timeout is not None:
            return self.command_timeout
        return SIM_COMMAND_TIMEOUT if self.modems[index].simulated else None

    @property
    def has_hardware(self) -> bool:
        """Whether any module is a real one."""
        return any(not spec.simulated for spec in self.modems)

    @property
    def all_simulated(self) -> bool:
        """Whether every module is simulated (faults can be injected)."""
        return all(spec.simulated for spec in self.modems)


class BenchLoop:
    """An event loop in a daemon thread, for what must outlive every test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="modembridge-bench", daemon=True
        )

    def start(self) -> None:
        """Start the loop's thread."""
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the bench loop; wait for its result in this thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the bench loop and await it from another loop."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        """Stop the loop, join the thread and close the loop."""
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class SimulatorHandle:
    """A simulated module's faults, callable from a test's own loop."""

    def __init__(
        self, simulator: SimulatedModem, bench_loop: BenchLoop, model: str
    ) -> None:
        self._simulator = simulator
        self._loop = bench_loop
        self.model = model

    @property
    def path(self) -> str:
        """The pseudo-terminal the module answers on."""
        return self._simulator.path

    async def drop_bearer(self) -> None:
        """The network deactivates the data bearer."""
        await self._call(self._simulator.drop_bearer)

    async def close_socket(self, link: int | None = None) -> None:
        """The network closes the module's socket ``link``, or every open one."""
        links = range(self._simulator.facts.socket_count) if link is None else [link]
        for number in links:
            await self._call(self._simulator.close_socket, number)

    async def reboot(self) -> None:
        """The module restarts: its port goes away and comes back."""
        await self._loop.run_async(self._simulator.reboot())

    async def power_off(self) -> None:
        """The module loses power: its port vanishes until ``power_on``."""
        await self._call(self._simulator.power_off)

    async def power_on(self) -> None:
        """Power returns: the module boots and its port comes back."""
        await self._loop.run_async(self._simulator.reboot(downtime=0.0))

    async def lose_registration(self, seconds: float) -> None:
        """The network drops the module's registration for ``seconds``."""
        await self._call(self._simulator.lose_registration, seconds)

    async def set_no_signal(self, value: bool) -> None:
        """Lose all signal (and with it registration), or get it back."""
        await self._call(self._simulator.set_no_signal, value)

    async def degrade_link(self, latency: float, fragment: int | None) -> None:
        """Delay the serial link both ways and cut the module's output into pieces."""
        await self._call(self._simulator.set_latency, latency, latency)
        await self._call(self._simulator.set_fragment, fragment)

    async def restore_link(self) -> None:
        """Undo ``degrade_link``."""
        await self.degrade_link(0.0, None)

    async def hang(self) -> None:
        """The module stops answering."""
        await self._call(self._simulator.hang)

    async def resume(self) -> None:
        """A hung module answers again."""
        await self._call(self._simulator.resume)

    async def violations(self) -> list[Violation]:
        """The breaches of AT discipline the simulator saw from the host so far."""

        async def copy() -> list[Violation]:
            return list(self._simulator.violations)

        return await self._loop.run_async(copy())

    async def _call(self, function: Callable[..., object], *args: object) -> None:
        async def call() -> None:
            result = function(*args)
            if isinstance(result, Awaitable):
                await result

        await self._loop.run_async(call())


RelayListener = Callable[[str, str], None]


@dataclass
class Bench:
    """The session's relay and modules; ``start`` brings the simulated ones up."""

    config: BenchConfig
    link_dir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    ports: list[str] = field(default_factory=list)
    simulators: list[SimulatorHandle | None] = field(default_factory=list)
    relay_address: tuple[str, int] = ("127.0.0.1", 0)
    relay_events: list[tuple[str, str]] = field(default_factory=list)
    _loop: BenchLoop | None = None
    _relay: RelayServer | None = None
    _sims: list[SimulatedModem] = field(default_factory=list)
    _listeners: list[RelayListener] = field(default_factory=list)

    @property
    def relay_in_process(self) -> bool:
        """Whether the relay is the session's own (its card events are visible)."""
        return self._relay is not None

    def card_name(self, role: str) -> str:
        """A card name unique to this session (a shared relay serves other benches)."""
        return f"hil-{self.token}-{role}"

    def start(self) -> None:
        """Start the relay unless one was given, and every simulated module."""
        needs_loop = self.config.relay is None or any(
            s.simulated for s in self.config.modems
        )
        if needs_loop:
            self._loop = BenchLoop()
            self._loop.start()
        if self.config.relay is None:
            self.relay_address = self._bench_loop.run(self._start_relay())
        else:
            self.relay_address = self.config.relay
        for spec in self.config.modems:
            self._start_modem(spec)

    def relay_cards(self) -> list[str] | None:
        """The cards the session's relay holds now; None for an outside relay."""
        relay = self._relay
        if relay is None:
            return None

        async def cards() -> list[str]:
            return list(relay.cards())

        return self._bench_loop.run(cards())

    def add_relay_listener(self, listener: RelayListener) -> Callable[[], None]:
        """Call ``listener(event, card)`` for relay card events; returns the removal."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def stop(self) -> None:
        """Stop the simulators and the relay, then the bench loop."""
        if self._loop is None:
            return
        for simulator in self._sims:
            with contextlib.suppress(Exception):
                self._loop.run(simulator.stop(), timeout=15)
        if self._relay is not None:
            with contextlib.suppress(Exception):
                self._loop.run(self._relay.close(), timeout=15)
        self._loop.stop()
        self._loop = None

    @property
    def _bench_loop(self) -> BenchLoop:
        if self._loop is None:
            raise RuntimeError("the bench is not started")
        return self._loop

    async def _start_relay(self) -> tuple[str, int]:
        relay = RelayServer(
            RelayConfig(host="127.0.0.1", port=0, heartbeat=SESSION_HEARTBEAT)
        )
        relay.add_listener(self._relay_event)
        await relay.start()
        self._relay = relay
        return ("127.0.0.1", relay.port)

    def _relay_event(self, event: str, card: str) -> None:
        self.relay_events.append((event, card))
        for listener in list(self._listeners):
            listener(event, card)

    def _start_modem(self, spec: ModemSpec) -> None:
        if spec.simulated_model is None:
            self.ports.append(spec.text)
            self.simulators.append(None)
            return
        index = len(self.ports)
        # The link's file name is the device name in every log line: keep it unique.
        link = self.link_dir / f"{spec.simulated_model}-sim{index}"
        simulator = self._bench_loop.run(
            self._start_simulator(spec.simulated_model, link)
        )
        self._sims.append(simulator)
        handle = SimulatorHandle(simulator, self._bench_loop, spec.simulated_model)
        self.ports.append(handle.path)
        self.simulators.append(handle)

    async def _start_simulator(self, model: str, link: Path) -> SimulatedModem:
        link.parent.mkdir(parents=True, exist_ok=True)
        config = SimConfig(
            model=model, link=str(link), reboot_downtime=SIM_REBOOT_DOWNTIME
        )
        simulator = SimulatedModem(config)
        await simulator.start()
        logger.info("bench: simulated %s on %s", model, simulator.path)
        return simulator


# ---------------------------------------------------------------------------------
# The health gate

OpenModem = Callable[[str], Awaitable[Modem]]


async def check_health(
    ports: list[str],
    relay: tuple[str, int],
    min_signal_dbm: int,
    open_modem: OpenModem,
) -> list[str]:
    """What is wrong with the bench, one sentence a problem; empty when healthy."""
    problems = [await _relay_problem(relay)]
    problems += [await _module_problem(p, min_signal_dbm, open_modem) for p in ports]
    return [problem for problem in problems if problem]


async def _relay_problem(relay: tuple[str, int]) -> str | None:
    host, port = relay
    try:
        async with asyncio.timeout(10):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        return f"relay {host}:{port} unreachable ({exc or 'timeout'})"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def _module_problem(
    port: str, min_signal_dbm: int, open_modem: OpenModem
) -> str | None:
    try:
        modem = await open_modem(port)
    except (ModemError, OSError) as exc:
        return f"{port}: cannot open the module ({exc})"
    try:
        return await _module_state_problem(modem, port, min_signal_dbm)
    except ModemError as exc:
        return f"{port}: the module does not answer properly ({exc})"
    finally:
        await modem.close()


async def _module_state_problem(
    modem: Modem, port: str, min_signal_dbm: int
) -> str | None:
    sim = await modem.sim_state()
    if sim is not SimState.READY:
        return f"{port}: SIM {sim.value}"

    registration = await modem.registration()
    if not registration.registered:
        return f"{port}: not registered on a network ({registration})"

    signal = await modem.signal()
    if signal.dbm is None or signal.dbm < min_signal_dbm:
        shown = "unknown" if signal.dbm is None else f"{signal.dbm} dBm"
        return f"{port}: signal {shown}, below --min-signal {min_signal_dbm} dBm"
    return None
