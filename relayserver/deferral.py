"""Answers that come later, without reordering a connection's replies.

Most requests are answered at once, in the read that completed them. A few wait on
the network: a send to a card another node holds, a presence question the cluster
must answer. Version 1 replies carry no id, so a card matches them to its requests
by order alone, and a later answer must not be overtaken. While one is pending the
connection stops reading, the requests already decoded wait in order, and once the
answer is written they are handled as if they had just arrived.

So a connection has one answer pending at most. Whoever produces the answer may
take requests from the front of the waiting ones and answer them together (a
crossing to other nodes does so with runs of sends), as long as it answers them in
order, and may write replies itself before it ends. Such an answer may let the
connection go on reading; it stops again while :data:`MAX_WAITING` requests or
:data:`MAX_WAITING_BYTES` bytes of messages wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from relayserver.requests import Send

logger = logging.getLogger(__name__)

Answer = Coroutine[Any, Any, bytes | None]

#: A connection stops reading while this many of its requests, or this many bytes
#: of messages, wait behind an answer.
MAX_WAITING = 4096
MAX_WAITING_BYTES = 1024 * 1024


class Waiting(Protocol):
    """A card connection as far as answering it later goes."""

    transport: asyncio.Transport | None
    deferred: list[Any] | None
    waiting_bytes: int
    arrival: asyncio.Future[None] | None
    closing: bool

    @property
    def label(self) -> str:
        """How log lines name the connection."""

    def queue(self, data: bytes) -> None:
        """Write ``data`` with the connection's other replies."""

    def drop(self, why: str) -> None:
        """Close the connection at once, saying ``why`` in the log."""


class Handler(Protocol):
    """The relay as far as answering later goes."""

    def handle_requests(self, connection: Any, events: list[Any]) -> None:
        """Act on requests of ``connection`` and write what they produced."""

    def flush_pending(self, last: Any = None) -> None:
        """Write everything queued."""


class Deferral:
    """The answers a relay owes its cards, each holding back its connection."""

    def __init__(self, relay: Handler) -> None:
        self._relay = relay
        self._pending: set[asyncio.Task[None]] = set()

    def answer_later(
        self, connection: Waiting, answer: Answer, *, keep_reading: bool = False
    ) -> None:
        """Write what ``answer`` returns, then go on with ``connection``'s requests.

        The connection stops reading meanwhile, unless ``keep_reading``: then the
        answer takes requests from the waiting ones as they come and bounds them.
        """
        connection.deferred = []
        if connection.transport is not None and not keep_reading:
            connection.transport.pause_reading()
        task = asyncio.create_task(self._answer(connection, answer))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def wait_behind(self, connection: Waiting, events: list[Any]) -> None:
        """Put ``events`` behind the connection's pending answer, tell the answer
        that more came, and stop reading when too much waits."""
        assert connection.deferred is not None
        connection.deferred.extend(events)
        connection.waiting_bytes += sum(
            len(event.payload) for event in events if type(event) is Send
        )
        if connection.arrival is not None and not connection.arrival.done():
            connection.arrival.set_result(None)
        if too_many_waiting(connection) and connection.transport is not None:
            connection.transport.pause_reading()

    async def close(self) -> None:
        """Give up on every pending answer (the relay is stopping)."""
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)

    async def _answer(self, connection: Waiting, answer: Answer) -> None:
        try:
            reply = await answer
        except Exception:
            logger.exception("card[%s]: a later answer failed", connection.label)
            connection.drop("its request failed inside the relay")
            return

        if connection.closing:
            return
        if reply:
            connection.queue(reply)
        self._relay.flush_pending(connection)
        waiting, connection.deferred = connection.deferred, None
        connection.waiting_bytes = 0
        if connection.transport is not None:
            connection.transport.resume_reading()
        if waiting:
            self._relay.handle_requests(connection, waiting)


def too_many_waiting(connection: Waiting) -> bool:
    """Whether the connection should stop reading until some waiting requests went."""
    deferred = connection.deferred
    return deferred is not None and (
        len(deferred) >= MAX_WAITING or connection.waiting_bytes >= MAX_WAITING_BYTES
    )
