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

Two parts are optional and loaded only when configured: the cluster backplane
(``nats``, see ``docs/cluster.md``) and the Prometheus metrics (``metrics_port``).
Presence (who is online, watching names) is always there for version 2 cards; on a
cluster it covers every node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relayserver import replies
from relayserver.auth import Authenticator
from relayserver.codec import Event, SendRun
from relayserver.connection import CardConnection
from relayserver.deferral import Deferral
from relayserver.errors import DecodeError
from relayserver.heartbeat import Heartbeat, Round
from relayserver.limits import Limits
from relayserver.presence import Presence, PresenceError, check_names
from relayserver.registry import Registry
from relayserver.requests import (
    Connect,
    Ping,
    RequestId,
    Send,
    Unwatch,
    Watch,
    Who,
)

if TYPE_CHECKING:
    from relayserver.backplane import Backplane
    from relayserver.crossing import Crossing
    from relayserver.metrics import RelayMetrics

__all__ = ["CardConnection", "Limits", "RelayConfig", "RelayServer"]

log = logging.getLogger(__name__)

_PRESENCE_REQUESTS = (Who, Watch, Unwatch)

# How long closing waits for connections to report that they are gone.
CLOSE_SECONDS = 5.0

# How long a session taken over by a newer one may take to read what it was sent.
TAKEOVER_GRACE = 5.0

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
    #: NATS server URL(s), comma-separated: run as a node of a cluster.
    nats: str | None = None
    #: This node's name in the cluster; the host name and port by default.
    node: str | None = None
    #: Serve Prometheus metrics on this port (0: any free one), on ``host``.
    metrics_port: int | None = None

    @property
    def node_name(self) -> str:
        """The node's name: ``node``, or the host name and the port (or the pid)."""
        return self.node or f"{socket.gethostname()}:{self.port or os.getpid()}"


class RelayServer:
    """Routes messages between cards by name; see ``docs/protocol.md``."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.tick = 0
        self.dirty: list[CardConnection] = []
        self.node = config.node_name
        self.presence = Presence(self.node, self._holds)
        self.backplane: Backplane | None = None
        self._crossing: Crossing | None = None
        self.metrics: RelayMetrics | None = None
        self._auth = Authenticator(config.tokens)
        self._auth_required = self._auth.enabled
        self._registry: Registry[CardConnection] = Registry()
        self._connections: set[CardConnection] = set()
        self._listeners: list[Listener] = []
        self._heartbeat = Heartbeat(config.heartbeat, self._beat)
        self._round: Round[CardConnection] | None = None
        self._deferral = Deferral(self)
        self._flush_handle: asyncio.Handle | None = None
        self._server: asyncio.Server | None = None
        self._drained: asyncio.Event | None = None
        self._stopping = False
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
        """Start the metrics and join the cluster when configured, then bind and
        start accepting cards."""
        config = self.config
        if config.metrics_port is not None:
            self._start_metrics(config.metrics_port)
        if config.nats is not None:
            await self._join_cluster(config.nats)

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

    def _start_metrics(self, port: int) -> None:
        from relayserver.metrics import RelayMetrics  # noqa: PLC0415 (optional)

        metrics = RelayMetrics()
        metrics.count_cards_with(self._registry.__len__)
        try:
            metrics.serve(port, self.config.host)
        except OSError as error:
            where = f"{self.config.host}:{port}"
            raise OSError(
                error.errno, f"metrics on {where}: {error.strerror}"
            ) from error
        self.metrics = metrics

    async def _join_cluster(self, url: str) -> None:
        from relayserver.backplane import (  # noqa: PLC0415 (optional)
            Backplane,
            BackplaneConfig,
        )
        from relayserver.crossing import Crossing  # noqa: PLC0415 (optional)

        config = BackplaneConfig(url=url, node=self.node)
        self.backplane = Backplane(config, self, self.presence, self.metrics)
        self._crossing = Crossing(self.backplane, self.flush_pending)
        await self.backplane.start()

    async def close(self) -> None:
        """Stop accepting, close every connection and wait until they are gone."""
        self._stopping = True
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
        # Let the transports report connection_lost before the loop may stop;
        # abort what a card connecting meanwhile still holds open.
        if self._connections:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), CLOSE_SECONDS)
            except TimeoutError:
                for connection in list(self._connections):
                    connection.drop("the relay is stopping")
                self._connections.clear()
        await self._deferral.close()
        if self.backplane is not None:
            await self.backplane.close()
        if self.metrics is not None:
            self.metrics.close()

    def connection_made(self, connection: CardConnection) -> None:
        """Admit a new connection unless the relay is stopping or the connection
        limit is reached."""
        if self._stopping:
            connection.drop("the relay is stopping")
            return
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
        self.presence.unwatch(connection)
        why = connection.why or (str(exc) if exc else "closed by the card")
        if self.metrics is not None:
            reason = connection.why or ("error" if exc else "closed")
            self.metrics.card_disconnected(reason)
        name = connection.name
        if name is not None and self._registry.release(name, connection):
            log.info("card[%s]: disconnected (%s)", name, why)
            self._card_offline(name)
        else:
            log.debug("card[%s]: connection closed (%s)", connection.label, why)

    def requests_received(
        self, connection: CardConnection, events: list[Event]
    ) -> None:
        """Act on the requests of one read, then write what they produced; while the
        connection waits for a later answer, they wait behind it."""
        if self.metrics is not None:
            for event in events:
                self.metrics.request_received(type(event).__name__)
        if connection.deferred is None:
            self.handle_requests(connection, events)
        else:
            self._deferral.wait_behind(connection, events)

    def handle_requests(self, connection: CardConnection, events: list[Event]) -> None:
        """Act on ``events`` in order until one must be answered later; the rest
        wait for it. Then write what they produced."""
        for index, event in enumerate(events):
            kind = type(event)
            answered = True
            if kind is Send:
                answered = self._send(connection, event)  # type: ignore[arg-type]
            elif kind is Connect:
                self._connect(connection, event)  # type: ignore[arg-type]
            elif kind is Ping:
                self._ping(connection, event)  # type: ignore[arg-type]
            elif kind in _PRESENCE_REQUESTS:
                answered = self._presence(connection, event)  # type: ignore[arg-type]
            else:
                self._malformed(connection, event)  # type: ignore[arg-type]
            if not answered:
                self._deferral.wait_behind(connection, events[index + 1 :])
                break
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
        if self.metrics is not None:
            self.metrics.sends_relayed(run.count, run.messages.values())
        return True

    def flush_pending(self, last: CardConnection | None = None) -> None:
        """Write everything queued, ``last``'s bytes after everyone else's."""
        dirty, self.dirty = self.dirty, []
        for target in dirty:
            if target is not last:
                target.flush()
        if last is not None:
            last.flush()

    def flush_soon(self) -> None:
        """Write what was queued outside a read, once the running callback ends."""
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_soon(self._flush_queued)

    def _flush_queued(self) -> None:
        self._flush_handle = None
        self.flush_pending()

    def deliver(
        self, target: str, sender: str | None, payload: bytes, binary: bool = False
    ) -> bool:
        """Write a message to local card ``target`` now; False if no live card here
        holds that name. This is the seam a cluster backplane routes through."""
        return self.deliver_all(target, sender, [(payload, binary)])[0]

    def deliver_all(
        self, target: str, sender: str | None, messages: Sequence[tuple[bytes, bool]]
    ) -> list[bool]:
        """Write ``messages`` (payload, binary) in order to local card ``target`` in
        one write; for each, whether it was queued (all or none: the card is here)."""
        sender_json = replies.name_json(sender)
        queue = self._queue_delivery
        outcomes = [
            queue(target, sender_json, payload, binary=binary)
            for payload, binary in messages
        ]
        self.flush_pending()
        return outcomes

    def evict(self, name: str) -> None:
        """Close this relay's connection of card ``name``: a newer one is elsewhere."""
        holder = self._registry.get(name)
        if holder is not None:
            self._retire(holder, "the card connected again on another relay node")

    def _retire(self, connection: CardConnection, why: str) -> None:
        """Close a session whose name a newer one took: what it was sent before,
        in this very read too, was acknowledged, so it may read that first."""
        connection.flush()
        grace = min(self.config.heartbeat, TAKEOVER_GRACE)
        connection.drain_and_close(why, grace)

    def _holds(self, name: str) -> bool:
        holder = self._registry.get(name)
        return holder is not None and not holder.closing

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
        if self.metrics is not None:
            self.metrics.writes_paused()
        connection.drain_and_close("too slow a reader", self.config.heartbeat)

    def _send(self, connection: CardConnection, send: Send) -> bool:
        """Answer ``send`` now, or hand it to the cluster and say so (False)."""
        if self._auth_required and connection.name is None:
            self._refuse_unconnected(connection, send)
            return True
        if self._queue_delivery(
            send.to, connection.sender_json, send.payload, binary=send.binary
        ):
            if connection.proto == 1:
                connection.queue(replies.SEND_SUCCESS)
            else:
                connection.queue(replies.send_ok(send.id))
            if self.metrics is not None:
                self.metrics.message_relayed(len(send.payload))
            return True
        backplane, crossing = self.backplane, self._crossing
        if backplane is not None and crossing is not None and backplane.connected:
            answer = crossing.send(connection, send)
            self._deferral.answer_later(connection, answer, keep_reading=True)
            return False
        self._refuse_send(connection, send, cut_off=backplane is not None)
        return True

    def _refuse_send(
        self, connection: CardConnection, send: Send, *, cut_off: bool
    ) -> None:
        """No card here holds ``send``'s target (``cut_off``: nor can the cluster
        be asked): say so."""
        what = "cluster unavailable" if cut_off else "not connected"
        if self.metrics is not None:
            self.metrics.error(what.replace(" ", "_"))
        if connection.proto == 1:
            connection.queue(replies.not_connected(send.to))
        else:
            connection.queue(replies.error(what, send.id, to=send.to))

    def _refuse_unconnected(self, connection: CardConnection, send: Send) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("card[%s]: send to %s refused", connection.label, send.to)
        if self.metrics is not None:
            self.metrics.error("connect_first")
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
        if connect.proto == 1:
            self.presence.unwatch(connection)  # version 1 has no presence lines
        connection.proto = connect.proto
        self._acknowledge_connect(connection, connect)
        self._log_connect(connection, previous)
        if previous is not None:
            self._retire(previous, "taken over by a newer connection")
        self._card_online(connect.name)

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
            self._card_offline(name)

    def _refuse_connect(self, connection: CardConnection, connect: Connect) -> None:
        log.warning(
            "card[%s]: connect refused, %s token", connect.name,
            "no" if connect.token is None else "wrong",
        )  # fmt: skip
        if self.metrics is not None:
            self.metrics.error("not_authorized")
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
        if self.metrics is not None:
            self.metrics.error("wrong_format")
        if connection.proto == 1:
            connection.queue(replies.WRONG_FORMAT)
        else:
            reply = replies.error("wrong format", error.request_id, detail=error.reason)
            connection.queue(reply)

    def _presence(
        self, connection: CardConnection, request: Who | Watch | Unwatch
    ) -> bool:
        """Answer a presence request (version 2 only); False when it comes later."""
        if connection.proto == 1:
            self._malformed(connection, DecodeError("presence needs protocol 2"))
            return True
        if isinstance(request, Unwatch):
            self._unwatch(connection, request)
            return True
        answer = self._presence_answer(connection, request)
        self._deferral.answer_later(connection, answer)
        return False

    def _unwatch(self, connection: CardConnection, request: Unwatch) -> None:
        try:
            check_names(request.names)
        except PresenceError as error:
            connection.queue(self._presence_refused(error, request.id))
            return
        self.presence.unwatch(connection, request.names)
        connection.queue(replies.ok("unwatch", request.id))

    def _presence_refused(self, error: PresenceError, request_id: RequestId) -> bytes:
        if self.metrics is not None:
            self.metrics.error(error.what.replace(" ", "_"))
        detail = {"detail": error.detail} if error.detail else {}
        return replies.error(error.what, request_id, **detail)

    async def _presence_answer(
        self, connection: CardConnection, request: Who | Watch
    ) -> bytes:
        """The reply to ``who`` or ``watch``: the names online, or why there is none."""
        action = "who" if type(request) is Who else "watch"
        try:
            if type(request) is Who:
                online = await self.presence.who(request.names)
            else:
                online = await self.presence.watch(connection, request.names)
        except PresenceError as error:
            return self._presence_refused(error, request.id)
        if connection.closing:
            self.presence.unwatch(connection)
        return replies.ok(action, request.id, online=online)

    def _beat(self) -> None:
        self.tick += 1
        if self._round is not None and not self._round.done:
            log.warning(
                "relay: the last heartbeat round still has %d of %d cards to go, "
                "so this one is skipped", self._round.left, len(self._connections),
            )  # fmt: skip
            return
        connections = list(self._connections)
        visit = self._beat_one(replies.heartbeat_line(time.time()))
        if self.metrics is not None:
            visit = self.metrics.timed_round(visit, len(connections))
        self._round = Round(connections, visit)
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

    def _card_online(self, name: str) -> None:
        """Card ``name`` connected here (or took its name over here)."""
        self.presence.card_online(name)
        if self.backplane is not None:
            self.backplane.card_connected(name)
        if self.metrics is not None:
            self.metrics.card_connected()
        self._notify("connect", name)

    def _card_offline(self, name: str) -> None:
        """Card ``name`` left this node and nobody here holds the name now."""
        self.presence.card_offline(name)
        if self.backplane is not None:
            self.backplane.card_released(name)
        self._notify("disconnect", name)

    def _notify(self, event: str, name: str) -> None:
        for listener in self._listeners:
            try:
                listener(event, name)
            except Exception:
                log.exception("card[%s]: a %s listener failed", name, event)
