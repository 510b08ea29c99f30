"""Soak: messages both ways for ``--soak DURATION``; reports loss and latency.

Skipped unless ``--soak`` is given. Each direction sends a numbered message every
``INTERVAL`` seconds. What the agent was handed must all arrive (it keeps messages
until the relay acknowledged them); the host-to-module direction has no such promise
in the protocol, so its losses are reported as numbers, not failed on.
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
    """One direction of the soak: what was sent when, and what arrived."""

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

    def arrived(self, data: bytes) -> None:
        number = int(data.decode().rsplit(" ", 1)[1])
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
            for name, value in latency_summary(
                f"soak_{self.name}", self.latencies
            ).items():
                measure(name, value)


@pytest.mark.timeout(0)
async def test_soak_messages_both_ways(
    modem_card: AgentCard,
    tcp_card: BenchCard,
    hil_config: BenchConfig,
    measure: Measure,
) -> None:
    assert hil_config.soak_seconds is not None
    up, down = Direction("up"), Direction("down")
    deadline = time.monotonic() + hil_config.soak_seconds

    async def send_up() -> None:
        number = 0
        while time.monotonic() < deadline:
            modem_card.send(tcp_card.name, up.message(number))
            number += 1
            await asyncio.sleep(INTERVAL)

    async def send_down() -> None:
        number = 0
        while time.monotonic() < deadline:
            try:
                await tcp_card.send(modem_card.name, down.message(number))
            except (CardError, TimeoutError):
                down.refused += 1
            number += 1
            await asyncio.sleep(INTERVAL)

    async def receive(card: AgentCard | BenchCard, direction: Direction) -> None:
        while True:
            direction.arrived((await card.receive(within=None)).data)

    receivers = [
        asyncio.create_task(receive(tcp_card, up)),
        asyncio.create_task(receive(modem_card, down)),
    ]
    try:
        await asyncio.gather(send_up(), send_down())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                await asyncio.gather(up.all_arrived(), down.all_arrived())
    finally:
        for task in receivers:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)

    up.record(measure)
    down.record(measure)
    measure("soak_down_refused", down.refused)
    assert up.lost == 0, (
        f"{up.lost} of {len(up.sent)} messages handed to the agent lost"
    )
    assert up.duplicates == 0
