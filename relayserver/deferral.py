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
order, and may write replies itself before it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

logger = logging.getLogger(__name__)

Answer = Coroutine[Any, Any, bytes | None]


class Waiting(Protocol):
    """A card connection as far as answering it later goes."""

    transport: asyncio.Transport | None
    deferred: list[Any] | None
    waiting_bytes: int
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
