"""The benchmark suite in its smoke form: every workload runs and its figures add up.

Benchmarks are not tests: nothing here asserts a timing. What is checked is what a
user of ``python -m bench`` relies on: the commands run against a real relay and a
real Mosquitto, every message is delivered, the figures are present and sane, and the
MQTT codec the load generator speaks is right.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    at_path,
    compare,
    connections,
    heartbeat,
    latency,
    mqtt,
    servers,
    throughput,
)
from bench.result import Result  # noqa: E402

REQUIRED = os.environ.get("MODEMBRIDGE_REQUIRE_SERVICES") == "1"


def needs_mosquitto() -> None:
    """Skip without Mosquitto, unless services are required (then fail)."""
    if servers.mosquitto_available():
        return
    reason = "mosquitto is not installed (apt-get install mosquitto)"
    if REQUIRED:
        pytest.fail(f"MODEMBRIDGE_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(params=["relay", "relay-v2", "mosquitto"])
def kind(request: pytest.FixtureRequest) -> str:
    """Each server kind (the relay in both protocol versions); Mosquitto only where
    it is installed."""
    if request.param == "mosquitto":
        needs_mosquitto()
    chosen: str = request.param
    return chosen


def test_missing_mosquitto_skips_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(servers, "mosquitto_available", lambda: False)
    monkeypatch.setattr(sys.modules[__name__], "REQUIRED", False)

    with pytest.raises(pytest.skip.Exception, match="mosquitto is not installed"):
        needs_mosquitto()


def test_missing_mosquitto_fails_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(servers, "mosquitto_available", lambda: False)
    monkeypatch.setattr(sys.modules[__name__], "REQUIRED", True)

    with pytest.raises(pytest.fail.Exception, match="MODEMBRIDGE_REQUIRE_SERVICES"):
        needs_mosquitto()


def test_throughput_delivers_every_message(kind: str) -> None:
    result = throughput.measure(kind, throughput.SMOKE)

    total = throughput.SMOKE.pairs * throughput.SMOKE.messages
    assert result.figures["delivered"] == total
    assert result.figures["loss"] == 0
    assert result.figures["msgs_per_s"] > 0


def test_latency_reports_ordered_percentiles(kind: str) -> None:
    result = latency.measure(kind, latency.SMOKE)

    figures = result.figures
    assert 0 < figures["p50_us"] <= figures["p99_us"] <= figures["max_us"]


def test_connections_registers_and_routes_to_the_last_card(kind: str) -> None:
    result = connections.measure(kind, connections.SMOKE)

    assert result.figures["cards"] == connections.SMOKE.cards
    assert result.figures["register_s"] > 0
    assert result.figures["route_ms"] > 0
    assert result.figures["server_rss_mib"] > 0


def test_heartbeat_reaches_every_card_in_whole_rounds() -> None:
    result = heartbeat.measure(heartbeat.SMOKE)

    assert result.figures["whole_rounds"] >= 1
    assert result.figures["round_ms_max"] >= 0
    assert result.figures["rtt_p50_us_outside"] > 0
    assert not [note for note in result.notes if "no heartbeat" in note]


def test_at_path_carries_every_byte_both_ways() -> None:
    end_to_end, reader = at_path.measure(at_path.SMOKE)

    assert end_to_end.figures["up_bytes_per_s"] > 0
    assert end_to_end.figures["down_bytes_per_s"] > 0
    assert end_to_end.figures["both_bytes_per_s"] > 0
    assert end_to_end.figures["up_agent_cpu_ms_per_kib"] >= 0
    assert reader.figures["push_mb_per_s"] > 0
    assert reader.figures["buffered_mb_per_s"] > 0


def test_compare_alternates_servers_and_reports_ratios() -> None:
    needs_mosquitto()
    order: list[str] = []

    def fake_measure(kind: str) -> Result:
        order.append(kind)
        return Result("w", kind, {"rate": 2.0 if kind == "relay" else 4.0})

    results = compare.alternate(fake_measure, 2, lambda _line: None)
    lines = compare.table(results)

    assert order == ["relay", "mosquitto", "relay", "mosquitto"]
    assert any(line.startswith("rate") and line.endswith("0.50") for line in lines)


def test_compare_command_runs_in_smoke_form() -> None:
    needs_mosquitto()
    command = [sys.executable, "-m", "bench", "compare", "--smoke", "--rounds", "1"]
    command += ["--workload", "throughput"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert "msgs_per_s" in done.stdout
    assert "ratio" in done.stdout


@pytest.mark.parametrize(
    "workload", ["throughput", "latency", "connections", "decoder"]
)
def test_workload_command_runs_in_smoke_form(workload: str) -> None:
    command = [sys.executable, "-m", "bench", workload, "--smoke"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert f"{workload}" in done.stdout


@given(
    topic=st.text(min_size=1, max_size=40).filter(lambda text: "\x00" not in text),
    payload=st.binary(max_size=300),
    cut=st.integers(min_value=0, max_value=400),
)
def test_mqtt_publish_survives_any_split(topic: str, payload: bytes, cut: int) -> None:
    wire = mqtt.publish(topic, payload) + mqtt.PINGRESP_PACKET
    reader = mqtt.MqttReader()
    cut = min(cut, len(wire))

    reader.feed(wire[:cut])
    found = []
    while (packet := reader.maybe_packet()) is not None:
        found.append(packet)
    reader.feed(wire[cut:])
    while (packet := reader.maybe_packet()) is not None:
        found.append(packet)

    assert [packet.kind for packet in found] == [mqtt.PUBLISH, mqtt.PINGRESP]
    assert mqtt.publish_parts(found[0]) == (topic, payload)


@given(length=st.integers(min_value=0, max_value=mqtt.MAX_REMAINING))
def test_mqtt_remaining_length_uses_the_fewest_bytes(length: int) -> None:
    encoded = mqtt.encode_remaining_length(length)

    # MQTT 3.1.1, table 2.4: one more byte at each power of 128.
    assert len(encoded) == 1 + (length >= 128) + (length >= 16_384) + (
        length >= 2_097_152
    )


@given(length=st.integers(min_value=0, max_value=20_000))
def test_mqtt_reader_waits_for_the_whole_body(length: int) -> None:
    wire = mqtt.packet(mqtt.PUBLISH, 0, b"x" * length)
    reader = mqtt.MqttReader()

    reader.feed(wire[:-1])
    early = reader.maybe_packet()
    reader.feed(wire[-1:])
    found = reader.maybe_packet()

    assert early is None
    assert found is not None
    assert len(found.body) == length


@given(garbage=st.binary(max_size=64))
def test_mqtt_reader_yields_packets_or_its_own_error(garbage: bytes) -> None:
    reader = mqtt.MqttReader(max_body=1024)
    reader.feed(garbage)

    try:
        while reader.maybe_packet() is not None:
            pass
    except mqtt.MqttError:
        pass


def test_mqtt_connect_matches_the_specification_bytes() -> None:
    # MQTT 3.1.1, section 3.1: protocol name, level 4, clean session, keepalive 0.
    expected = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x00\x00\x01A"
    assert mqtt.connect("A") == expected
    assert mqtt.subscribe(1, "cards/B") == b"\x82\x0c\x00\x01\x00\x07cards/B\x00"
    assert mqtt.connack() == b"\x20\x02\x00\x00"
    assert mqtt.suback(1) == b"\x90\x03\x00\x01\x00"
