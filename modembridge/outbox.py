"""Messages handed to the agent, kept until the relay acknowledged them.

A message leaves the outbox only three ways: the relay acknowledged it; the relay
refused it for good (bad format, too large); or it could not be sent within the
outbox's patience (the target stayed absent, the link stayed down). The last two are
reported through ``on_undeliverable``; nothing is dropped silently.

Messages go out in the order they were handed over. A message in flight when the
connection dies goes back to waiting and is sent again on the next connection, so a
message whose acknowledgement was lost with the connection can arrive twice (at least
once delivery). When the relay says the target is not connected, the message and the
later ones to the same target wait and are retried; messages to other targets go on.

``window`` bounds the messages in flight to one target. With the default of one, each
target receives its messages in order even when it goes away and comes back: a later
message cannot overtake an earlier one that the relay refused. A larger window sends
faster over a slow link, at the price of that guarantee while a target is away.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from modembridge.errors import ModemError

_LOGGER = logging.getLogger(__name__)

TRANSIENT_REFUSALS = ("not connected", "not connect")
"""Refusals that may go away by themselves: the target card is offline for now."""


class OutboxFull(ModemError):
    """The outbox holds as many messages as its bound allows."""


@dataclass
class Outgoing:
    """One message handed over: where it goes, what it holds, who handed it."""

    seq: int
    to: str
    data: bytes
    handed_at: float
    origin: object = None
    retry_at: float = 0.0
    sent_at: float = 0.0


Undeliverable = Callable[[Outgoing, str], None]


class Outbox:
    """An ordered, bounded store of messages waiting for the relay's acknowledgement."""

    def __init__(
        self,
        on_undeliverable: Undeliverable,
        *,
        card: str = "?",
        limit: int = 1000,
        patience: float = 120.0,
        retry_delay: float = 1.0,
        window: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.card = card
        self.limit = limit
        self.patience = patience
        self.retry_delay = retry_delay
        self.window = window
        self._on_undeliverable = on_undeliverable
        self._clock = clock
        self._seq = itertools.count(1)
        self._waiting: dict[int, Outgoing] = {}
        self._in_flight: dict[int, Outgoing] = {}
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._in_flight)

    def put(self, to: str, data: bytes, origin: object = None) -> Outgoing:
        """Take a message; raises OutboxFull when the bound is reached."""
        if len(self) >= self.limit:
            raise OutboxFull(f"outbox full ({self.limit} messages wait for the relay)")
        message = Outgoing(next(self._seq), to, data, self._clock(), origin)
        self._waiting[message.seq] = message
        self._changed.set()
        return message

    def next_ready(self) -> Outgoing | None:
        """The oldest message that may go out now, or None."""
        now = self._clock()
        in_flight = collections.Counter(m.to for m in self._in_flight.values())
        held: set[str] = set()
        for seq in sorted(self._waiting):
            message = self._waiting[seq]
            if message.to in held:
                continue
            if message.retry_at > now or in_flight[message.to] >= self.window:
                held.add(message.to)
                continue
            return message
        return None

    async def wait_ready(self) -> Outgoing:
        """Wait for a message that may go out now."""
        while (message := self.next_ready()) is None:
            self._changed.clear()
            now = self._clock()
            retries = [m.retry_at for m in self._waiting.values() if m.retry_at > now]
            delay = min(retries) - now if retries else None
            try:
                async with asyncio.timeout(delay):
                    await self._changed.wait()
            except TimeoutError:
                pass
        return message

    def sent(self, message: Outgoing, request_id: int) -> None:
        """The message was written with this request id; it waits for its ack."""
        del self._waiting[message.seq]
        message.sent_at = self._clock()
        self._in_flight[request_id] = message

    def oldest_in_flight(self) -> float | None:
        """When the longest-waiting unacknowledged message was written; None: none."""
        return min((m.sent_at for m in self._in_flight.values()), default=None)

    def acked(self, request_id: int) -> Outgoing | None:
        """The relay accepted the request: its message leaves the outbox."""
        message = self._in_flight.pop(request_id, None)
        self._changed.set()
        return message

    def refused(self, request_id: int, reason: str) -> Outgoing | None:
        """The relay refused the request: retry later, or report it for good."""
        message = self._in_flight.pop(request_id, None)
        if message is None:
            return None

        expired = self._clock() - message.handed_at >= self.patience
        if reason in TRANSIENT_REFUSALS and not expired:
            message.retry_at = self._clock() + self.retry_delay
            self._waiting[message.seq] = message
        else:
            self._report(message, f"relay refused it: {reason}")
        self._changed.set()
        return message

    def connection_lost(self) -> int:
        """Everything in flight waits for the next connection; returns how many."""
        count = len(self._in_flight)
        for message in self._in_flight.values():
            self._waiting[message.seq] = message
        self._in_flight.clear()
        self._changed.set()
        return count

    def expire(self) -> list[Outgoing]:
        """Report and drop the waiting messages older than the outbox's patience."""
        now = self._clock()
        old = [m for m in self._waiting.values() if now - m.handed_at >= self.patience]
        for message in old:
            del self._waiting[message.seq]
            self._report(message, f"not sent within {self.patience:g} s")
        if old:
            self._changed.set()
        return old

    async def expire_forever(self) -> None:
        """Expire waiting messages as their patience runs out, until cancelled."""
        while True:
            ages = [m.handed_at for m in self._waiting.values()]
            delay = min(ages) + self.patience - self._clock() if ages else None
            self._changed.clear()
            try:
                async with asyncio.timeout(None if delay is None else max(delay, 0)):
                    await self._changed.wait()
            except TimeoutError:
                self.expire()

    async def drained(self) -> None:
        """Wait until no message is left."""
        while len(self):
            self._changed.clear()
            await self._changed.wait()

    def abandon(self, reason: str) -> list[Outgoing]:
        """Report and drop everything left, oldest first (on shutdown)."""
        left = sorted([*self._waiting.values(), *self._in_flight.values()], key=_seq)
        self._waiting.clear()
        self._in_flight.clear()
        for message in left:
            self._report(message, reason)
        self._changed.set()
        return left

    def _report(self, message: Outgoing, reason: str) -> None:
        _LOGGER.warning(
            "card[%s]: message %d to %s undeliverable: %s",
            self.card,
            message.seq,
            message.to,
            reason,
        )
        self._on_undeliverable(message, reason)


def _seq(message: Outgoing) -> int:
    return message.seq
