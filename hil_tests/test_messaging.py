"""Messages through a module and the relay: both ways, large, binary, timed."""

import asyncio
import math
import time

import pytest

from modembridge.benchcard import AgentCard, BenchCard
from modembridge.dialect import ATDialect
from modembridge.measurement import latency_summary
from modembridge.modem import Modem
from modembridge.presence import PresenceWatcher
from modembridge.pytest_plugin import Measure, RelayInfo
from modembridge.testbench import Bench
from modembridge.timeline import Timeline

LARGE = 5000
"""Over three send commands on either module (1460 and 1500 bytes a send)."""


async def test_message_both_ways(modem_card: AgentCard, tcp_card: BenchCard) -> None:
    modem_card.send(tcp_card.name, b"hello from the module")
    arrived = await tcp_card.receive()

    await tcp_card.send(modem_card.name, b"hello from the host")
    answer = await modem_card.receive()

    assert arrived.data == b"hello from the module"
    assert answer.data == b"hello from the host"
    if tcp_card.version == 2:
        assert (arrived.sender, answer.sender) == (modem_card.name, tcp_card.name)


async def test_large_message_is_split_across_sends(
    modem: Modem, modem_card: AgentCard, tcp_card: BenchCard, timeline: Timeline
) -> None:
    up = bytes(ord("a") + i % 26 for i in range(LARGE))
    down = bytes(ord("A") + i % 26 for i in range(LARGE))

    modem_card.send(tcp_card.name, up)
    arrived = await tcp_card.receive_bytes(LARGE)
    await tcp_card.send(modem_card.name, down)
    answer = await modem_card.receive_bytes(LARGE)

    assert arrived == up
    assert answer == down
    assert isinstance(modem, ATDialect), "the send command comes from an AT table"
    send = modem.command_text("send", link=0, length=0).split("=")[0]
    sends = [entry for entry in timeline.entries if f"> {send}=" in entry.text]
    assert len(sends) >= math.ceil(LARGE / modem.facts.max_send), sends


async def test_binary_payload_both_ways(
    modem_card: AgentCard, tcp_card: BenchCard
) -> None:
    if tcp_card.version < 2:
        pytest.skip("protocol version 1 carries text only")
    payload = bytes(range(256)) + b"\r\nOK\r\n>\x1a\x1b\x00"

    modem_card.send(tcp_card.name, payload)
    arrived = await tcp_card.receive_bytes(len(payload))
    await tcp_card.send(modem_card.name, payload)
    answer = await modem_card.receive_bytes(len(payload))

    assert arrived == payload
    assert answer == payload


async def test_round_trip_latency_through_the_relay(
    modem_card: AgentCard, tcp_card: BenchCard, measure: Measure
) -> None:
    rounds = []
    for number in range(20):
        began = time.monotonic()
        await tcp_card.send(modem_card.name, f"ping {number}".encode())
        assert (await modem_card.receive()).data == f"ping {number}".encode()
        modem_card.send(tcp_card.name, f"pong {number}".encode())
        assert (await tcp_card.receive()).data == f"pong {number}".encode()
        rounds.append(time.monotonic() - began)

    for name, value in latency_summary("rtt", rounds).items():
        measure(name, value)


@pytest.mark.timeout(150)  # an outside relay beats every 30 s
async def test_heartbeats_reach_a_module_socket(
    modem: Modem, relay: RelayInfo, hil_bench: Bench, measure: Measure
) -> None:
    began = time.monotonic()
    socket = await modem.open_socket(relay.host, relay.port)
    measure("socket_open_s", round(time.monotonic() - began, 3))
    card = await BenchCard.over(socket, hil_bench.card_name("beat"))
    try:
        beats = await card.wait_heartbeats(2, within=3 * relay.heartbeat + 10)
    finally:
        await card.close()

    assert len(beats) == 2
    measure("heartbeat_interval_s", round(beats[1] - beats[0], 3))


async def test_relay_sees_the_cards(
    modem_card: AgentCard,
    tcp_card: BenchCard,
    relay: RelayInfo,
    relay_presence: PresenceWatcher,
) -> None:
    names = [modem_card.name, tcp_card.name]

    assert await relay_presence.online(names) == names
    cards = relay.cards()
    if cards is not None:
        assert set(names) <= set(cards)


@pytest.mark.modems(2)
async def test_two_modules_talk_to_each_other(modem_cards: list[AgentCard]) -> None:
    first, second = modem_cards[:2]

    first.send(second.name, b"from the first module")
    second.send(first.name, b"from the second module")
    to_second, to_first = await asyncio.gather(second.receive(), first.receive())

    assert to_second.data == b"from the first module"
    assert to_first.data == b"from the second module"
