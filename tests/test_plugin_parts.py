"""The plugin's parts on their own: option parsing, masking, numbers, timelines."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import pytest

from modembridge.agent import AgentConfig
from modembridge.benchcard import AgentCard
from modembridge.cli.options import parse_host_port
from modembridge.errors import PortVanished
from modembridge.measurement import Measurements, latency_summary, percentile
from modembridge.modem import Modem
from modembridge.pytest_plugin import mask
from modembridge.testbench import ModemSpec, parse_duration
from modembridge.timeline import Timeline
from modembridge.wirelog import WIRE


@pytest.mark.parametrize(
    ("text", "model", "hint"),
    [
        ("sim:sim7600", "sim7600", "sim7600"),
        ("sim:EC20", "ec20", "ec20"),
        ("/dev/ttyUSB2", None, None),
        ("/dev/modembridge/ec20-1-1.2/at", None, "ec20"),
        ("/dev/modembridge/bg96-1-1.2/at", None, None),
    ],
)
def test_modem_spec(text: str, model: str | None, hint: str | None) -> None:
    spec = ModemSpec.parse(text)

    assert spec.simulated_model == model
    assert spec.simulated == (model is not None)
    assert spec.model_hint == hint


@pytest.mark.parametrize("text", ["sim:", "sim:bg96", ""])
def test_modem_spec_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"sim|empty"):
        ModemSpec.parse(text)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("relay.example.com:8888", ("relay.example.com", 8888)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[::1]:8888", ("::1", 8888)),
    ],
)
def test_relay_address(text: str, address: tuple[str, int]) -> None:
    assert parse_host_port(text, None) == address


@pytest.mark.parametrize("text", ["relay", ":8888", "relay:0", "relay:65536", "a:b"])
def test_relay_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|out of range"):
        parse_host_port(text, None)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400),
     ("1.5m", 90), ("500ms", 0.5)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "forever", "10x", "0s", "-5m", "m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("868822040061788", "***********1788"),
        ("89860012345678901234", "****************1234"),
        ("123", "123"),
        (None, ""),
    ],
)
def test_mask_keeps_the_last_four(value: str | None, masked: str) -> None:
    assert mask(value) == masked


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]

    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.9) == 90
    assert percentile(values, 0.99) == 99
    assert percentile([7.0], 0.99) == 7
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_latency_summary_in_milliseconds() -> None:
    summary = latency_summary("rtt", [0.010, 0.020, 0.030, 0.040])

    assert summary == {
        "rtt_p50_ms": 20.0,
        "rtt_p90_ms": 40.0,
        "rtt_p99_ms": 40.0,
        "rtt_max_ms": 40.0,
    }


def test_measurements_refuse_what_is_not_a_number() -> None:
    measurements = Measurements()

    with pytest.raises(ValueError, match="finite"):
        measurements.record("t", "x", math.nan)
    measurements.record("t", "x", 3)
    measurements.record("u", "x", 1)

    assert measurements.values("x") == [3.0, 1.0]
    assert list(measurements.summary_lines()) == ["x  n=2   min=1 median=2 max=3"]


def test_timeline_orders_dialogue_and_relay_events(tmp_path: Path) -> None:
    logger = logging.getLogger("modembridge.channel")
    watched = logging.getLogger("modembridge")
    level_before = watched.level

    with Timeline("test_x") as story:
        logger.log(WIRE, "modem[ttyUSB2]: > AT+CSQ\\r")
        relay_thread = threading.Thread(
            target=story.relay_event, args=("card A: connect",)
        )
        relay_thread.start()
        relay_thread.join()
        logger.info("modem[ttyUSB2]: registered in 0.1 s")
        logging.getLogger("modembridge.simulator.engine").debug("simulator chatter")
        story.note("fault: bearer dropped")
    logger.log(WIRE, "after the test")
    path = story.write(tmp_path / "t.log")

    lines = path.read_text().splitlines()
    assert lines[0] == "# test_x"
    assert [line.split(" ", 2)[1:] for line in lines[1:]] == [
        ["modem", " modem[ttyUSB2]: > AT+CSQ\\r"],
        ["relay", " card A: connect"],
        ["info", "  modem[ttyUSB2]: registered in 0.1 s"],
        ["test", "  fault: bearer dropped"],
    ]
    assert watched.level == level_before


async def test_agent_card_stops_waiting_when_the_agent_fails() -> None:
    async def no_module(port: str) -> Modem:
        raise PortVanished(port)

    async def never_called(modem: Modem) -> object:
        raise AssertionError("no module to bring up")

    config = AgentConfig(port="/dev/absent", card="A", server=("127.0.0.1", 1))
    card = AgentCard(config, open_modem=no_module, bring_up=never_called)

    with pytest.raises(PortVanished, match="/dev/absent"):
        await card.start(within=30)
    await card.stop()
