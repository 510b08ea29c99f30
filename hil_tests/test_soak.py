"""Soak: every module at once, messages both ways for ``--soak DURATION``.

Skipped unless ``--soak`` is given. Each module is attached as a card, and one plain
TCP card talks to all of them at the same time: each direction of each module sends a
numbered message every ``INTERVAL`` seconds. What an agent was handed must all arrive
(it keeps messages until the relay acknowledged them); the host-to-module direction
has no such promise in the protocol, so its losses are reported as numbers, not failed
on.
"""

import asyncio
import contextlib
import time

import pytest

from modembridge.benchcard import AgentCard, BenchCard, CardError
from modembridge.measurement import latency_summary
from modembridge.pytest_plugin import Measure
from modembridge.testbench import BenchConfig

pytestmark = pytest.mark.soak

INTERVAL = 0.25
DRAIN_SECONDS = 30.0


class Direction:
    """One direction of one module: what was sent when, and what arrived."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.received: set[int] = set()
        self.duplicates = 0
        self.refused = 0
        self._progress = asyncio.Event()

    def message(self, number: int) -> bytes:
        self.sent[number] = time.monotonic()
        return f"soak {self.name} {number}".encode()

    def arrived(self, number: int) -> None:
        if number in self.received:
            self.duplicates += 1
            return
        self.received.add(number)
        self.latencies.append(time.monotonic() - self.sent[number])
        self._progress.set()

    async def all_arrived(self) -> None:
        """Return once every message sent so far arrived."""
        while self.lost:
            self._progress.clear()
            await self._progress.wait()

    @property
    def lost(self) -> int:
        return len(self.sent) - len(self.received)

    def record(self, measure: Measure) -> None:
        measure(f"soak_{self.name}_sent", len(self.sent))
        measure(f"soak_{self.name}_lost", self.lost)
        measure(f"soak_{self.name}_duplicates", self.duplicates)
        if self.latencies:
            summary = latency_summary(f"soak_{self.name}", self.latencies)
            for name, value in summary.items():
                measure(name, value)


class Soak:
    """Both directions of every module, and the clock they all stop on."""

    def __init__(self, cards: list[AgentCard], seconds: float) -> None:
        self.cards = cards
        self.up = {card.name: Direction(f"m{i}_up") for i, card in enumerate(cards)}
        self.down = {card.name: Direction(f"m{i}_down") for i, card in enumerate(cards)}
        self.deadline = time.monotonic() + seconds
        self._by_name = {d.name: d for d in [*self.up.values(), *self.down.values()]}

    @property
    def directions(self) -> list[Direction]:
        return list(self._by_name.values())

    def arrived(self, data: bytes) -> None:
        """File one arrival under the direction its text names."""
        _, name, number = data.decode().split(" ")
        self._by_name[name].arrived(int(number))

    async def send_up(self, card: AgentCard, to: str) -> None:
        direction = self.up[card.name]
        number = 0
        while time.monotonic() < self.deadline:
            card.send(to, direction.message(number))
            number += 1
            await asyncio.sleep(INTERVAL)

    async def send_down(self, tcp_card: BenchCard, card: AgentCard) -> None:
        direction = self.down[card.name]
        number = 0
        while time.monotonic() < self.deadline:
            try:
                await tcp_card.send(card.name, direction.message(number))
            except (CardError, TimeoutError):
                direction.refused += 1
            number += 1
            await asyncio.sleep(INTERVAL)

    async def receive(self, card: AgentCard | BenchCard) -> None:
        while True:
            self.arrived((await card.receive(within=None)).data)


@pytest.mark.timeout(0)
async def test_soak_every_module_at_once(
    modem_cards: list[AgentCard],
    tcp_card: BenchCard,
    hil_config: BenchConfig,
    measure: Measure,
) -> None:
    assert hil_config.soak_seconds is not None
    soak = Soak(modem_cards, hil_config.soak_seconds)
    senders = [soak.send_up(card, tcp_card.name) for card in modem_cards]
    senders += [soak.send_down(tcp_card, card) for card in modem_cards]
    listeners: list[AgentCard | BenchCard] = [tcp_card, *modem_cards]
    receivers = [asyncio.create_task(soak.receive(card)) for card in listeners]

    try:
        await asyncio.gather(*senders)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                await asyncio.gather(*(d.all_arrived() for d in soak.directions))
    finally:
        for task in receivers:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)

    for direction in soak.directions:
        direction.record(measure)
    for direction in soak.down.values():
        measure(f"soak_{direction.name}_refused", direction.refused)
    for direction in soak.up.values():
        assert direction.lost == 0, (
            f"{direction.name}: {direction.lost} of {len(direction.sent)} "
            "messages handed to the agent lost"
        )
        assert direction.duplicates == 0, direction.name
