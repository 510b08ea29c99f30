"""One card's TCP connection to the relay: its bytes in, its replies out.

Each connection is an :class:`asyncio.Protocol`; there is no task per connection or
per message. What one read produces for a connection is queued and written once,
when the relay flushes after the read.

A connection may owe its card an answer that comes later (a send to a card on another
relay node, a presence question): while it does, :attr:`CardConnection.deferred`
holds the requests decoded since, in order, and :attr:`CardConnection.arrival`, when
set, is resolved as more arrive.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

from relayserver import replies
from relayserver.codec import RequestDecoder

if TYPE_CHECKING:
    from relayserver.server import RelayServer


class CardConnection(asyncio.Protocol):
    """One TCP connection from a card: decodes its bytes, hands requests on."""

    __slots__ = (
        "_decoder",
        "_relay",
        "arrival",
        "closing",
        "deferred",
        "last_tick",
        "name",
        "pending",
        "proto",
        "sender_json",
        "transport",
        "waiting_bytes",
        "why",
    )

    def __init__(self, relay: RelayServer) -> None:
        self._relay = relay
        self._decoder = RequestDecoder(relay.config.limits.max_request_size)
        self.transport: asyncio.Transport | None = None
        self.name: str | None = None
        self.sender_json = b"null"
        self.proto = 1
        self.pending: list[bytes] | None = None
        self.deferred: list[Any] | None = None
        self.arrival: asyncio.Future[None] | None = None
        self.waiting_bytes = 0
        self.closing = False
        self.last_tick = 0
        self.why: str | None = None

    @property
    def label(self) -> str:
        """How log lines name this connection: its card, or its address until then."""
        if self.name is not None:
            return self.name
        if self.transport is None:
            return "?"
        peer = self.transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._relay.connection_made(self)

    def data_received(self, data: bytes) -> None:
        relay = self._relay
        self.last_tick = relay.tick
        if self.proto == 1 and self.deferred is None:
            # Runs of plain sends are routed whole when that changes nothing.
            run = self._decoder.maybe_sends(data)
            if run is not None and relay.sends_received(self, run):
                relay.requests_received(self, self._decoder.take(run))
                return
        relay.requests_received(self, self._decoder.feed(data))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.pending = None
        self._relay.connection_lost(self, exc)

    def presence_changed(self, name: str, online: bool) -> None:
        """A card this one watches came online or went offline: tell it."""
        if self.closing:
            return
        self.queue(replies.presence(name, online=online))
        self._relay.flush_soon()

    def pause_writing(self) -> None:
        self._relay.slow_consumer(self)

    def queue(self, data: bytes) -> None:
        """Write ``data`` with everything else this read produced for this card."""
        pending = self.pending
        if pending is None:
            self.pending = [data]
            self._relay.dirty.append(self)
        else:
            pending.append(data)

    def queue_all(self, messages: list[bytes]) -> None:
        """Queue every one of ``messages``, in order; the list becomes the card's."""
        pending = self.pending
        if pending is None:
            self.pending = messages
            self._relay.dirty.append(self)
        else:
            pending.extend(messages)

    def flush(self) -> None:
        """Hand the queued bytes to the transport in one call."""
        pending, self.pending = self.pending, None
        if pending is None or self.closing or self.transport is None:
            return
        if len(pending) == 1:
            self.transport.write(pending[0])
        else:
            # uvloop hands the list to writev as it is: no joined copy.
            self.transport.writelines(pending)

    def drain_and_close(self, why: str, grace: float) -> None:
        """Take no more bytes for this card, let it read what it was sent for up to
        ``grace`` seconds, then close it regardless."""
        self.why = why
        self.closing = True
        self.pending = None
        if self.transport is not None:
            self.transport.close()
            asyncio.get_running_loop().call_later(grace, self.transport.abort)

    def drop(self, why: str) -> None:
        """Close at once, discarding unsent bytes; ``why`` goes in the log."""
        self.why = why
        self.closing = True
        self.pending = None
        if self.transport is not None:
            self.transport.abort()
