"""The cluster backplane: several relay nodes behave as one relay through NATS.

Each node serves its own TCP connections and routes in memory between them. For a
card it does not hold, it asks the cluster. All subjects start with a prefix
(``relay`` by default):

``relay.card.<name>``
    The node holding card ``<name>`` subscribes to it. Sends to a card held
    elsewhere are a NATS request there, carrying the sender's name and one or more
    messages in order. The holder writes them to the card's socket first and only
    then answers, one byte a message: ``+`` written, ``-`` not (it holds the card
    but the write failed). So an acknowledgement never lies. Nor does a refusal: a
    request carries a deadline, half the request timeout after it was made, and a
    holder that gets it later (it was stalled, or NATS was slow) drops it unwritten,
    since the sender has been or will soon be told "not connected". This needs the
    nodes' clocks to agree within about a second (NTP); a node that drops requests
    for that reason says so in its log. It stays silent when
    it no longer holds the card (a newer holder may answer). No subscriber (NATS
    says so at once) or no answer within the request timeout means the card is not
    connected. The same subject answers presence probes with the holder's name.

``relay.event.online`` / ``relay.event.offline``
    A node announces each card that connects to it, with the wall-clock time of the
    connect, and each card it releases. A node holding an older session of that name
    closes it: the newest connect wins, ties broken by node name. After a lost link
    to NATS a node announces all its cards again, so two sessions of one name that
    connected to different nodes while NATS was away are settled when it returns.

``relay.event.node``
    Every node says it is alive once a beacon interval, and goodbye when it stops. A
    node silent for three intervals is gone: presence reports its cards offline.

The link to NATS may fail at any time. Local routing never waits for it: while it
is down, cross-node sends end at once as :attr:`Delivery.UNAVAILABLE`, the node keeps
reconnecting, and once back it subscribes again and re-announces its cards. Every
request is bounded by a timeout, so nothing hangs on a dead peer.

The relay imports this module only when it is given a NATS URL, and this module
imports the NATS client only when the backplane starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import math
import re
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from relayserver import replies
from relayserver.presence import ClusterUnavailable, Presence
from relayserver.requests import Send

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from relayserver.metrics import RelayMetrics

logger = logging.getLogger(__name__)

#: Beacon intervals a node may stay silent before the others count it gone.
SILENT_BEACONS = 3

#: Seconds two nodes' clocks may differ before a node warns (send deadlines use them).
CLOCK_TOLERANCE = 0.5

# At most this many presence probes in flight at once, per lookup.
_PROBE_BATCH = 100

_SEND, _PROBE = b"S", b"P"
_DELIVERED, _FAILED = b"+", b"-"
_BINARY = 1
_NO_SENDER = 0xFFFFFFFF
_SENDER = struct.Struct("!cdI")
_MESSAGE = struct.Struct("!BI")
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_MAX_TOKEN = 200
_EVENT_TEXT = {
    "online": ("node", "instance", "name"),
    "offline": ("node", "instance", "name"),
    "node": ("node", "instance", "state"),
}


#: A message's bytes, and whether the card sent it as binary.
Message = tuple[bytes, bool]


class Delivery(enum.Enum):
    """How a cross-node send ended."""

    DELIVERED = "delivered"
    NOT_CONNECTED = "not connected"
    UNAVAILABLE = "cluster unavailable"
    TOO_LARGE = "too large for the cluster"


@dataclass(frozen=True, slots=True)
class BackplaneConfig:
    """Where the cluster's NATS is, who this node is, and how patient to be."""

    url: str
    node: str
    prefix: str = "relay"
    request_timeout: float = 2.0
    beacon_interval: float = 1.0
    reconnect_wait: float = 1.0
    connect_timeout: float = 2.0


class LocalCards(Protocol):
    """What the backplane needs from the relay node it serves."""

    def deliver(
        self, target: str, sender: str | None, payload: bytes, binary: bool
    ) -> bool:
        """Write a message to local card ``target``; ``False`` when that failed."""

    def deliver_all(
        self, target: str, sender: str | None, messages: Sequence[Message]
    ) -> list[bool]:
        """Write ``messages`` in order to local card ``target`` in one go; for each,
        whether it was written."""

    def evict(self, name: str) -> None:
        """Close this node's session of ``name``: a newer one connected elsewhere."""


class Backplane:
    """One node's link to the cluster: routes, announces and evicts through NATS."""

    def __init__(
        self,
        config: BackplaneConfig,
        cards: LocalCards,
        presence: Presence | None = None,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.config = config
        self._cards = cards
        self._presence = presence
        self._metrics = metrics
        self._instance = uuid.uuid4().hex
        self._nc: Client | None = None
        # Cards this node holds, with the wall-clock time each connected.
        self._held: dict[str, float] = {}
        self._subs: dict[str, Subscription] = {}
        self._announced: dict[str, float] = {}
        self._released: set[str] = set()
        self._changes: asyncio.Queue[str | None] = asyncio.Queue()
        self._nodes: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._events: Subscription | None = None
        self._twins: set[str] = set()
        self._resync: asyncio.Task[None] | None = None
        # Per sender and target card: done once its latest batch may be overtaken.
        self._turns: dict[tuple[str | None, str], asyncio.Future[None]] = {}
        self._skewed: set[str] = set()
        self._shown_url = shown_url(config.url)
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether the node can reach the cluster right now."""
        return self._nc is not None and bool(self._nc.is_connected)

    def nodes(self) -> list[str]:
        """The other nodes heard from lately, for diagnostics and tests."""
        return sorted(self._nodes)

    async def start(self) -> None:
        """Connect to NATS; if it is away, route locally and keep trying."""
        self._spawn(self._apply_changes(), "changes")
        self._spawn(self._beacon(), "beacon")
        if self._presence is not None:
            self._presence.attach_cluster(self.probe)
        connecting = self._spawn(self._connect(), "connect")
        await asyncio.wait({connecting}, timeout=self.config.connect_timeout)
        if not connecting.done():
            logger.warning(
                "cluster[%s]: cannot reach NATS at %s yet; routing locally and "
                "retrying",
                self.config.node,
                self._shown_url,
            )

    async def close(self) -> None:
        """Say goodbye to the cluster and drop the link; safe to call twice."""
        if self._closing:
            return
        self._closing = True
        if self.connected:
            with contextlib.suppress(Exception):
                await self._publish_event("node", {"state": "bye"})
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.drain(), self.config.request_timeout)
            with contextlib.suppress(Exception):
                await nc.close()
        if self._presence is not None:
            self._presence.attach_cluster(None)
        logger.info("cluster[%s]: left the cluster", self.config.node)

    def card_connected(self, name: str) -> None:
        """Card ``name`` connected here: take its subject and evict other sessions."""
        self._held[name] = time.time()
        self._released.discard(name)
        self._changes.put_nowait(name)

    def card_released(self, name: str) -> None:
        """Card ``name`` left this node and nobody here took its name over."""
        if self._held.pop(name, None) is None:
            return
        self._released.add(name)
        self._changes.put_nowait(name)

    async def send(
        self, target: str, sender: str | None, payload: bytes, binary: bool = False
    ) -> Delivery:
        """Deliver to ``target`` on whichever node holds it, and say how it went."""
        return (await self.send_many(target, sender, [(payload, binary)]))[0]

    async def send_many(
        self, target: str, sender: str | None, messages: Sequence[Message]
    ) -> list[Delivery]:
        """Deliver ``messages`` in order to ``target``, in one request; each outcome."""
        started = time.perf_counter()
        deadline = time.time() + self.config.request_timeout / 2
        frame = _send_frame(sender, messages, deadline)
        nc = self._nc
        if nc is None or not nc.is_connected:
            deliveries, result = [Delivery.UNAVAILABLE] * len(messages), "unavailable"
        elif len(frame) > nc.max_payload:
            deliveries, result = [Delivery.TOO_LARGE] * len(messages), "too_large"
        else:
            deliveries, result = await self._request_delivery(
                nc, target, frame, len(messages)
            )
        if self._metrics is not None:
            self._metrics.cluster_request(result, time.perf_counter() - started)
        return deliveries

    async def _request_delivery(
        self, nc: Client, target: str, frame: bytes, count: int
    ) -> tuple[list[Delivery], str]:
        """Ask the holder of ``target`` to deliver ``frame``: outcomes and label."""
        from nats import errors  # noqa: PLC0415 - the client loads only in a cluster

        try:
            reply = await nc.request(
                self._card_subject(target), frame, timeout=self.config.request_timeout
            )
        except errors.NoRespondersError:
            return [Delivery.NOT_CONNECTED] * count, "no_responders"
        except errors.TimeoutError:
            if not nc.is_connected:
                return [Delivery.UNAVAILABLE] * count, "unavailable"
            logger.debug("card[%s]: its node did not answer in time", target)
            return [Delivery.NOT_CONNECTED] * count, "timeout"
        except errors.Error as error:
            logger.debug("card[%s]: cross-node send failed: %r", target, error)
            return [Delivery.UNAVAILABLE] * count, "unavailable"
        outcomes = _parse_outcomes(reply.data, count)
        if outcomes is None:
            return [Delivery.NOT_CONNECTED] * count, "refused"
        return outcomes, "delivered"

    async def route(self, sender: str | None, batch: list[Send]) -> list[Delivery]:
        """Deliver ``batch`` in order: here what is for cards here by now, the rest
        through the cluster, each target's in one request; how each send ended."""
        routed: list[Delivery] = [Delivery.NOT_CONNECTED] * len(batch)
        elsewhere: dict[str, list[int]] = {}
        for index, send in enumerate(batch):
            # Once a target went to the cluster, its later messages follow it there.
            if send.to not in elsewhere and self._cards.deliver(
                send.to, sender, send.payload, send.binary
            ):
                routed[index] = Delivery.DELIVERED
                self._count(send, Delivery.DELIVERED, "local")
            else:
                elsewhere.setdefault(send.to, []).append(index)

        await asyncio.gather(
            *(
                self._route_elsewhere(target, sender, batch, indices, routed)
                for target, indices in elsewhere.items()
            )
        )
        return routed

    async def _route_elsewhere(
        self,
        target: str,
        sender: str | None,
        batch: list[Send],
        indices: list[int],
        routed: list[Delivery],
    ) -> None:
        """Send ``batch[indices]`` to ``target``'s node, in requests NATS accepts.

        A sender's batches to one target may be under way together, and a large
        one crosses in several requests, each after the last was answered. So that
        the holder gets the messages in order, a batch publishes its requests only
        once the batch before it (from this sender to this target) published its
        last one: it waits for its turn, and hands the turn on just before its last
        request, which NATS's client publishes before it first yields.
        """
        limit = self._nc.max_payload // 2 if self._nc is not None else 1
        chunks = list(_chunks(batch, indices, limit))
        key = (sender, target)
        before = self._turns.get(key)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turns[key] = turn
        try:
            if before is not None:
                # Shielded: giving up on this batch must not cancel the one before.
                await asyncio.shield(before)
            for number, chunk in enumerate(chunks, 1):
                if number == len(chunks) and not turn.done():
                    turn.set_result(None)
                messages = [(batch[i].payload, batch[i].binary) for i in chunk]
                deliveries = await self.send_many(target, sender, messages)
                for index, delivery in zip(chunk, deliveries, strict=True):
                    routed[index] = delivery
                    self._count(batch[index], delivery, "cluster")
        finally:
            if not turn.done():
                turn.set_result(None)
            if self._turns.get(key) is turn:
                del self._turns[key]

    def _count(self, send: Send, delivery: Delivery, route: str) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        if delivery is Delivery.DELIVERED:
            metrics.message_relayed(len(send.payload), route)
        else:
            metrics.error(delivery.value.replace(" ", "_"))

    async def probe(self, names: Sequence[str]) -> dict[str, str | None]:
        """The node holding each of ``names``, or ``None``; raises when cut off."""
        holders: dict[str, str | None] = {}
        for start in range(0, len(names), _PROBE_BATCH):
            batch = names[start : start + _PROBE_BATCH]
            found = await asyncio.gather(*(self._probe_one(name) for name in batch))
            holders.update(zip(batch, found, strict=True))
        return holders

    async def _probe_one(self, name: str) -> str | None:
        from nats import errors  # noqa: PLC0415 - the client loads only in a cluster

        nc = self._nc
        if nc is None or not nc.is_connected:
            raise ClusterUnavailable(f"no link to {self._shown_url}")
        try:
            reply = await nc.request(
                self._card_subject(name), _PROBE, timeout=self.config.request_timeout
            )
        except (errors.NoRespondersError, errors.TimeoutError):
            return None
        except errors.Error as error:
            raise ClusterUnavailable(str(error) or type(error).__name__) from error
        if not reply.data.startswith(_DELIVERED):
            return None
        return reply.data[1:].decode("utf-8", "replace") or None

    async def _connect(self) -> None:
        """Reach NATS, however long it takes; then the client reconnects by itself."""
        import nats  # noqa: PLC0415 - the client loads only in a cluster

        # With no limit on attempts the client keeps trying until NATS is up.
        self._nc = await nats.connect(
            [server.strip() for server in self.config.url.split(",")],
            name=f"relayserver {self.config.node}",
            connect_timeout=max(1, round(self.config.connect_timeout)),
            reconnect_time_wait=max(1, round(self.config.reconnect_wait)),
            max_reconnect_attempts=-1,
            ping_interval=10,
            max_outstanding_pings=2,
            disconnected_cb=self._link_lost,
            reconnected_cb=self._link_back,
            error_cb=self._link_error,
        )
        await self._link_up("joined the cluster at")

    async def _link_up(self, how: str) -> None:
        logger.info("cluster[%s]: %s %s", self.config.node, how, self._shown_url)
        if self._metrics is not None:
            self._metrics.cluster_connected(connected=True)
        await self._subscribe_events()
        await self._prepare_requests()
        # Whatever others missed while we were away is announced again.
        self._announced.clear()
        now = asyncio.get_running_loop().time()
        self._nodes = dict.fromkeys(self._nodes, now)
        self._changes.put_nowait(None)

    async def _prepare_requests(self) -> None:
        """Make one request nobody answers, so that the client has its reply
        subscription ready: from then on it publishes a request before it yields,
        which keeps the order of requests published one after the other."""
        nc = self._nc
        if nc is None:
            return
        from nats import errors  # noqa: PLC0415 - the client loads only in a cluster

        subject = f"{self.config.prefix}.ready.{uuid.uuid4().hex}"
        with contextlib.suppress(errors.Error):
            await nc.request(subject, b"", timeout=self.config.request_timeout)

    async def _link_lost(self) -> None:
        if self._closing:
            return
        if self._metrics is not None:
            self._metrics.cluster_connected(connected=False)
        logger.warning(
            "cluster[%s]: lost NATS at %s; cross-node sends fail until it is back",
            self.config.node,
            self._shown_url,
        )

    async def _link_back(self) -> None:
        await self._link_up("back in the cluster at")

    async def _link_error(self, error: Exception) -> None:
        logger.debug("cluster[%s]: NATS client: %r", self.config.node, error)

    async def _subscribe_events(self) -> None:
        """Listen to the other nodes' announcements (once: the client replays it)."""
        nc = self._nc
        if nc is None or self._events is not None:
            return
        subject = f"{self.config.prefix}.event.*"
        self._events = await nc.subscribe(subject, cb=self._event_received)

    async def _apply_changes(self) -> None:
        """Bring subscriptions and announcements in line with the cards held here."""
        while True:
            name = await self._changes.get()
            if not self.connected:
                continue
            names = set(self._held) | set(self._subs) if name is None else {name}
            try:
                for each in names:
                    await self._apply(each)
            except Exception as error:  # the link may drop at any step
                # A broken link is retried as a whole when it is back.
                logger.debug("cluster[%s]: update failed: %r", self.config.node, error)
            if name is None:
                self._resync_presence()

    def _resync_presence(self) -> None:
        """Ask the cluster about every watched name again, beside the card updates:
        a slow answer must not hold up the subscriptions of cards connecting."""
        if self._presence is None:
            return
        if self._resync is not None:
            self._resync.cancel()
        self._resync = self._spawn(self._resync_quietly(self._presence), "resync")

    async def _resync_quietly(self, presence: Presence) -> None:
        try:
            await presence.resync()
        except Exception as error:  # the link may drop again meanwhile
            logger.debug("cluster[%s]: resync failed: %r", self.config.node, error)

    async def _apply(self, name: str) -> None:
        nc = self._nc
        assert nc is not None
        since = self._held.get(name)
        sub = self._subs.get(name)
        if since is not None:
            if sub is None:
                self._subs[name] = await nc.subscribe(
                    self._card_subject(name), cb=self._requests_for(name)
                )
            if self._announced.get(name) != since:
                # Published after the subscription, so whoever hears of the card
                # can already reach it.
                await self._publish_event("online", {"name": name, "since": since})
                self._announced[name] = since
            return

        self._announced.pop(name, None)
        if sub is not None:
            del self._subs[name]
            await sub.unsubscribe()
        if name in self._released:
            self._released.discard(name)
            await self._publish_event("offline", {"name": name})

    def _requests_for(self, name: str) -> Callable[[Msg], Awaitable[None]]:
        async def request_received(msg: Msg) -> None:
            await self._card_request(name, msg)

        return request_received

    async def _card_request(self, name: str, msg: Msg) -> None:
        """A send or probe for card ``name``, answered only while it is held here."""
        if name not in self._held or not msg.reply:
            return
        if msg.data[:1] == _PROBE:
            await self._respond(msg, _DELIVERED + self.config.node.encode())
            return

        frame = _parse_send_frame(msg.data)
        if frame is None:
            logger.warning(
                "cluster[%s]: malformed send for card[%s]", self.config.node, name
            )
            await self._respond(msg, _FAILED)
            return
        sender, messages, deadline = frame
        late = time.time() - deadline
        if late > 0:
            self._expired(name, len(messages), late)
            return
        delivered = self._cards.deliver_all(name, sender, messages)
        outcomes = b"".join(_DELIVERED if done else _FAILED for done in delivered)
        await self._respond(msg, outcomes)

    def _expired(self, name: str, count: int, late: float) -> None:
        """Messages for ``name`` came past their deadline: the sender moved on."""
        logger.warning(
            "card[%s]: dropped %d message(s) from another node, %.1f s past their "
            "deadline (this node stalled, or the nodes' clocks disagree)",
            name,
            count,
            late,
        )
        if self._metrics is not None:
            self._metrics.error("expired")

    async def _respond(self, msg: Msg, data: bytes) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        try:
            await nc.publish(msg.reply, data)
        except Exception as error:  # the link may drop at any step
            logger.debug("cluster[%s]: reply failed: %r", self.config.node, error)

    async def _event_received(self, msg: Msg) -> None:
        """Another node's announcement; garbage is logged and dropped."""
        kind = msg.subject.rsplit(".", 1)[-1]
        event = _parse_event(kind, msg.data) if kind in _EVENT_TEXT else None
        if event is None:
            logger.warning(
                "cluster[%s]: malformed event on %s", self.config.node, msg.subject
            )
            return
        if event["instance"] == self._instance:
            return
        node = event["node"]
        if node == self.config.node:
            if event["instance"] not in self._twins:
                self._twins.add(event["instance"])
                logger.error(
                    "cluster[%s]: another node uses this node's name; give each "
                    "--node a name of its own",
                    node,
                )
            return
        if kind == "online":
            self._online_received(event["name"], node, event["since"])
        elif kind == "offline":
            if self._presence is not None:
                self._presence.card_offline(event["name"], node)
        elif kind == "node":
            self._node_heard(node, event["state"])
            self._check_clock(node, event.get("time"))

    def _online_received(self, name: str, node: str, since: float) -> None:
        self._nodes[node] = asyncio.get_running_loop().time()
        if self._presence is not None:
            self._presence.card_online(name, node)
        mine = self._held.get(name)
        if mine is None:
            return
        if (mine, self.config.node) > (since, node):
            # Ours is the newer session: say so again, the other node evicts its own.
            self._announced.pop(name, None)
            self._changes.put_nowait(name)
            return

        logger.info(
            "card[%s]: connected to node %s; closing its older session here", name, node
        )
        del self._held[name]
        self._changes.put_nowait(name)
        self._cards.evict(name)

    def _node_heard(self, node: str, state: str) -> None:
        if state == "bye":
            self._node_gone(node, "left the cluster")
            return
        if node not in self._nodes:
            logger.info("cluster[%s]: node %s is up", self.config.node, node)
        self._nodes[node] = asyncio.get_running_loop().time()

    def _check_clock(self, node: str, then: object) -> None:
        """Warn once when ``node``'s clock is far from ours: sends between us would
        be dropped as late, or kept past their deadline."""
        if not isinstance(then, int | float) or node in self._skewed:
            return
        skew = time.time() - then
        if abs(skew) > CLOCK_TOLERANCE:
            self._skewed.add(node)
            logger.warning(
                "cluster[%s]: node %s's clock is %.1f s %s this node's; keep the "
                "nodes' clocks in step (NTP)",
                self.config.node,
                node,
                abs(skew),
                "behind" if skew > 0 else "ahead of",
            )

    def _node_gone(self, node: str, why: str) -> None:
        if self._nodes.pop(node, None) is not None:
            logger.warning("cluster[%s]: node %s %s", self.config.node, node, why)
        if self._presence is not None:
            self._presence.node_gone(node)

    async def _beacon(self) -> None:
        """Say this node is alive, and notice the nodes that stopped saying so."""
        interval = self.config.beacon_interval
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            if not self.connected:
                continue
            with contextlib.suppress(Exception):
                await self._publish_event(
                    "node", {"state": "alive", "time": time.time()}
                )
            deadline = loop.time() - SILENT_BEACONS * interval
            for node, seen in list(self._nodes.items()):
                if seen < deadline:
                    self._node_gone(node, "went silent")

    async def _publish_event(self, kind: str, fields: dict[str, Any]) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        body = {"node": self.config.node, "instance": self._instance, **fields}
        subject = f"{self.config.prefix}.event.{kind}"
        await nc.publish(subject, json.dumps(body).encode())

    def _card_subject(self, name: str) -> str:
        return f"{self.config.prefix}.card.{subject_token(name)}"

    def _spawn(self, work: Any, what: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=f"cluster {self.config.node} {what}")
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)
        return task

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        if not self._closing:
            self._tasks.remove(task)


def shown_url(url: str) -> str:
    """``url`` (one or more, comma-separated) without user names and passwords."""
    return ",".join(_without_credentials(server.strip()) for server in url.split(","))


def _without_credentials(server: str) -> str:
    parts = urlsplit(server)
    if "@" not in parts.netloc:
        return server
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def subject_token(name: str) -> str:
    """A NATS subject token standing for card ``name``, one to one."""
    if _SAFE_TOKEN.fullmatch(name) and len(name) <= _MAX_TOKEN:
        return name
    escaped = "".join(
        char
        if _SAFE_TOKEN.fullmatch(char)
        else "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
        for char in name
    )
    if len(escaped) <= _MAX_TOKEN:
        return escaped
    # Subjects have a size limit; a long name is named by its digest instead.
    return "~" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def send_reply(proto: int, send: Send, delivery: Delivery) -> bytes:
    """What the sender reads about ``send``, in its protocol version."""
    if delivery is Delivery.DELIVERED:
        return replies.SEND_SUCCESS if proto == 1 else replies.send_ok(send.id)
    if proto == 1:
        # Version 1 has one word for every failure.
        return replies.not_connected(send.to)
    return replies.error(delivery.value, send.id, to=send.to)


def _send_frame(
    sender: str | None, messages: Sequence[Message], deadline: float
) -> bytes:
    """A send request: its deadline (Unix time), the sender's name, then each
    message with its flags."""
    name = b"" if sender is None else sender.encode("utf-8", "surrogatepass")
    size = _NO_SENDER if sender is None else len(name)
    parts = [_SENDER.pack(_SEND, deadline, size), name]
    for payload, binary in messages:
        parts.append(_MESSAGE.pack(_BINARY if binary else 0, len(payload)))
        parts.append(payload)
    return b"".join(parts)


def _parse_send_frame(
    data: bytes,
) -> tuple[str | None, list[Message], float] | None:
    """Sender, messages and deadline of a send request; ``None`` if it is
    malformed."""
    head = _parse_sender(data)
    if head is None:
        return None
    sender, offset, deadline = head
    messages: list[Message] = []
    while offset < len(data):
        if offset + _MESSAGE.size > len(data):
            return None
        flags, length = _MESSAGE.unpack_from(data, offset)
        offset += _MESSAGE.size
        messages.append((data[offset : offset + length], bool(flags & _BINARY)))
        offset += length
    if not messages or offset != len(data):
        return None
    return sender, messages, deadline


def _parse_sender(data: bytes) -> tuple[str | None, int, float] | None:
    """The sender of a send request, where its messages start, and its deadline."""
    if len(data) < _SENDER.size:
        return None
    kind, deadline, size = _SENDER.unpack_from(data)
    offset = _SENDER.size
    if kind != _SEND or not math.isfinite(deadline):
        return None
    if size == _NO_SENDER:
        return None, offset, deadline
    if offset + size > len(data):
        return None
    try:
        name = data[offset : offset + size].decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    return name, offset + size, deadline


def _parse_outcomes(data: bytes, count: int) -> list[Delivery] | None:
    """One outcome a message from the holder's reply; ``None`` if it is not one."""
    if len(data) != count or data.strip(_DELIVERED + _FAILED):
        return None
    return [
        Delivery.DELIVERED if byte == _DELIVERED[0] else Delivery.NOT_CONNECTED
        for byte in data
    ]


def _chunks(batch: list[Send], indices: list[int], limit: int) -> Iterator[list[int]]:
    """``indices`` in order, grouped so that each group's payloads stay in ``limit``."""
    chunk: list[int] = []
    size = 0
    for index in indices:
        payload = len(batch[index].payload)
        if chunk and size + payload > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(index)
        size += payload
    if chunk:
        yield chunk


def _parse_event(kind: str, data: bytes) -> dict[str, Any] | None:
    """An announcement's fields, checked; ``None`` when it is not one of ours."""
    try:
        event = json.loads(data)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    if not all(isinstance(event.get(key), str) for key in _EVENT_TEXT[kind]):
        return None
    if kind == "online" and not isinstance(event.get("since"), int | float):
        return None
    return event
