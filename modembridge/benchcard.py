"""Cards a hardware-in-the-loop test drives: plain TCP ones and ones behind a module.

``BenchCard`` is one relay session over any byte pipe (a TCP connection from this
host, or a socket a module opened): a reader task files what the relay says into
deliveries, acknowledgements and heartbeats, which the test awaits with a timeout.

``AgentCard`` is a module attached as a card by the attach agent, the whole stack a
lab user runs, with its recovery. The test hands it messages and awaits what the
agent would have printed.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from modembridge.agent import Agent, AgentConfig
from modembridge.errors import ModemError
from modembridge.pipe import BytePipe, TcpPipe
from modembridge.relayclient import (
    Ack,
    Delivery,
    Heartbeat,
    Refusal,
    RelayClient,
    RelayEvent,
)
from modembridge.supervisor import BringUp, LinkState, OpenModem

logger = logging.getLogger(__name__)


class CardError(ModemError):
    """A test card's send was refused, or its session ended."""


async def joined(
    next_delivery: Callable[[], Awaitable[Delivery]], size: int, within: float
) -> bytes:
    """Deliveries from ``next_delivery`` joined until ``size`` bytes came."""
    data = b""
    async with asyncio.timeout(within):
        while len(data) < size:
            data += (await next_delivery()).data
    return data


class BenchCard:
    """One relay session a test drives directly."""

    def __init__(self, client: RelayClient) -> None:
        self.client = client
        self.name = client.card
        self.heartbeats: list[float] = []
        self._deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[RelayEvent]] = {}
        self._heartbeat = asyncio.Event()
        self._ended: BaseException | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def over(cls, pipe: BytePipe, name: str, within: float = 30.0) -> BenchCard:
        """Register card ``name`` over ``pipe`` and start reading."""
        card = cls(RelayClient(pipe, name))
        await card.client.connect(within)
        card._reader = asyncio.create_task(card._read_forever())
        logger.info("card[%s]: online (protocol %d)", name, card.client.version)
        return card

    @classmethod
    async def tcp(cls, relay: tuple[str, int], name: str) -> BenchCard:
        """A card on a plain TCP connection from this host."""
        return await cls.over(await TcpPipe.connect(*relay), name)

    @property
    def version(self) -> int:
        """The protocol version the relay speaks with this card."""
        return self.client.version

    async def send(self, to: str, data: bytes, within: float = 30.0) -> None:
        """Send ``data`` to card ``to`` and wait until the relay acknowledges it."""
        request_id = await self.client.send(to, data)
        reply = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        try:
            async with asyncio.timeout(within):
                event = await reply
        finally:
            self._replies.pop(request_id, None)
        if isinstance(event, Refusal):
            raise CardError(f"card[{self.name}]: send to {to} refused: {event.reason}")

    async def receive(self, within: float | None = 30.0) -> Delivery:
        """The next delivery to this card."""
        async with asyncio.timeout(within):
            return await self._next_delivery()

    async def receive_bytes(self, size: int, within: float = 30.0) -> bytes:
        """Deliveries joined until ``size`` bytes came (a relay may split or join)."""
        return await joined(self._next_delivery, size, within)

    async def wait_heartbeats(self, count: int, within: float = 60.0) -> list[float]:
        """Wait until ``count`` heartbeats arrived; returns their arrival times."""
        async with asyncio.timeout(within):
            while len(self.heartbeats) < count:
                self._heartbeat.clear()
                await self._heartbeat.wait()
        return self.heartbeats[:count]

    async def close(self) -> None:
        """End the session."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.client.close()

    async def _next_delivery(self) -> Delivery:
        if self._deliveries.empty() and self._ended is not None:
            raise CardError(f"card[{self.name}]: session ended: {self._ended}")
        return await self._deliveries.get()

    async def _read_forever(self) -> None:
        try:
            while True:
                self._event_received(await self.client.next_event())
        except ModemError as exc:
            self._ended = exc
            logger.info("card[%s]: session ended: %s", self.name, exc)
            for reply in self._replies.values():
                if not reply.done():
                    reply.set_exception(CardError(str(exc)))

    def _event_received(self, event: RelayEvent) -> None:
        if isinstance(event, Delivery):
            self._deliveries.put_nowait(event)
        elif isinstance(event, Heartbeat):
            self.heartbeats.append(time.monotonic())
            self._heartbeat.set()
        elif isinstance(event, Ack | Refusal):
            reply = self._replies.get(event.request_id)
            if reply is not None and not reply.done():
                reply.set_result(event)


class _LineSink(io.StringIO):
    """Where the agent prints: each whole line goes into a queue."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *whole, self._partial = self._partial.split("\n")
        for line in whole:
            self.lines.put_nowait(line)
        return len(text)


class AgentCard:
    """A module attached as a card by the attach agent, driven by a test."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        open_modem: OpenModem,
        bring_up: BringUp,
    ) -> None:
        self.name = config.card
        self.status: list[str] = []
        self._sink = _LineSink()
        self.agent = Agent(
            config,
            open_modem=open_modem,
            bring_up=bring_up,
            stdout=self._sink,
            status=self._status_received,
        )
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._failure_raised = False

    @property
    def state(self) -> LinkState:
        """Where the agent's link supervisor is."""
        return self.agent.supervisor.state

    async def start(self, within: float = 120.0) -> None:
        """Run the agent and wait until the card is online."""
        self._task = asyncio.create_task(self.agent.run())
        await self.wait_online(within)

    async def wait_online(self, within: float = 120.0) -> float:
        """Wait until the card is online; returns how long that took."""
        started = time.monotonic()
        async with asyncio.timeout(within):
            await self._until(self.agent.online.is_set)
        return time.monotonic() - started

    async def wait_offline(self, within: float = 60.0) -> None:
        """Wait until the agent noticed its link is down."""
        async with asyncio.timeout(within):
            await self._until(lambda: not self.agent.online.is_set())

    async def _until(self, condition: Callable[[], bool]) -> None:
        """Wait for ``condition`` on the agent's link; raise if the agent stops.

        The agent reports every change of its link to the status callback (leaving
        ONLINE is always a cycle's first failure), so each status line is a wake-up.
        """
        while not condition():
            if self._task is not None and self._task.done():
                self._failure_raised = True
                self._task.result()
                raise CardError(f"card[{self.name}]: the agent stopped")
            self._changed.clear()
            changed = asyncio.ensure_future(self._changed.wait())
            waits: set[asyncio.Future[Any]] = {changed}
            if self._task is not None:
                waits.add(self._task)
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()

    def send(self, to: str, data: bytes) -> None:
        """Hand ``data`` to the agent for card ``to``; it holds it until acked."""
        self.agent.outbox.put(to, data)

    async def sent(self, within: float = 60.0) -> None:
        """Wait until the relay acknowledged everything handed over."""
        async with asyncio.timeout(within):
            await self.agent.outbox.drained()

    async def receive(self, within: float | None = 30.0) -> Delivery:
        """The next delivery the agent printed."""
        async with asyncio.timeout(within):
            line = await self._sink.lines.get()
        record = json.loads(line)
        if "message" in record:
            data = str(record["message"]).encode()
        else:
            # Bytes that are not UTF-8 come base64-encoded, as in protocol version 2.
            encoded = record.get("message_b64", record.get("data", ""))
            data = base64.b64decode(str(encoded))
        return Delivery(record.get("from"), data)

    async def receive_bytes(self, size: int, within: float = 30.0) -> bytes:
        """Deliveries joined until ``size`` bytes came."""
        return await joined(lambda: self.receive(None), size, within)

    async def stop(self, within: float = 30.0) -> None:
        """Stop the agent, cancelled after ``within``; raise an unraised failure."""
        if self._task is None:
            return
        self.agent.stop()
        await asyncio.wait({self._task}, timeout=within)
        self._task.cancel()
        (outcome,) = await asyncio.gather(self._task, return_exceptions=True)
        if isinstance(outcome, Exception) and not self._failure_raised:
            raise outcome

    def _status_received(self, text: str) -> None:
        self.status.append(text)
        self._changed.set()
        logger.info("card[%s]: agent says %s", self.name, text)
