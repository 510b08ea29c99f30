"""Prometheus metrics of one relay node, served as text on ``/metrics``.

The relay imports this module only when it was given a metrics port, so a relay
without one never loads the client library. Each :class:`RelayMetrics` owns its
registry, which keeps two relays in one process (tests) apart.

The relay calls the recording methods from its event loop; the HTTP server answers
scrapes from a thread of its own, which the client library's locks allow. Label
values come from the relay's own vocabulary, but they are still bounded: a label
outside ``[a-z0-9_]`` or beyond the first few distinct values of a metric counts as
``other``, so no client can blow up the number of series.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

logger = logging.getLogger(__name__)

#: The most distinct values one label of one metric takes before ``other``.
MAX_LABEL_VALUES = 32


class _Connection(Protocol):
    """A card connection, as far as counting its unsent bytes goes."""

    @property
    def transport(self) -> Any:
        """Its transport, or ``None``."""


Card = TypeVar("Card", bound=_Connection)

_LABEL_VALUE = re.compile(r"[a-z0-9_]{1,32}")

# Requests are counted by class; a request that could not be read is malformed.
_REQUEST_KINDS = {"DecodeError": "malformed"}

# The relay says in words why it closed a card; the label is the gist.
_DISCONNECT_GISTS = (
    ("another relay node", "evicted"),
    ("taken over", "taken_over"),
    ("slow", "slow"),
    ("silent", "idle"),
    ("stopping", "shutdown"),
    ("limit", "refused"),
)

# Heartbeat rounds write to every card: from microseconds to seconds on big nodes.
_ROUND_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
# Cross-node sends wait for the holder's acknowledgement over NATS.
_CLUSTER_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0)


class RelayMetrics:
    """The counters and gauges of one relay node, and the HTTP server showing them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._labels: dict[str, set[str]] = {}
        self.port: int | None = None
        self._request_kinds: dict[str, Any] = {}
        self._server: Any = None
        self._thread: Any = None
        self._define_cards()
        self._define_traffic()
        self._define_pressure()
        self._define_cluster()

    def serve(self, port: int, host: str = "0.0.0.0") -> int:  # noqa: S104
        """Answer scrapes on ``host:port`` from a thread; returns the bound port."""
        self._server, self._thread = start_http_server(
            port, addr=host, registry=self.registry
        )
        self.port = int(self._server.server_port)
        logger.info(
            "metrics: serving Prometheus text on %s:%d/metrics", host, self.port
        )
        return self.port

    def close(self) -> None:
        """Stop the HTTP server; closing twice is harmless."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def count_cards_with(self, count: Callable[[], int]) -> None:
        """Read the number of connected cards from ``count`` at each scrape."""
        self.cards_connected.set_function(count)

    def card_connected(self) -> None:
        """A card connected (or took a name over)."""
        self.connects.inc()

    def card_disconnected(self, why: str) -> None:
        """A card's connection ended; ``why`` is a label or the relay's own words."""
        self.disconnects.labels(self._label("reason", disconnect_reason(why))).inc()

    def request_received(self, kind: str, count: int = 1) -> None:
        """A card sent ``count`` requests of ``kind`` (their class: ``Send``...)."""
        child = self._request_kinds.get(kind)
        if child is None:
            label = _REQUEST_KINDS.get(kind, kind.lower())
            child = self._request_kinds[kind] = self.requests.labels(
                self._label("kind", label)
            )
        child.inc(count)

    def sends_relayed(self, count: int, messages: Iterable[Sequence[bytes]]) -> None:
        """A run of ``count`` sends reached local cards; ``messages`` by target."""
        self.request_received("Send", count)
        self.messages.labels("local").inc(count)
        size = sum(len(message) for run in messages for message in run)
        self.relayed_bytes.labels("local").inc(size)

    def message_relayed(self, size: int, route: str = "local") -> None:
        """A message of ``size`` bytes reached its target, on this node or another."""
        route = self._label("route", route)
        self.messages.labels(route).inc()
        self.relayed_bytes.labels(route).inc(size)

    def error(self, kind: str) -> None:
        """Something went wrong of ``kind`` (``wrong_format``, ``not_connected``...)."""
        self.errors.labels(self._label("error", kind)).inc()

    def heartbeat_round(self, seconds: float) -> None:
        """One heartbeat round, written to every card, took ``seconds``."""
        self.heartbeat_seconds.observe(seconds)

    def timed_round(
        self, visit: Callable[[Card], None], count: int
    ) -> Callable[[Card], None]:
        """``visit`` for a heartbeat round over ``count`` cards, which also times
        the round (its slices and the loop's work between them) and adds up the
        bytes the cards have not read yet."""
        started = time.perf_counter()
        seen = total = largest = 0

        def timed(connection: Card) -> None:
            nonlocal seen, total, largest
            visit(connection)
            transport = connection.transport
            if transport is not None:
                size = transport.get_write_buffer_size()
                total += size
                largest = max(largest, size)
            seen += 1
            if seen == count:
                self.heartbeat_round(time.perf_counter() - started)
                self.write_buffers_sampled(total, largest)

        if count == 0:
            self.heartbeat_round(0.0)
            self.write_buffers_sampled(0, 0)
        return timed

    def writes_paused(self) -> None:
        """A card's unsent bytes reached the high-water mark."""
        self.write_pauses.inc()

    def write_buffers_sampled(self, total: int, largest: int) -> None:
        """Bytes waiting in all cards' write buffers, and in the fullest one."""
        self.buffered_bytes.set(total)
        self.largest_buffer.set(largest)

    def cluster_request(self, result: str, seconds: float) -> None:
        """A cross-node send ended with ``result`` after ``seconds``."""
        self.cluster_requests.labels(self._label("result", result)).inc()
        self.cluster_seconds.observe(seconds)

    def cluster_connected(self, *, connected: bool) -> None:
        """The node's link to the cluster went up or down."""
        self.cluster_up.set(1 if connected else 0)

    def _define_cards(self) -> None:
        self.cards_connected = Gauge(
            "relay_cards_connected",
            "Cards connected to this node now.",
            registry=self.registry,
        )
        self.connects = Counter(
            "relay_connects", "Card connects accepted.", registry=self.registry
        )
        self.disconnects = Counter(
            "relay_disconnects",
            "Card connections that ended, by reason.",
            ["reason"],
            registry=self.registry,
        )

    def _define_traffic(self) -> None:
        self.requests = Counter(
            "relay_requests",
            "Requests received from cards, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.messages = Counter(
            "relay_messages_relayed",
            "Messages delivered to their target, by route (local or cluster).",
            ["route"],
            registry=self.registry,
        )
        self.relayed_bytes = Counter(
            "relay_bytes_relayed",
            "Message bytes delivered to their target, by route.",
            ["route"],
            registry=self.registry,
        )
        self.errors = Counter(
            "relay_errors",
            "Errors answered or met, by kind.",
            ["error"],
            registry=self.registry,
        )

    def _define_pressure(self) -> None:
        self.heartbeat_seconds = Histogram(
            "relay_heartbeat_round_seconds",
            "Time to write one heartbeat to every card.",
            buckets=_ROUND_BUCKETS,
            registry=self.registry,
        )
        self.write_pauses = Counter(
            "relay_write_pauses",
            "Times a card's unsent bytes reached the high-water mark.",
            registry=self.registry,
        )
        self.buffered_bytes = Gauge(
            "relay_write_buffer_bytes",
            "Bytes waiting in all cards' write buffers at the last sample.",
            registry=self.registry,
        )
        self.largest_buffer = Gauge(
            "relay_write_buffer_largest_bytes",
            "Bytes waiting in the fullest card's write buffer at the last sample.",
            registry=self.registry,
        )

    def _define_cluster(self) -> None:
        self.cluster_up = Gauge(
            "relay_cluster_connected",
            "1 while this node is connected to the cluster's NATS, else 0.",
            registry=self.registry,
        )
        self.cluster_requests = Counter(
            "relay_cluster_requests",
            "Sends to cards held by other nodes, by result.",
            ["result"],
            registry=self.registry,
        )
        self.cluster_seconds = Histogram(
            "relay_cluster_request_seconds",
            "Time from a cross-node send to the holder's acknowledgement.",
            buckets=_CLUSTER_BUCKETS,
            registry=self.registry,
        )

    def _label(self, label: str, value: str) -> str:
        """``value`` when it is a fair label value, else ``other``."""
        seen = self._labels.setdefault(label, set())
        if value in seen:
            return value
        if len(seen) >= MAX_LABEL_VALUES or not _LABEL_VALUE.fullmatch(value):
            return "other"
        seen.add(value)
        return value


def disconnect_reason(why: str) -> str:
    """The label for a disconnect the relay explained with ``why``."""
    if _LABEL_VALUE.fullmatch(why):
        return why
    for words, label in _DISCONNECT_GISTS:
        if words in why:
            return label
    return "other"
