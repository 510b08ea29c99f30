"""The pytest plugin in an inner pytest session: options, skips, gate, reports.

The inner sessions run on simulated modules (the default), and on a "real" module
that is a simulator the plugin was not told about: a path given to ``--modem``. That
is how the health gate and the hardware paths are exercised without hardware.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from modembridge.simulator import SimConfig, SimulatedModem
from modembridge.testbench import BenchLoop
from relayserver.server import RelayConfig, RelayServer

# Hypothesis is imported afresh by every inner session; it costs a second each.
INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
addopts = -p no:hypothesispytest
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester


@pytest.fixture
def outside_module(tmp_path: Path) -> Iterator[str]:
    """A simulated SIM7600 the inner session sees only as a serial port path."""
    yield from _outside_module(tmp_path, SimConfig(model="sim7600"))


@pytest.fixture
def sick_module(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A simulated EC20 outside the session, with the fault ``request.param`` names."""
    yield from _outside_module(tmp_path, SimConfig(model="ec20", **request.param))


@pytest.fixture(scope="module")
def outside_relay() -> Iterator[str]:
    """``--relay`` for a relay the inner session did not start, as a lab's is."""
    loop = BenchLoop()
    loop.start()
    relay = RelayServer(RelayConfig(host="127.0.0.1", port=0, heartbeat=1.0))
    loop.run(relay.start())
    try:
        yield f"--relay=127.0.0.1:{relay.port}"
    finally:
        loop.run(relay.close())
        loop.stop()


def _outside_module(tmp_path: Path, config: SimConfig) -> Iterator[str]:
    loop = BenchLoop()
    loop.start()
    config.link = str(tmp_path / f"{config.model}-outside")
    simulator = SimulatedModem(config)

    async def start() -> None:
        await simulator.start()

    loop.run(start())
    try:
        yield simulator.path
    finally:
        loop.run(simulator.stop())
        loop.stop()


SKIPS = """
import pytest

@pytest.mark.hardware
def test_needs_hardware(): pass

@pytest.mark.simulation_only
def test_only_simulated(): pass

@pytest.mark.modems(2)
def test_two_modules(): pass

@pytest.mark.modems(3)
def test_three_modules(): pass

@pytest.mark.soak
def test_soaking(): pass

@pytest.mark.model("ec20")
async def test_ec20_only(modem):
    assert modem.facts.family == "ec20"

def test_plain(): pass
"""


def test_default_bench_skips_with_the_enabling_option(inner: pytest.Pytester) -> None:
    inner.makepyfile(SKIPS)

    result = inner.runpytest("-rs")

    result.assert_outcomes(passed=4, skipped=3)
    result.stdout.fnmatch_lines(
        [
            "*needs a real module: give --modem*",
            "*needs 3 modules, 2 configured: give --modem once per module*",
            "*soak test: give --soak DURATION*",
        ]
    )
    result.stdout.no_fnmatch_line("*test_ec20_only*sim7600*")


def test_only_the_allowed_model_runs(inner: pytest.Pytester) -> None:
    inner.makepyfile(SKIPS)

    result = inner.runpytest("-v", "-k", "ec20_only")

    result.stdout.fnmatch_lines(["*test_ec20_only?ec20? PASSED*"])
    result.assert_outcomes(passed=1)


def test_single_module_tests_run_once_per_module(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        async def test_each(modem):
            assert await modem.bearer_active()
        """
    )

    result = inner.runpytest("-v", "--modem", "sim:ec20", "--modem", "sim:ec20")

    result.stdout.fnmatch_lines(
        ["*test_each?ec200? PASSED*", "*test_each?ec201? PASSED*"]
    )


def test_model_missing_from_the_bench_skips(inner: pytest.Pytester) -> None:
    inner.makepyfile(SKIPS)

    result = inner.runpytest("-rs", "-k", "ec20_only", "--modem", "sim:sim7600")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs a module of model ec20: give --modem*"])


def test_soak_runs_when_asked(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.soak
        def test_soaking(hil_config):
            assert hil_config.soak_seconds == 90.0
        """
    )

    inner.runpytest("--soak", "1m30s").assert_outcomes(passed=1)


def test_soak_of_the_suite_runs_every_module_and_reports_loss(
    inner: pytest.Pytester,
) -> None:
    soak = Path(__file__).resolve().parent.parent / "hil_tests" / "test_soak.py"

    result = inner.runpytest(str(soak), "--soak=1s", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)
    # Only the module-to-host direction promises no loss; the other is reported.
    result.stdout.fnmatch_lines(
        [
            "soak_m0_down_lost *",
            "soak_m0_up_lost * max=0",
            "soak_m1_down_lost *",
            "soak_m1_up_lost * max=0",
            "soak_m1_up_p90_ms *",
        ]
    )


def test_options_reach_the_bench_config(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        def test_config(hil_config):
            assert [m.text for m in hil_config.modems] == ["sim:ec20", "/dev/ttyUSB6"]
            assert hil_config.relay == ("relay.example.com", 8888)
            assert hil_config.apn == "cmnet"
            assert hil_config.min_signal_dbm == -95
            assert hil_config.has_hardware and not hil_config.all_simulated
        """
    )

    result = inner.runpytest(
        "--modem=sim:ec20",
        "--modem=/dev/ttyUSB6",
        "--relay=relay.example.com:8888",
        "--apn=cmnet",
        "--min-signal=-95",
    )

    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--modem=sim:bg96", "no simulated model 'bg96'"),
        ("--relay=relay.example.com", "has no port (HOST:PORT)"),
        ("--soak=forever", "is not a duration"),
        ("--command-timeout=0", "is not a positive duration"),
    ],
)
def test_bad_option_is_a_usage_error(
    inner: pytest.Pytester, option: str, message: str
) -> None:
    inner.makepyfile("def test_nothing(): pass")

    result = inner.runpytest(option)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*modembridge: *{message}*"])


@pytest.mark.parametrize(
    ("test", "reason"),
    [
        ("only_simulated", "injects simulator faults: runs only with --modem sim*"),
        # No udev name tells the model: it is known once the module is opened.
        ("ec20_only", "is a sim7600; needs a module of model ec20: give --modem*"),
    ],
)
def test_real_module_skips_what_it_cannot_run(
    inner: pytest.Pytester,
    outside_module: str,
    outside_relay: str,
    test: str,
    reason: str,
) -> None:
    inner.makepyfile(SKIPS)

    result = inner.runpytest(
        "-rs", "-k", test, f"--modem={outside_module}", outside_relay
    )

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*{reason}"])


def test_real_module_runs_hardware_tests(
    inner: pytest.Pytester, outside_module: str, outside_relay: str
) -> None:
    inner.makepyfile(SKIPS)

    result = inner.runpytest(
        "-k", "needs_hardware", f"--modem={outside_module}", outside_relay
    )

    result.assert_outcomes(passed=1)


def test_plugin_is_a_pytest11_entry_point() -> None:
    plugins = {entry.name: entry.value for entry in entry_points(group="pytest11")}

    assert plugins.get("modembridge") == "modembridge.pytest_plugin"


def test_markers_are_registered(inner: pytest.Pytester) -> None:
    result = inner.runpytest("--markers")

    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.hardware:*--modem*",
            "@pytest.mark.simulation_only:*",
            "@pytest.mark.modems(n):*",
            "@pytest.mark.model(name, ...):*",
            "@pytest.mark.soak:*--soak*",
        ],
        consecutive=False,
    )


def test_healthy_bench_runs_on_the_real_module(
    inner: pytest.Pytester, outside_module: str, outside_relay: str
) -> None:
    inner.makepyfile(
        """
        async def test_module(modem, simulator):
            pass

        async def test_module_alone(modem):
            assert modem.facts.family == "sim7600"
        """
    )

    result = inner.runpytest("-rs", f"--modem={outside_module}", outside_relay)

    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*injects simulator faults*"])


@pytest.mark.parametrize(
    ("sick_module", "options", "reason"),
    [
        ({"sim_absent": True}, [], "*: SIM *"),
        ({"no_signal": True}, [], "*: not registered on a network*"),
        (
            {"signal": 5},
            ["--min-signal=-95"],
            "*: signal -103 dBm, below --min-signal*",
        ),
    ],
    indirect=["sick_module"],
    ids=["sim-absent", "no-signal", "weak-signal"],
)
def test_sick_bench_skips_with_the_reason(
    inner: pytest.Pytester,
    sick_module: str,
    outside_relay: str,
    options: list[str],
    reason: str,
) -> None:
    inner.makepyfile(
        """
        async def test_one(modem): pass
        async def test_two(modem): pass
        def test_without_the_bench(): pass
        """
    )

    result = inner.runpytest("-rs", f"--modem={sick_module}", outside_relay, *options)

    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines([f"*bench health check failed: {reason}"])


def test_real_module_without_relay_fails_the_gate(
    inner: pytest.Pytester, outside_module: str
) -> None:
    inner.makepyfile("async def test_one(modem): pass")

    result = inner.runpytest("-rs", f"--modem={outside_module}")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*out of a real module's reach: give --relay*"])


def test_unreachable_relay_fails_the_gate(
    inner: pytest.Pytester, outside_module: str
) -> None:
    inner.makepyfile("async def test_one(modem): pass")

    result = inner.runpytest("-rs", f"--modem={outside_module}", "--relay=127.0.0.1:1")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*relay 127.0.0.1:1 unreachable*"])


COMMAND_CAP = """
def test_cap(modem, modem_card):
    longest = max(modem.seconds(name) for name in modem.COMMANDS)
    cap = modem_card.agent.config.command_timeout
    print(f"longest={longest:g} cap={cap}")
"""


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ([], "longest=2 cap=2.0"),
        (["--command-timeout=7s"], "longest=7 cap=7.0"),
    ],
)
def test_simulated_modules_cap_command_waits(
    inner: pytest.Pytester, options: list[str], shown: str
) -> None:
    inner.makepyfile(COMMAND_CAP)

    result = inner.runpytest("-s", "--modem=sim:ec20", *options)

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{shown}*"])


def test_real_module_keeps_the_dialects_command_limits(
    inner: pytest.Pytester, outside_module: str, outside_relay: str
) -> None:
    inner.makepyfile(COMMAND_CAP)

    result = inner.runpytest("-s", f"--modem={outside_module}", outside_relay)

    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*longest=2 *")
    result.stdout.fnmatch_lines(["*longest=* cap=None*"])


FAILING = """
async def test_fails(modem, tcp_card):
    await modem.signal()
    assert False, "on purpose"

async def test_passes(modem):
    await modem.signal()
"""


def test_failure_report_names_the_timeline(
    inner: pytest.Pytester, tmp_path: Path
) -> None:
    inner.makepyfile(FAILING)
    timelines = tmp_path / "timelines"

    result = inner.runpytest(
        "--modem=sim:sim7600", "--timeline-dir", str(timelines), "-k", "fails"
    )

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*modembridge timeline*", f"written to {timelines}*"])
    (path,) = timelines.iterdir()
    text = path.read_text()
    assert "> AT+CSQ\\r" in text
    assert "< +CSQ: " in text
    assert re.search(r"relay  card hil-\w+-tcp: connect", text)
    stamps = [line.split()[0] for line in text.splitlines()[1:]]
    assert stamps == sorted(stamps)


def test_junit_has_identity_measurements_and_the_attachment(
    inner: pytest.Pytester, tmp_path: Path
) -> None:
    inner.makepyfile(FAILING)
    report = tmp_path / "report.xml"

    inner.runpytest(
        "--modem=sim:sim7600",
        f"--junitxml={report}",
        f"--timeline-dir={tmp_path / 'tl'}",
    )

    cases = {case.get("name"): case for case in ET.parse(report).iter("testcase")}
    for case in cases.values():
        properties = {
            p.attrib["name"]: p.attrib["value"] for p in case.iter("property")
        }
        assert properties["modem0.model"] == "SIMCOM_SIM7600G-H"
        assert properties["modem0.firmware"]
        assert properties["modem0.imei"] == "***********1788"
        assert set(properties["modem0.iccid"][:-4]) == {"*"}
        float(properties["modem0.registration_s"])
        float(properties["modem0.signal_dbm"])
        timeline = properties["timeline"]
        assert Path(timeline).is_file()
        outputs = [node.text or "" for node in case.iter("system-out")]
        assert len(outputs) == 1
        assert f"[[ATTACHMENT|{timeline}]]" in outputs[0].splitlines()
    assert set(cases) == {"test_fails[sim7600]", "test_passes[sim7600]"}


@pytest.mark.parametrize(
    "logging", ["system-out", "all", "out-err", "system-err", "log"]
)
def test_junit_attachment_joins_captured_output(
    inner: pytest.Pytester, tmp_path: Path, logging: str
) -> None:
    inner.makepyfile(
        """
        async def test_passes(modem):
            print("said by the test")
        """
    )
    report = tmp_path / "report.xml"

    inner.runpytest(
        f"--junitxml={report}", "-o", f"junit_logging={logging}", "--modem=sim:ec20"
    )

    (case,) = ET.parse(report).iter("testcase")
    outputs = [
        node.text or "" for node in case if node.tag in ("system-out", "system-err")
    ]
    attached = [text for text in outputs if "[[ATTACHMENT|" in text]
    assert len(attached) == 1
    assert attached[0].count("[[ATTACHMENT|") == 1
    if logging in ("system-out", "all", "out-err"):
        assert "said by the test" in attached[0]


def test_junit_attachment_of_a_failure_when_passing_output_is_off(
    inner: pytest.Pytester, tmp_path: Path
) -> None:
    inner.makepyfile(FAILING)
    report = tmp_path / "report.xml"

    inner.runpytest(
        f"--junitxml={report}",
        "-o",
        "junit_logging=system-out",
        "-o",
        "junit_log_passing_tests=false",
        "--modem=sim:ec20",
    )

    cases = {case.get("name"): case for case in ET.parse(report).iter("testcase")}
    for case in cases.values():
        (output,) = [node.text or "" for node in case.iter("system-out")]
        assert output.count("[[ATTACHMENT|") == 1


def test_measurements_are_summarised(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        def test_numbers(measure):
            measure("answer_ms", 41.5)
            measure("answer_ms", 42.5)
        """
    )

    result = inner.runpytest()

    result.stdout.fnmatch_lines(
        ["*modembridge measurements*", "answer_ms  n=2 * min=41.5 median=42 max=42.5"]
    )


def test_session_without_bench_fixtures_starts_nothing(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile("def test_plain(): pass")

    result = inner.runpytest()

    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*modembridge measurements*")


PRESENCE = """
async def test_presence(relay_presence, tcp_card):
    await relay_presence.wait_online(tcp_card.name, 10)
    assert await relay_presence.online([tcp_card.name]) == [tcp_card.name]
    await tcp_card.close()
    await relay_presence.wait_offline(tcp_card.name, 10)
"""


@pytest.mark.parametrize("outside", [False, True], ids=["own-relay", "outside-relay"])
def test_relay_presence_waits_for_a_card_and_notes_it_in_the_timeline(
    inner: pytest.Pytester, outside_relay: str, tmp_path: Path, outside: bool
) -> None:
    inner.makepyfile(PRESENCE)
    timelines = tmp_path / "timelines"
    options = [outside_relay] if outside else []

    result = inner.runpytest(
        "--modem=sim:ec20", f"--timeline-dir={timelines}", *options
    )

    result.assert_outcomes(passed=1)
    (path,) = timelines.iterdir()
    text = path.read_text()
    observer = r"observer\[hil-\w+-observer-\d+-\d+\]"
    assert re.search(rf"{observer}: card hil-\w+-tcp online at the relay after", text)
    assert re.search(rf"{observer}: card hil-\w+-tcp offline at the relay after", text)


@pytest.fixture
def old_relay(request: pytest.FixtureRequest) -> Iterator[str]:
    """``--relay`` for a relay from before presence, of protocol ``request.param``."""
    loop = BenchLoop()
    loop.start()
    answer = _answer_as_version_1 if request.param == 1 else _answer_as_version_2
    server = loop.run(asyncio.start_server(answer, "127.0.0.1", 0))
    try:
        yield f"--relay=127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:

        async def close() -> None:
            server.close()
            await server.wait_closed()

        loop.run(close())
        loop.stop()


async def _answer_as_version_2(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Connect in version 2, and wrong format to requests unknown before presence."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            request = json.loads(await reader.readuntil(b"}"))
            if request["action"] == "connect":
                reply = {"ok": "connect", "card": request["from"], "proto": 2}
            else:
                reply = {"error": "wrong format", "detail": "unknown action"}
            writer.write(json.dumps(reply).encode() + b"\n")
    writer.close()


async def _answer_as_version_1(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A relay that ignores ``proto`` and knows nothing but version 1."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        await reader.readuntil(b"}")
        writer.write(b"connect_success")
        await reader.read()
    writer.close()


@pytest.mark.parametrize(
    ("old_relay", "reason"),
    [
        (2, "does not support presence: it answered wrong format to who"),
        (1, "does not support presence: it speaks protocol version 1 only"),
    ],
    indirect=["old_relay"],
    ids=["version-2", "version-1"],
)
def test_relay_presence_skips_on_a_relay_without_presence(
    inner: pytest.Pytester, old_relay: str, reason: str
) -> None:
    inner.makepyfile("async def test_waits(relay_presence): pass")

    result = inner.runpytest("-rs", "--modem=sim:ec20", old_relay)

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [f"*{reason}*give --relay HOST:PORT of a relay that answers them*"]
    )
