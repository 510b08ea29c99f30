"""The relay server: accepts cards, routes their sends by name, pushes heartbeats.

Each connection is an :class:`asyncio.Protocol`; there is no task per connection or
per message. One read is decoded into all the requests it completes, and what they
produce is gathered per connection and written once per read: deliveries to each
target first, then the sender's own replies, so an acknowledgement always follows the
delivery it confirms. Routing goes through one seam, :meth:`RelayServer.deliver`
(and its queueing half), so a cluster backplane can route sends for cards other
nodes hold. A read made of plain version 1 sends to local version 1 cards is taken
whole (:meth:`RelayServer.sends_received`): each target's messages are queued in one
step and the acknowledgements in one write, with no request object per send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from relayserver import replies
from relayserver.auth import Authenticator
from relayserver.codec import Event, RequestDecoder, SendRun
from relayserver.errors import DecodeError
from relayserver.heartbeat import Heartbeat, Round
from relayserver.limits import Limits
from relayserver.registry import Registry
from relayserver.requests import Connect, Ping, Send

__all__ = ["CardConnection", "Limits", "RelayConfig", "RelayServer"]

log = logging.getLogger(__name__)

# What a listener returns is ignored, so any callable of (event, card) will do.
Listener = Callable[[str, str], object]


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Where the relay listens and how it treats cards."""

    host: str = "0.0.0.0"  # noqa: S104 (a relay serves cards on every interface)
    port: int = 8888
    heartbeat: float = 30.0
    tokens: Mapping[str, str] | None = None
    limits: Limits = field(default_factory=Limits)


class CardConnection(asyncio.Protocol):
    """One TCP connection from a card: decodes its bytes, hands requests on."""

    __slots__ = (
        "_decoder",
        "_relay",
        "closing",
        "last_tick",
        "name",
        "pending",
        "proto",
        "sender_json",
        "transport",
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
        if self.proto == 1:
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


class RelayServer:
    """Routes messages between cards by name; see ``docs/protocol.md``."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.tick = 0
        self.dirty: list[CardConnection] = []
        self._auth = Authenticator(config.tokens)
        self._auth_required = self._auth.enabled
        self._registry: Registry[CardConnection] = Registry()
        self._connections: set[CardConnection] = set()
        self._listeners: list[Listener] = []
        self._heartbeat = Heartbeat(config.heartbeat, self._beat)
        self._round: Round[CardConnection] | None = None
        self._server: asyncio.Server | None = None
        self._drained: asyncio.Event | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The TCP port the relay is bound to (the real one when configured as 0)."""
        return self._port

    def cards(self) -> list[str]:
        """The card names connected now."""
        return self._registry.names()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event, card)`` on "connect" and "disconnect" of a card."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Bind and start accepting cards."""
        config = self.config
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: CardConnection(self), config.host, config.port, backlog=1024
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._heartbeat.start()
        auth = "on" if self._auth.enabled else "off"
        log.info(
            "relay: listening on %s:%d, heartbeat every %g s, authentication %s",
            config.host, self._port, config.heartbeat, auth,
        )  # fmt: skip
        if not self._auth.enabled:
            log.warning("relay: no token file, so any client may claim any card name")

    async def close(self) -> None:
        """Stop accepting, close every connection and wait until they are gone."""
        self._heartbeat.stop()
        if self._round is not None:
            self._round.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.drop("the relay is stopping")
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        # Let the transports report connection_lost before the loop may stop.
        if self._connections:
            self._drained = asyncio.Event()
            await self._drained.wait()

    def connection_made(self, connection: CardConnection) -> None:
        """Admit a new connection unless the connection limit is reached."""
        if len(self._connections) >= self.config.limits.max_connections:
            log.warning(
                "card[%s]: refused, %d connections already open",
                connection.label, len(self._connections),
            )  # fmt: skip
            connection.drop("connection limit")
            return
        assert connection.transport is not None
        connection.transport.set_write_buffer_limits(
            high=self.config.limits.write_high_water
        )
        connection.last_tick = self.tick
        self._connections.add(connection)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("card[%s]: connection opened", connection.label)

    def connection_lost(
        self, connection: CardConnection, exc: Exception | None
    ) -> None:
        """Forget the connection and release its name unless it was taken over."""
        self._connections.discard(connection)
        if self._drained is not None and not self._connections:
            self._drained.set()
        why = connection.why or (str(exc) if exc else "closed by the card")
        name = connection.name
        if name is not None and self._registry.release(name, connection):
            log.info("card[%s]: disconnected (%s)", name, why)
            self._notify("disconnect", name)
        else:
            log.debug("card[%s]: connection closed (%s)", connection.label, why)

    def requests_received(
        self, connection: CardConnection, events: list[Event]
    ) -> None:
        """Act on the requests of one read, then write what they produced."""
        for event in events:
            kind = type(event)
            if kind is Send:
                self._send(connection, event)  # type: ignore[arg-type]
            elif kind is Connect:
                self._connect(connection, event)  # type: ignore[arg-type]
            elif kind is Ping:
                self._ping(connection, event)  # type: ignore[arg-type]
            else:
                self._malformed(connection, event)  # type: ignore[arg-type]
        self.flush_pending(connection)

    def sends_received(self, connection: CardConnection, run: SendRun) -> bool:
        """Queue a version 1 run of sends and their acknowledgements at once, when
        each target is another live version 1 card here, so that the result is the
        same as sending them one by one; else do nothing and say so."""
        if self._auth_required and connection.name is None:
            return False
        get, targets = self._registry.get, []
        for to in run.messages:
            target = get(to.decode("utf-8", "surrogateescape"))
            if target is None or target.closing or target.proto != 1:
                return False
            if target is connection:
                return False  # its acknowledgements would come before later sends
            targets.append(target)
        for target, messages in zip(targets, run.messages.values(), strict=True):
            target.queue_all(messages)
        connection.queue(replies.SEND_SUCCESS * run.count)
        return True

    def flush_pending(self, last: CardConnection | None = None) -> None:
        """Write everything queued, ``last``'s bytes after everyone else's."""
        dirty, self.dirty = self.dirty, []
        for target in dirty:
            if target is not last:
                target.flush()
        if last is not None:
            last.flush()

    def deliver(
        self, target: str, sender: str | None, payload: bytes, binary: bool = False
    ) -> bool:
        """Write a message to local card ``target`` now; False if no live card here
        holds that name. This is the seam a cluster backplane routes through."""
        delivered = self._queue_delivery(
            target, replies.name_json(sender), payload, binary=binary
        )
        self.flush_pending()
        return delivered

    def evict(self, name: str) -> None:
        """Close this relay's connection of card ``name``: a newer one is elsewhere."""
        holder = self._registry.get(name)
        if holder is not None:
            holder.drop("the card connected again on another relay node")

    def _queue_delivery(
        self, to: str, sender_json: bytes, payload: bytes, *, binary: bool
    ) -> bool:
        target = self._registry.get(to)
        if target is None or target.closing:
            return False
        if target.proto == 1:
            target.queue(payload)
        else:
            target.queue(replies.delivery(sender_json, payload, binary=binary))
        return True

    def slow_consumer(self, connection: CardConnection) -> None:
        """Stop delivering to a card whose unsent bytes passed the high-water mark.

        What the relay already acknowledged stays queued: the card gets one heartbeat
        interval to read it before its connection is cut. From now on, sends to it
        are answered "not connected", so the queue cannot grow.
        """
        assert connection.transport is not None
        log.warning(
            "card[%s]: dropped, it does not read fast enough (%d bytes unsent)",
            connection.label, connection.transport.get_write_buffer_size(),
        )  # fmt: skip
        connection.drain_and_close("too slow a reader", self.config.heartbeat)

    def _send(self, connection: CardConnection, send: Send) -> None:
        if self._auth_required and connection.name is None:
            self._refuse_unconnected(connection, send)
        elif self._queue_delivery(
            send.to, connection.sender_json, send.payload, binary=send.binary
        ):
            if connection.proto == 1:
                connection.queue(replies.SEND_SUCCESS)
            else:
                connection.queue(replies.send_ok(send.id))
        elif connection.proto == 1:
            connection.queue(replies.not_connected(send.to))
        else:
            connection.queue(replies.error("not connected", send.id, to=send.to))

    def _refuse_unconnected(self, connection: CardConnection, send: Send) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("card[%s]: send to %s refused", connection.label, send.to)
        if connection.proto == 1:
            connection.queue(replies.CONNECT_FIRST)
        else:
            connection.queue(replies.error("connect first", send.id))

    def _connect(self, connection: CardConnection, connect: Connect) -> None:
        if not self._auth.allows(connect.name, connect.token):
            self._refuse_connect(connection, connect)
            return
        if connection.name is not None and connection.name != connect.name:
            self._rename(connection)
        previous = self._registry.claim(connect.name, connection)
        connection.name = connect.name
        connection.sender_json = replies.name_json(connect.name)
        connection.proto = connect.proto
        self._acknowledge_connect(connection, connect)
        self._log_connect(connection, previous)
        if previous is not None:
            previous.drop("taken over by a newer connection")
        self._notify("connect", connect.name)

    def _acknowledge_connect(
        self, connection: CardConnection, connect: Connect
    ) -> None:
        if connect.proto == 1:
            connection.queue(replies.CONNECT_SUCCESS)
            return
        reply = replies.ok(
            "connect", connect.id, card=connect.name, proto=connect.proto,
            heartbeat=self.config.heartbeat,
        )  # fmt: skip
        connection.queue(reply)

    def _log_connect(
        self, connection: CardConnection, previous: CardConnection | None
    ) -> None:
        if not log.isEnabledFor(logging.INFO):
            return  # the peer's address costs a system call
        assert connection.transport is not None
        peer = connection.transport.get_extra_info("peername")
        address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        takeover = "" if previous is None else ", taking the name over"
        log.info(
            "card[%s]: connected from %s, protocol %d%s",
            connection.name, address, connection.proto, takeover,
        )  # fmt: skip

    def _rename(self, connection: CardConnection) -> None:
        name = connection.name
        assert name is not None
        if self._registry.release(name, connection):
            log.info("card[%s]: disconnected, the connection took another name", name)
            self._notify("disconnect", name)

    def _refuse_connect(self, connection: CardConnection, connect: Connect) -> None:
        log.warning(
            "card[%s]: connect refused, %s token", connect.name,
            "no" if connect.token is None else "wrong",
        )  # fmt: skip
        if connect.proto == 1:
            connection.queue(replies.not_authorized(connect.name))
        else:
            reply = replies.error("not authorized", connect.id, card=connect.name)
            connection.queue(reply)

    def _ping(self, connection: CardConnection, ping: Ping) -> None:
        if connection.proto == 1:
            connection.queue(b"pong")
        else:
            connection.queue(replies.ok("ping", ping.id))

    def _malformed(self, connection: CardConnection, error: DecodeError) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "card[%s]: wrong format, %s: %r",
                connection.label, error.reason, error.data,
            )  # fmt: skip
        if connection.proto == 1:
            connection.queue(replies.WRONG_FORMAT)
        else:
            reply = replies.error("wrong format", error.request_id, detail=error.reason)
            connection.queue(reply)

    def _beat(self) -> None:
        self.tick += 1
        if self._round is not None and not self._round.done:
            log.warning(
                "relay: the last heartbeat round still has %d of %d cards to go, "
                "so this one is skipped", self._round.left, len(self._connections),
            )  # fmt: skip
            return
        visit = self._beat_one(replies.heartbeat_line(time.time()))
        self._round = Round(list(self._connections), visit)
        self._round.start()

    def _beat_one(self, v2_line: bytes) -> Callable[[CardConnection], None]:
        """What a heartbeat round does to each connection: drop it when it was
        silent too long, else write it the heartbeat (``v2_line`` in version 2)."""
        tick, idle = self.tick, self.config.limits.idle_timeout

        def visit(connection: CardConnection) -> None:
            if idle and tick - connection.last_tick > idle:
                connection.drop(f"silent for {idle} heartbeat intervals")
            elif connection.transport is not None and not connection.closing:
                beat = replies.HEARTBEAT if connection.proto == 1 else v2_line
                connection.transport.write(beat)

        return visit

    def _notify(self, event: str, name: str) -> None:
        for listener in self._listeners:
            try:
                listener(event, name)
            except Exception:
                log.exception("card[%s]: a %s listener failed", name, event)
