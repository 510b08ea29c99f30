"""Sends that cross to other relay nodes: pipelined per connection, replies in order.

A send to a card another node holds waits for that node's acknowledgement, a round
trip through NATS. The card's later requests must not be answered before it, since
version 1 replies are matched to requests by order alone, so while a crossing is
under way the connection's requests wait in order (:mod:`relayserver.deferral`).
A :class:`Crossing` works through the sends at their head:

- sends waiting one behind the other go as one batch of up to :data:`BATCH` sends
  and :data:`BATCH_BYTES`: those for one target in one request, in order, and
  targets on several nodes at once;
- the connection goes on reading meanwhile, within the deferral's bounds on what
  may wait (:mod:`relayserver.deferral`), and sends that arrive go out as the next
  batch without waiting for the earlier ones to be answered, up to
  :data:`BATCHES_IN_FLIGHT` batches; so a connection holds a few megabytes at most;
- a batch's replies are written as soon as it and every batch before it are
  answered.

NATS keeps the order of one client's requests to one subscriber, and the holding
node answers them one after another, so a card's messages to another card stay in
order from batch to batch. The crossing ends once every batch is answered and the
request at the head is not a send; the deferral hands the rest to the relay.

The relay loads this module only when it joins a cluster.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from relayserver.backplane import Backplane, Delivery, send_reply
from relayserver.connection import CardConnection
from relayserver.deferral import too_many_waiting
from relayserver.requests import Send

logger = logging.getLogger(__name__)

#: The most sends one batch carries, and the most message bytes (a batch holds
#: one send at least, whatever its size).
BATCH = 1024
BATCH_BYTES = 256 * 1024
#: The most batches of one connection under way at once.
BATCHES_IN_FLIGHT = 8

Flush = Callable[[CardConnection], None]
InFlight = deque[tuple[list[Send], "asyncio.Future[list[Delivery]]"]]


class Crossing:
    """Routes a connection's sends through the cluster and writes their replies."""

    def __init__(self, backplane: Backplane, flush: Flush) -> None:
        self._backplane = backplane
        self._flush = flush

    async def send(self, connection: CardConnection, first: Send) -> None:
        """Route ``first`` and the sends behind it until none is left at the head."""
        in_flight: InFlight = deque()
        batch = [first, *take_sends(connection, BATCH - 1)]
        try:
            while batch or in_flight:
                batch = self._launch(connection, batch, in_flight)
                await _answered_or_more(connection, in_flight, listen=not batch)
                self._write_answered(connection, in_flight)
                if connection.closing:
                    return
                if not batch:
                    batch = take_sends(connection, BATCH)
        finally:
            for _, routed in in_flight:
                routed.cancel()

    def _launch(
        self, connection: CardConnection, batch: list[Send], in_flight: InFlight
    ) -> list[Send]:
        """Start batches while there is room; the batch that must wait, if any."""
        while batch and len(in_flight) < BATCHES_IN_FLIGHT:
            routing = self._backplane.route(connection.name, batch)
            in_flight.append((batch, asyncio.ensure_future(routing)))
            batch = take_sends(connection, BATCH)
        return batch

    def _write_answered(self, connection: CardConnection, in_flight: InFlight) -> None:
        """Write the replies of the batches answered so far, oldest first."""
        written = False
        while in_flight and in_flight[0][1].done():
            sends, routed = in_flight.popleft()
            connection.queue(
                b"".join(
                    send_reply(connection.proto, send, delivery)
                    for send, delivery in zip(sends, routed.result(), strict=True)
                )
            )
            written = True
        if written:
            self._flush(connection)


def take_sends(connection: CardConnection, limit: int) -> list[Send]:
    """Up to ``limit`` sends from the head of the connection's waiting requests;
    reading resumes once few enough wait."""
    waiting = connection.deferred
    if not waiting:
        return []
    count, size, most = 0, 0, min(len(waiting), limit)
    while count < most and size < BATCH_BYTES:
        send = waiting[count]
        if type(send) is not Send:
            break
        size += len(send.payload)
        count += 1
    batch: list[Send] = waiting[:count]
    del waiting[:count]
    connection.waiting_bytes = max(0, connection.waiting_bytes - size)
    if count and not too_many_waiting(connection) and connection.transport is not None:
        connection.transport.resume_reading()
    return batch


async def _answered_or_more(
    connection: CardConnection, in_flight: InFlight, *, listen: bool
) -> None:
    """Wait until the oldest batch is answered or, when ``listen``, until more
    requests arrive for the connection."""
    oldest = in_flight[0][1]
    if not listen:
        await asyncio.wait((oldest,))
        return
    arrival = connection.arrival = asyncio.get_running_loop().create_future()
    try:
        await asyncio.wait((oldest, arrival), return_when=asyncio.FIRST_COMPLETED)
    finally:
        connection.arrival = None
