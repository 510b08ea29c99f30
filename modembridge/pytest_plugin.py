"""pytest plugin: one switch between simulated modules and a bench of real ones.

Installed with the package (entry point ``pytest11: modembridge``), so a lab can write
its own hardware-in-the-loop tests with these fixtures. With no option the session
runs two simulated modules (a SIM7600 and an EC20) and a relay of its own; with
``--modem PORT`` (repeatable) and ``--relay HOST:PORT`` the same tests drive real
modules through a real relay. Simulated modules answer at once, so their AT command
waits are capped (``--command-timeout``, 2 s by default) and a hung one is noticed in
seconds; real ones keep each command's own limit unless the option is given.

Fixtures: ``relay`` (the relay's address and, for the session's own relay, its
cards), ``relay_presence`` (who is online at the relay, the session's own or the
``--relay`` one: ``await relay_presence.wait_online(card.name, 60)`` instead of a
sleep, ``wait_offline``, ``online(names)``; skips on a relay without presence),
``modems`` / ``modem`` (opened and brought up), ``modem_card`` / ``modem_cards`` (a
module attached as a card by the attach agent), ``tcp_card`` (a plain TCP card for
the other end), ``simulator`` / ``simulators`` (fault injection), ``measure``
(record a number), ``timeline`` (note a step).

Markers: ``hardware`` (needs a real module), ``simulation_only`` (injects faults),
``modems(n)`` (needs n modules), ``model("ec20")`` (needs that model), ``soak`` (runs
only with ``--soak``). A test that cannot run on this bench is skipped with a reason
naming the option that would enable it.

On real hardware a health gate runs once before the first test that needs the bench:
SIM ready, registered, signal above ``--min-signal``, relay reachable. A sick bench
skips those tests with the reason instead of failing each one.

For each test the AT dialogue of every module and the relay's card events go to one
timeline file, named in the failure report and attached to the JUnit test case
(``[[ATTACHMENT|path]]``, the form Jenkins reads). Module identity (model, firmware,
masked IMEI and ICCID) and measurements (time to register, to come online, round-trip
percentiles, signal) are JUnit properties; the measurements are also summarised at the
end of the run.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from modembridge.agent import DEFAULT_HEARTBEAT, AgentConfig, capped_timeouts
from modembridge.benchcard import AgentCard, BenchCard
from modembridge.bringup import bring_up
from modembridge.cli.options import parse_host_port
from modembridge.detect import open_modem
from modembridge.junitattach import JUnitAttacher
from modembridge.measurement import Measurements
from modembridge.modem import Modem
from modembridge.presence import PresenceUnsupported, PresenceWatcher, observer_name
from modembridge.supervisor import RecoveryPolicy
from modembridge.testbench import (
    DEFAULT_APN,
    DEFAULT_MIN_SIGNAL_DBM,
    DEFAULT_MODEMS,
    SESSION_HEARTBEAT,
    Bench,
    BenchConfig,
    ModemSpec,
    SimulatorHandle,
    check_health,
    parse_duration,
)
from modembridge.timeline import Timeline

try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - without it the async fixtures cannot run
    async_fixture = pytest.fixture  # type: ignore[assignment]

T = TypeVar("T")

CONFIG_KEY = pytest.StashKey[BenchConfig]()
MEASUREMENTS_KEY = pytest.StashKey[Measurements]()
TIMELINE_KEY = pytest.StashKey[Path]()
ATTACHMENTS_KEY = pytest.StashKey[dict[str, Path]]()

SIMULATION_ONLY = "injects simulator faults: runs only with --modem sim:MODEL modules"

MARKERS = (
    "hardware: needs a real module (--modem PORT)",
    "simulation_only: injects simulator faults; skipped on real modules",
    "modems(n): needs n modules (--modem once per module)",
    "model(name, ...): needs a module of one of these models (sim7600, ec20)",
    "soak: long run; skipped unless --soak DURATION is given",
)

# ---------------------------------------------------------------------------------
# Options and markers


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``modembridge`` option group."""
    group = parser.getgroup("modembridge", "hardware-in-the-loop (modembridge)")
    group.addoption(
        "--modem",
        action="append",
        dest="mb_modems",
        metavar="PORT|sim:MODEL",
        help="a module's AT port, or sim:sim7600 / sim:ec20; repeat for each "
        f"module (default: {' '.join(DEFAULT_MODEMS)})",
    )
    group.addoption(
        "--relay",
        dest="mb_relay",
        metavar="HOST:PORT",
        help="the relay the cards use (default: one started for the session)",
    )
    group.addoption(
        "--apn", dest="mb_apn", default=DEFAULT_APN, help="APN for the data bearer"
    )
    group.addoption(
        "--min-signal",
        dest="mb_min_signal",
        type=int,
        default=DEFAULT_MIN_SIGNAL_DBM,
        metavar="DBM",
        help="health gate: weakest signal a real module may have "
        f"(default {DEFAULT_MIN_SIGNAL_DBM} dBm)",
    )
    group.addoption(
        "--soak",
        dest="mb_soak",
        metavar="DURATION",
        help="run the soak tests for this long (90s, 10m, 2h)",
    )
    group.addoption(
        "--command-timeout",
        dest="mb_command_timeout",
        metavar="DURATION",
        help="longest wait for any one AT command (2s, 500ms) (default: 2 s on "
        "simulated modules, each command's own limit on real ones)",
    )
    group.addoption(
        "--timeline-dir",
        dest="mb_timeline_dir",
        metavar="DIR",
        help="where the per-test timelines go (default: under pytest's cache)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and read the options into a ``BenchConfig``."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    config.stash[CONFIG_KEY] = _bench_config(config)
    config.stash[MEASUREMENTS_KEY] = Measurements()
    config.stash[ATTACHMENTS_KEY] = {}
    config.pluginmanager.register(
        JUnitAttacher(config.stash[ATTACHMENTS_KEY], config), "modembridge-junit"
    )


def _bench_config(config: pytest.Config) -> BenchConfig:
    option = config.option
    try:
        modems = tuple(
            ModemSpec.parse(text)
            for text in (getattr(option, "mb_modems", None) or DEFAULT_MODEMS)
        )
        relay_text = getattr(option, "mb_relay", None)
        soak_text = getattr(option, "mb_soak", None)
        cap_text = getattr(option, "mb_command_timeout", None)
        return BenchConfig(
            modems=modems,
            relay=parse_host_port(relay_text, None) if relay_text else None,
            apn=getattr(option, "mb_apn", DEFAULT_APN),
            min_signal_dbm=getattr(option, "mb_min_signal", DEFAULT_MIN_SIGNAL_DBM),
            soak_seconds=parse_duration(soak_text) if soak_text else None,
            timeline_dir=_timeline_dir(config),
            command_timeout=parse_duration(cap_text) if cap_text else None,
        )
    except ValueError as exc:
        raise pytest.UsageError(f"modembridge: {exc}") from exc


def _timeline_dir(config: pytest.Config) -> Path:
    given = getattr(config.option, "mb_timeline_dir", None)
    if given:
        return Path(given).resolve()
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("modembridge-timelines"))
    return Path(tempfile.mkdtemp(prefix="modembridge-timelines-"))


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Skip, with the enabling option as reason, what this bench cannot run."""
    bench = config.stash[CONFIG_KEY]
    for item in items:
        reason = skip_reason(item, bench)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def skip_reason(item: pytest.Item, bench: BenchConfig) -> str | None:
    """Why ``item`` cannot run on ``bench``, or None if it can."""
    if item.get_closest_marker("hardware") and not bench.has_hardware:
        return "needs a real module: give --modem /dev/ttyUSB2 (its AT port)"
    if item.get_closest_marker("simulation_only") and bench.has_hardware:
        return SIMULATION_ONLY
    if item.get_closest_marker("soak") and bench.soak_seconds is None:
        return "soak test: give --soak DURATION (for instance --soak 10m) to run it"

    needed = _modems_needed(item)
    if needed > len(bench.modems):
        return (
            f"needs {needed} modules, {len(bench.modems)} configured: "
            "give --modem once per module"
        )
    models = _models_wanted(item)
    hints = [spec.model_hint for spec in bench.modems]
    if models and None not in hints and not set(models) & set(hints):
        return _model_reason(models)
    return None


def _model_reason(models: list[str]) -> str:
    return (
        f"needs a module of model {' or '.join(models)}: give --modem with "
        f"one (for instance --modem sim:{models[0]})"
    )


def _modems_needed(item: pytest.Item) -> int:
    marker = item.get_closest_marker("modems")
    if marker is None:
        return 0
    return int(marker.args[0]) if marker.args else 1


def _models_wanted(item: pytest.Item) -> list[str]:
    marker = item.get_closest_marker("model")
    return [str(name).lower() for name in marker.args] if marker else []


# ---------------------------------------------------------------------------------
# The bench and the relay


@pytest.fixture(scope="session")
def hil_config(pytestconfig: pytest.Config) -> BenchConfig:
    """The bench as the command line described it."""
    return pytestconfig.stash[CONFIG_KEY]


@pytest.fixture(scope="session")
def hil_bench(
    hil_config: BenchConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bench]:
    """The session's relay and simulated modules, started; real ones health-checked."""
    bench = Bench(hil_config, tmp_path_factory.mktemp("bench") / "modembridge")
    try:
        bench.start()
        if hil_config.has_hardware:
            _health_gate(bench)
        yield bench
    finally:
        bench.stop()


LOOPBACK_RELAY = (
    "the session's own relay listens on 127.0.0.1, out of a real module's reach: "
    "give --relay HOST:PORT, a relay the modules reach over the cellular network"
)


def _health_gate(bench: Bench) -> None:
    """Skip every test of the bench, with the reasons, when the bench is sick."""
    real = [
        port
        for port, simulator in zip(bench.ports, bench.simulators, strict=True)
        if simulator is None
    ]
    problems = asyncio.run(
        check_health(real, bench.relay_address, bench.config.min_signal_dbm, open_modem)
    )
    if bench.relay_in_process:
        problems.insert(0, LOOPBACK_RELAY)
    if problems:
        pytest.skip("bench health check failed: " + "; ".join(problems))


class RelayInfo:
    """The relay the cards use: its address and, for the session's own, its cards."""

    def __init__(self, bench: Bench) -> None:
        self._bench = bench
        self.host, self.port = bench.relay_address
        self.in_process = bench.relay_in_process
        self.heartbeat = SESSION_HEARTBEAT if self.in_process else DEFAULT_HEARTBEAT

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``."""
        return (self.host, self.port)

    def cards(self) -> list[str] | None:
        """Cards connected now; None when the relay is not the session's own."""
        return self._bench.relay_cards()

    def connects(self, card: str) -> int | None:
        """How often ``card`` registered so far; None for a relay not our own."""
        if not self.in_process:
            return None
        events = self._bench.relay_events
        return sum(1 for event, name in events if (event, name) == ("connect", card))

    async def wait_connects(self, card: str, count: int, within: float) -> None:
        """Wait until ``card`` registered ``count`` times (the session's relay only)."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def relay_event(_event: str, _card: str) -> None:
            loop.call_soon_threadsafe(changed.set)

        remove = self._bench.add_relay_listener(relay_event)
        try:
            async with asyncio.timeout(within):
                while (self.connects(card) or 0) < count:
                    await changed.wait()
                    changed.clear()
        finally:
            remove()


@pytest.fixture(scope="session")
def relay(hil_bench: Bench) -> RelayInfo:
    """The relay: the session's own, or the one ``--relay`` names."""
    return RelayInfo(hil_bench)


NO_PRESENCE = (
    "waiting for a card at the relay needs presence requests: give --relay "
    "HOST:PORT of a relay that answers them (docs/cluster.md, Presence)"
)


@async_fixture
async def relay_presence(
    hil_bench: Bench, timeline: Timeline
) -> AsyncIterator[PresenceWatcher]:
    """An observer card at the relay: wait until a card is online or gone there.

    Its log lines, among them each wait and how long it took, go to the timeline.
    """
    name = observer_name(hil_bench.card_name("observer"))
    watcher = PresenceWatcher(hil_bench.relay_address, name)
    try:
        try:
            await watcher.open()
            # Asking about itself tells at once whether the relay knows presence.
            await watcher.online([watcher.name])
        except PresenceUnsupported as exc:
            pytest.skip(f"{exc}; {NO_PRESENCE}")
        yield watcher
    finally:
        await watcher.close()


# ---------------------------------------------------------------------------------
# Timeline and measurements


@pytest.fixture
def timeline(request: pytest.FixtureRequest, hil_bench: Bench) -> Iterator[Timeline]:
    """This test's timeline: AT dialogue and relay events, written after the test."""
    item = request.node
    path = request.config.stash[CONFIG_KEY].timeline_dir / _file_name(item.nodeid)
    item.stash[TIMELINE_KEY] = path

    with Timeline(item.nodeid) as story:
        remove = hil_bench.add_relay_listener(
            lambda event, card: story.relay_event(f"card {card}: {event}")
        )
        if not hil_bench.relay_in_process:
            story.note("the relay is outside this session: its card events are unseen")
        try:
            yield story
        finally:
            remove()
    story.write(path)
    item.user_properties.append(("timeline", str(path)))
    request.config.stash[ATTACHMENTS_KEY][item.nodeid] = path


def _file_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:180] + ".log"


Measure = Callable[[str, float], None]


@pytest.fixture
def measure(request: pytest.FixtureRequest) -> Measure:
    """Record a number: a JUnit property of the test and a line of the summary."""
    measurements = request.config.stash[MEASUREMENTS_KEY]
    item = request.node

    def record(name: str, value: float) -> None:
        measurements.record(item.nodeid, name, value)
        item.user_properties.append((name, value))

    return record


def mask(value: str | None, keep: int = 4) -> str:
    """All but the last ``keep`` characters hidden: ``***********1788``."""
    if not value:
        return ""
    return "*" * max(len(value) - keep, 0) + value[-keep:]


# ---------------------------------------------------------------------------------
# Modules


async def _open_and_bring_up(
    index: int,
    port: str,
    config: BenchConfig,
    measure: Measure,
    request: pytest.FixtureRequest,
) -> Modem:
    """Open one module, bring it up, and record who it is and how long it took."""
    modem = await open_modem(
        port, timeouts=capped_timeouts(config.command_timeout_of(index))
    )
    try:
        report = await bring_up(modem, config.apn)
    except BaseException:
        await modem.close()
        raise

    prefix = f"modem{index}"
    identity = report.identity
    request.node.user_properties.extend(
        [
            (f"{prefix}.port", port),
            (f"{prefix}.model", identity.model),
            (f"{prefix}.firmware", identity.firmware),
            (f"{prefix}.imei", mask(identity.imei)),
            (f"{prefix}.iccid", mask(identity.iccid)),
        ]
    )
    for stage in report.stages:
        measure(f"{prefix}.{stage.stage}_s", round(stage.seconds, 3))
    measure(f"{prefix}.bring_up_s", round(report.total_seconds, 3))
    if report.signal.dbm is not None:
        measure(f"{prefix}.signal_dbm", report.signal.dbm)
    return modem


def _allowed_indices(
    item: pytest.Item | pytest.Function, bench: BenchConfig
) -> list[int]:
    """The modules a test may run on: those its ``model`` marker allows."""
    models = _models_wanted(item)
    return [
        index
        for index, spec in enumerate(bench.modems)
        if not models or spec.model_hint is None or spec.model_hint in models
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test that uses one module once on each module of the bench."""
    if "hil_module" not in metafunc.fixturenames:
        return
    bench = metafunc.config.stash[CONFIG_KEY]
    allowed = _allowed_indices(metafunc.definition, bench)
    if allowed:
        metafunc.parametrize(
            "hil_module", allowed, ids=_module_ids(bench, allowed), indirect=True
        )


def _module_ids(bench: BenchConfig, indices: list[int]) -> list[str]:
    """``sim7600``, ``ec20``; with a number where a model repeats or is unknown."""
    hints = [spec.model_hint for spec in bench.modems]
    ids = []
    for index in indices:
        hint = hints[index]
        unique = hint is not None and hints.count(hint) == 1
        ids.append(hint if unique and hint else f"{hint or 'module'}{index}")
    return ids


@pytest.fixture
def hil_module(request: pytest.FixtureRequest, hil_config: BenchConfig) -> int:
    """The index of the module this test runs on (a parameter of the test)."""
    param = getattr(request, "param", None)
    if isinstance(param, int):
        return param
    allowed = _allowed_indices(request.node, hil_config)
    if not allowed:
        pytest.skip(_model_reason(_models_wanted(request.node)))
    return allowed[0]


@async_fixture
async def modems(
    request: pytest.FixtureRequest,
    hil_bench: Bench,
    timeline: Timeline,
    measure: Measure,
) -> AsyncIterator[list[Modem]]:
    """Every module of the bench, opened and brought up, in ``--modem`` order."""
    indices = range(len(hil_bench.ports))
    seen = [await _violations(hil_bench, index) for index in indices]
    # The modules register at the same time: a bench waits once, not once a module.
    outcomes = await asyncio.gather(
        *(
            _open_and_bring_up(index, port, hil_bench.config, measure, request)
            for index, port in enumerate(hil_bench.ports)
        ),
        return_exceptions=True,
    )
    opened = [outcome for outcome in outcomes if isinstance(outcome, Modem)]
    try:
        yield _successes(outcomes)
    finally:
        for modem in opened:
            await modem.close()
        for index in indices:
            await _note_violations(hil_bench, index, seen[index], timeline, measure)


@async_fixture
async def modem(
    request: pytest.FixtureRequest,
    hil_bench: Bench,
    hil_module: int,
    timeline: Timeline,
    measure: Measure,
) -> AsyncIterator[Modem]:
    """One module, opened and brought up; the test runs once for each module."""
    index = hil_module
    seen = await _violations(hil_bench, index)
    opened = await _open_and_bring_up(
        index, hil_bench.ports[index], hil_bench.config, measure, request
    )
    try:
        _check_model(request, opened)
        yield opened
    finally:
        await opened.close()
        await _note_violations(hil_bench, index, seen, timeline, measure)


async def _violations(bench: Bench, index: int) -> int:
    """How many breaches of AT discipline a simulated module saw so far."""
    handle = bench.simulators[index]
    return 0 if handle is None else len(await handle.violations())


async def _note_violations(
    bench: Bench, index: int, seen: int, timeline: Timeline, measure: Measure
) -> None:
    """Put the breaches of AT discipline since ``seen`` into the timeline, counted."""
    handle = bench.simulators[index]
    if handle is None:
        return
    new = (await handle.violations())[seen:]
    for violation in new:
        timeline.note(f"modem{index}: the host broke AT discipline: {violation}")
    measure(f"modem{index}.at_violations", len(new))


def _check_model(request: pytest.FixtureRequest, modem: Modem) -> None:
    models = _models_wanted(request.node)
    if models and modem.facts.family not in models:
        pytest.skip(f"{modem.port} is a {modem.facts.family}; {_model_reason(models)}")


@pytest.fixture
def simulators(hil_bench: Bench) -> list[SimulatorHandle]:
    """The fault handles of every module; skips unless all are simulated."""
    handles = [handle for handle in hil_bench.simulators if handle is not None]
    if len(handles) != len(hil_bench.simulators):
        pytest.skip(SIMULATION_ONLY)
    return handles


@pytest.fixture
def simulator(hil_bench: Bench, hil_module: int) -> SimulatorHandle:
    """The fault handle of the module ``modem`` and ``modem_card`` use."""
    handle = hil_bench.simulators[hil_module]
    if handle is None:
        pytest.skip(SIMULATION_ONLY)
    return handle


# ---------------------------------------------------------------------------------
# Cards


def _agent_config(bench: Bench, index: int, port: str, card: str) -> AgentConfig:
    own_relay = bench.relay_in_process
    # The session's own relay beats every second: recover fast to match. Another
    # relay's silence limit is the agent's own, from the interval it announces.
    policy = (
        RecoveryPolicy(backoff_base=0.2, backoff_max=5.0)
        if own_relay
        else RecoveryPolicy()
    )
    return AgentConfig(
        port=port,
        card=card,
        server=bench.relay_address,
        json_output=True,
        silence_limit=3 * SESSION_HEARTBEAT if own_relay else None,
        policy=policy,
        command_timeout=bench.config.command_timeout_of(index),
    )


def _attached(bench: Bench, index: int, modem: Modem, card: str) -> AgentCard:
    """An agent card over ``modem``; after a reset the agent opens the port again."""
    handed_over = [modem]
    timeouts = capped_timeouts(bench.config.command_timeout_of(index))

    async def first_the_open_one(path: str) -> Modem:
        if handed_over:
            return handed_over.pop()
        return await open_modem(path, timeouts=timeouts)

    async def bring_up_with_apn(opened: Modem) -> object:
        return await bring_up(opened, bench.config.apn)

    return AgentCard(
        _agent_config(bench, index, modem.port, card),
        open_modem=first_the_open_one,
        bring_up=bring_up_with_apn,
    )


@async_fixture
async def modem_card(
    hil_bench: Bench, hil_module: int, modem: Modem, measure: Measure
) -> AsyncIterator[AgentCard]:
    """The module of ``modem`` attached as a card by the attach agent, online."""
    name = hil_bench.card_name(f"m{hil_module}")
    card = _attached(hil_bench, hil_module, modem, name)
    try:
        measure("card_online_s", await _started(card))
        yield card
    finally:
        await card.stop()


@async_fixture
async def modem_cards(
    hil_bench: Bench, modems: list[Modem], measure: Measure
) -> AsyncIterator[list[AgentCard]]:
    """Every module attached as a card, online, in ``--modem`` order."""
    cards = [
        _attached(hil_bench, index, opened, hil_bench.card_name(f"m{index}"))
        for index, opened in enumerate(modems)
    ]
    try:
        online = await asyncio.gather(
            *(_started(card) for card in cards), return_exceptions=True
        )
        for index, seconds in enumerate(_successes(online)):
            measure(f"card{index}_online_s", seconds)
        yield cards
    finally:
        stopped = asyncio.gather(*(c.stop() for c in cards), return_exceptions=True)
        _successes(await stopped)


def _successes(outcomes: Sequence[T | BaseException]) -> list[T]:
    """Results gathered with their exceptions; raises the first exception."""
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]


async def _started(card: AgentCard) -> float:
    """Start the agent card; seconds until it was online."""
    began = time.monotonic()
    await card.start()
    return round(time.monotonic() - began, 3)


@async_fixture
async def tcp_card(hil_bench: Bench, timeline: Timeline) -> AsyncIterator[BenchCard]:
    """A plain TCP card from this host, for the other end of a conversation."""
    card = await BenchCard.tcp(hil_bench.relay_address, hil_bench.card_name("tcp"))
    try:
        yield card
    finally:
        await card.close()


# ---------------------------------------------------------------------------------
# Reports


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Name the test's timeline file in its failure report."""
    report: pytest.TestReport = yield
    path = item.stash.get(TIMELINE_KEY, None)
    if path is not None and report.failed:
        report.sections.append(("modembridge timeline", f"written to {path}"))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The session's measurements, one line a name."""
    measurements = config.stash.get(MEASUREMENTS_KEY, None)
    if measurements is None or not measurements.names():
        return
    terminalreporter.write_sep("-", "modembridge measurements")
    for line in measurements.summary_lines():
        terminalreporter.write_line(line)
