"""Relay processes joined through a real nats-server behave as one relay.

Each test starts its own nats-server and two or three ``relayserver`` processes on
loopback, and talks to them only as cards and operators do: requests over TCP,
Prometheus text over HTTP, the log. What it checks is what ``docs/cluster.md``
promises. The NATS backplane inside one process is ``test_cluster_backplane.py``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import (
    PROMPT,
    Card,
    NatsServer,
    RelayNode,
    SocketCard,
    free_port,
    require_nats_server,
    start_nodes,
    stop_nodes,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.nats

# A node counts another gone after three silent beacons of 1 s: allow for a slow
# machine on top.
NODE_GONE = 3 * PROMPT

Sample = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[Sample, float]


class Cluster:
    """The relay nodes of one test on its nats-server, and the cards opened on them."""

    def __init__(self, nats_server: NatsServer, workdir: Path) -> None:
        self.nats_server = nats_server
        self.workdir = workdir
        self.nodes: list[RelayNode] = []
        self._cards: list[Card | SocketCard] = []
        self._observers = itertools.count(1)

    def start(self, count: int, *options: str) -> list[RelayNode]:
        """Start ``count`` nodes named relay-1, relay-2..., each given ``options``,
        and wait until they joined the cluster."""
        names = [f"relay-{len(self.nodes) + index}" for index in range(1, count + 1)]
        nodes = [
            RelayNode(
                self.workdir, "--nats", self.nats_server.url, "--node", name, *options
            )
            for name in names
        ]
        self.nodes += nodes
        start_nodes(nodes)
        for node, name in zip(nodes, names, strict=True):
            node.wait_logged(f"cluster[{name}]: joined the cluster")
        return nodes

    async def card(self, node: RelayNode, name: str, proto: int = 1) -> Card:
        """A card connected to ``node`` as ``name``."""
        card = await Card.connect(node.port, name, proto)
        self._cards.append(card)
        return card

    def socket_card(self, node: RelayNode, name: str) -> SocketCard:
        """A version 1 card on ``node`` whose received bytes wait in the kernel."""
        card = SocketCard(node.port, name)
        self._cards.append(card)
        return card

    async def online(self, node: RelayNode, name: str) -> None:
        """Wait until ``node`` sees card ``name`` online: held there, or reachable
        through the cluster (a node announces a card once it can take sends)."""
        observer = await Card.connect(node.port, f"observer-{next(self._observers)}", 2)
        try:
            await watch_until_online(observer, [name])
        finally:
            await observer.close()

    async def close(self) -> None:
        """Close the cards, stop the nodes and show their logs (seen on failure)."""
        for card in self._cards:
            if isinstance(card, Card):
                await card.close()
            else:
                card.close()
        stop_nodes(self.nodes)
        for node in self.nodes:
            print(f"--- relay on port {node.port}:\n{node.log()[-4000:]}")


@pytest.fixture
async def cluster(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    nodes = Cluster(nats_server, tmp_path)
    try:
        yield nodes
    finally:
        await nodes.close()


def send(to: str, message: str) -> str:
    """A version 1 send, spelled as deployed cards spell it."""
    return f"{{'action':'send','to':'{to}','message':'{message}'}}"


def presence(state: str, card: str) -> dict[str, Any]:
    return {"presence": state, "card": card}


async def watch_until_online(card: Card, names: list[str]) -> None:
    """Watch ``names`` from version 2 ``card`` and wait until all are online."""
    await card.request({"action": "watch", "names": names})
    online = set((await card.line())["online"])
    while online != set(names):
        event = await card.line()
        assert event["presence"] == "online", event
        online.add(event["card"])


async def test_a_v1_send_to_another_node_is_acknowledged_after_delivery(
    cluster: Cluster,
) -> None:
    one, two = cluster.start(2)
    b = cluster.socket_card(two, "B")
    await cluster.online(one, "B")
    a = await cluster.card(one, "A")

    await a.request(send("B", "over the cluster"))
    await a.expect(b"send_success")

    # The holder writes to B's socket before it answers: B has the bytes already.
    assert b.arrived() == b"over the cluster"


async def test_pipelined_v1_sends_to_another_node_keep_their_order(
    cluster: Cluster,
) -> None:
    one, two = cluster.start(2)
    b = cluster.socket_card(two, "B")
    await cluster.online(one, "B")
    a = await cluster.card(one, "A")
    messages = [f"m{index:03d};" for index in range(200)]

    await a.request("".join(send("B", message) for message in messages))
    await a.expect(b"send_success" * 200)

    assert b.arrived() == "".join(messages).encode()


async def test_a_stream_of_sends_across_nodes_keeps_every_order(
    cluster: Cluster,
) -> None:
    # Many writes while batches are still under way: the relay goes on reading and
    # sends several batches at once, and still answers in the order of requests.
    one, two = cluster.start(2)
    b = await cluster.card(two, "B", proto=2)
    c = await cluster.card(one, "C", proto=2)
    await cluster.online(one, "B")
    a = await cluster.card(one, "A", proto=2)
    count = 6000
    requests = [
        json.dumps({"action": "send", "to": "B", "message": f"m{i}", "id": i})
        for i in range(count)
    ]
    requests.insert(count // 2, '{"action":"ping","id":"half"}')
    requests.insert(count // 2 + 1, '{"action":"send","to":"C","message":"local"}')

    for start in range(0, len(requests), 250):
        a.writer.write("".join(requests[start : start + 250]).encode())
    await a.writer.drain()

    answers = [await a.line() for _ in range(len(requests))]
    expected: list[dict[str, Any]] = [{"ok": "send", "id": i} for i in range(count)]
    expected.insert(count // 2, {"ok": "ping", "id": "half"})
    expected.insert(count // 2 + 1, {"ok": "send"})
    assert answers == expected
    assert await c.line() == {"from": "A", "message": "local"}
    for i in range(count):
        assert await b.line() == {"from": "A", "message": f"m{i}"}


async def test_batches_that_cross_in_several_requests_keep_their_order(
    tmp_path: Path,
) -> None:
    # With a small NATS payload limit a batch of large messages crosses in several
    # requests, one after the other, while later batches of the card are under way.
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 4096\n")
    small = NatsServer(require_nats_server(), tmp_path, "-c", str(config))
    small.start()
    cluster = Cluster(small, tmp_path)
    try:
        one, two = cluster.start(2)
        b = await cluster.card(two, "B", proto=2)
        await cluster.online(one, "B")
        a = await cluster.card(one, "A", proto=2)
        count, pad = 1500, "x" * 900
        requests = [
            json.dumps({"action": "send", "to": "B", "message": f"{i}{pad}", "id": i})
            for i in range(count)
        ]

        for start in range(0, count, 100):
            a.writer.write("".join(requests[start : start + 100]).encode())
        await a.writer.drain()

        answers = [await a.line() for _ in range(count)]
        assert answers == [{"ok": "send", "id": i} for i in range(count)]
        received = [(await b.line())["message"] for _ in range(count)]
        assert received == [f"{i}{pad}" for i in range(count)]
    finally:
        await cluster.close()
        small.stop()


async def test_a_v2_send_to_another_node_is_acknowledged_with_its_id(
    cluster: Cluster,
) -> None:
    one, two = cluster.start(2)
    b = await cluster.card(two, "B", proto=2)
    await cluster.online(one, "B")
    a = await cluster.card(one, "A", proto=2)
    frame = base64.b64encode(bytes(range(256))).decode()

    await a.request({"action": "send", "to": "B", "message": "hello B", "id": 7})
    await a.request({"action": "send", "to": "B", "message_b64": frame, "id": "b"})

    assert await a.line() == {"ok": "send", "id": 7}
    assert await a.line() == {"ok": "send", "id": "b"}
    assert await b.line() == {"from": "A", "message": "hello B"}
    assert await b.line() == {"from": "A", "message_b64": frame}


async def test_a_card_connected_nowhere_is_not_connected(cluster: Cluster) -> None:
    one, two = cluster.start(2)
    a = await cluster.card(one, "A")
    c = await cluster.card(two, "C", proto=2)

    await a.request(send("Z", "anyone?"))
    await c.request({"action": "send", "to": "Z", "message": "anyone?"})

    await a.expect(b"Z not connect")
    assert await c.line() == {"error": "not connected", "to": "Z"}


async def test_a_card_connecting_to_another_node_closes_its_older_session(
    cluster: Cluster,
) -> None:
    one, two = cluster.start(2)
    old = await cluster.card(one, "B")
    a = await cluster.card(one, "A")

    new = await cluster.card(two, "B")

    assert await old.closed()
    await a.request(send("B", "to the new session"))
    await a.expect(b"send_success")
    await new.expect(b"to the new session")
    assert "(the card connected again on another relay node)" in one.log()


async def test_a_send_refused_while_the_holder_stalled_is_never_delivered(
    cluster: Cluster,
) -> None:
    one, two = cluster.start(2)
    b = await cluster.card(two, "B")
    a = await cluster.card(one, "A")
    await cluster.online(one, "B")

    two.freeze()
    try:
        await a.request(send("B", "while stalled"))
        await a.expect(b"B not connect")
    finally:
        two.thaw()
    two.wait_logged("card[B]: dropped 1 message(s) from another node")
    await a.request(send("B", "after"))
    await a.expect(b"send_success")

    await b.expect(b"after")


async def test_cards_keep_talking_while_nats_is_away_and_reach_further_after(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    one, two = cluster.start(2)
    b = await cluster.card(two, "B")
    await cluster.online(one, "B")
    a1 = await cluster.card(one, "A1")
    a2 = await cluster.card(one, "A2", proto=2)
    c = await cluster.card(one, "C")

    nats_server.stop()

    await a1.request(send("C", "still here"))
    await a1.expect(b"send_success")
    await c.expect(b"still here")
    await a2.request({"action": "send", "to": "B", "message": "lost", "id": 1})
    assert await a2.line() == {"error": "cluster unavailable", "to": "B", "id": 1}
    await a1.request(send("B", "lost"))
    await a1.expect(b"B not connect")
    await a1.request("{'action':'ping'}")
    await a1.expect(b"pong")
    await a2.request({"action": "who", "names": ["C"], "id": 2})
    assert await a2.line() == {"ok": "who", "online": ["C"], "id": 2}
    await a2.request({"action": "who", "names": ["B"], "id": 3})
    assert (await a2.line())["error"] == "cluster unavailable"

    nats_server.start()
    delivered = await send_until_delivered(a2, "B", 2 * PROMPT)

    await b.expect(delivered.encode())
    await a1.request(send("B", "and from version 1"))
    await a1.expect(b"send_success")
    await b.expect(b"and from version 1")


async def test_sessions_made_on_two_nodes_while_nats_is_away_settle_after(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    one, two = cluster.start(2)
    old = await cluster.card(one, "B")
    await cluster.online(two, "B")
    a = await cluster.card(one, "A")

    nats_server.stop()
    new = await cluster.card(two, "B")
    nats_server.start()

    # Once NATS is back the older session is closed, and B is the newer one.
    assert await old.closed()
    await a.request(send("B", "settled"))
    await a.expect(b"send_success")
    await new.expect(b"settled")


async def test_watchers_hear_what_changed_while_nats_was_away(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    one, two = cluster.start(2)
    b = await cluster.card(two, "B")
    w = await cluster.card(one, "W", proto=2)
    await watch_until_online(w, ["B"])
    await w.request({"action": "watch", "names": ["C"], "id": 1})
    assert await w.line() == {"ok": "watch", "online": [], "id": 1}

    nats_server.stop()
    await b.close()
    await cluster.card(two, "C")
    nats_server.start()

    heard = [await w.line(), await w.line()]
    assert sorted(heard, key=str) == [presence("offline", "B"), presence("online", "C")]


async def send_until_delivered(card: Card, to: str, within: float) -> str:
    """Send numbered messages from a version 2 ``card`` to ``to`` until one gets
    through; the message that did. The others must fail as the cluster says."""
    deadline = time.monotonic() + within
    attempt = 0
    while True:
        attempt += 1
        message = f"attempt {attempt}"
        await card.request({"action": "send", "to": to, "message": message})
        reply = await card.line()
        if reply == {"ok": "send"}:
            return message
        assert reply["error"] in ("cluster unavailable", "not connected"), reply
        assert time.monotonic() < deadline, f"{to} still unreachable: {reply}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("end", ["kill", "stop"])
async def test_a_node_that_ends_takes_its_cards_with_it(
    cluster: Cluster, end: str
) -> None:
    one, two, three = cluster.start(3)
    await cluster.card(two, "B")
    c = await cluster.card(three, "C")
    a = await cluster.card(one, "A")
    watcher = await cluster.card(one, "W", proto=2)
    await watch_until_online(watcher, ["B", "C"])

    if end == "kill":
        two.kill()
    else:
        two.stop()

    await a.request(send("B", "are you there"))
    await a.expect(b"B not connect")
    await a.request(send("C", "you are"))
    await a.expect(b"send_success")
    await c.expect(b"you are")
    assert await watcher.line(within=NODE_GONE) == presence("offline", "B")
    await watcher.request({"action": "who", "names": ["B", "C"]})
    assert await watcher.line() == {"ok": "who", "online": ["C"]}


async def test_presence_spans_nodes(cluster: Cluster) -> None:
    one, two = cluster.start(2)
    w = await cluster.card(one, "W", proto=2)
    await w.request({"action": "watch", "names": ["B", "C"], "id": 1})
    assert await w.line() == {"ok": "watch", "online": [], "id": 1}

    c = await cluster.card(two, "C")
    assert await w.line() == presence("online", "C")
    old_b = await cluster.card(one, "B")
    assert await w.line() == presence("online", "B")
    await w.request({"action": "who", "names": ["B", "Z", "C"], "id": 2})
    assert await w.line() == {"ok": "who", "online": ["B", "C"], "id": 2}

    # B moves to node 2: it stays online, so W hears nothing about it.
    b = await cluster.card(two, "B")
    assert await old_b.closed()
    await w.request({"action": "who", "names": ["B"], "id": 3})
    assert await w.line() == {"ok": "who", "online": ["B"], "id": 3}

    await w.request({"action": "unwatch", "names": ["C"], "id": 4})
    assert await w.line() == {"ok": "unwatch", "id": 4}
    await c.close()
    await offline_everywhere(w, "C")
    # Node 2 announces B leaving after C: an event about C would come first.
    await b.close()
    assert await w.line() == presence("offline", "B")


async def offline_everywhere(card: Card, name: str) -> None:
    """Poll with ``who`` from ``card`` until no node holds ``name``."""
    deadline = time.monotonic() + PROMPT
    while True:
        await card.request({"action": "who", "names": [name]})
        reply = await card.line()
        if reply == {"ok": "who", "online": []}:
            return
        assert reply == {"ok": "who", "online": [name]}, reply
        assert time.monotonic() < deadline, f"{name} is still online"
        await asyncio.sleep(0.05)


def scrape(port: int) -> Samples:
    """Every sample the relay's ``/metrics`` shows, by name and labels."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=PROMPT) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def relay_metric(name: str, **labels: str) -> Sample:
    return name, tuple(sorted(labels.items()))


async def test_metrics_count_local_and_cross_node_traffic(cluster: Cluster) -> None:
    metrics_port = free_port()
    one = cluster.start(1, "--metrics-port", str(metrics_port))[0]
    two = cluster.start(1)[0]
    b = await cluster.card(two, "B")
    w = await cluster.card(one, "W", proto=2)
    await watch_until_online(w, ["B"])
    a = await cluster.card(one, "A")
    c = await cluster.card(one, "C")

    await a.request(send("C", "near") + send("C", "by"))
    await a.expect(b"send_success" * 2)
    await c.expect(b"nearby")
    for message in ("far", "far", "away"):
        await a.request(send("B", message))
        await a.expect(b"send_success")
    await b.expect(b"farfaraway")
    await a.request(send("Z", "nobody"))
    await a.expect(b"Z not connect")
    await a.close()
    await cluster.card(one, "C")
    assert await c.closed()
    d = await cluster.card(one, "D")
    await cluster.card(two, "D")
    assert await d.closed()

    expected: dict[Sample, float | None] = {
        relay_metric("relay_cards_connected"): 2,  # W, the second C
        relay_metric("relay_connects_total"): 5,
        relay_metric("relay_requests_total", kind="connect"): 5,
        relay_metric("relay_requests_total", kind="watch"): 1,
        relay_metric("relay_requests_total", kind="send"): 6,
        relay_metric("relay_messages_relayed_total", route="local"): 2,
        relay_metric("relay_messages_relayed_total", route="cluster"): 3,
        relay_metric("relay_bytes_relayed_total", route="local"): len("nearby"),
        relay_metric("relay_bytes_relayed_total", route="cluster"): len("farfaraway"),
        relay_metric("relay_errors_total", error="not_connected"): 1,
        # A, and the connection that checked the relay was up before the cards.
        relay_metric("relay_disconnects_total", reason="closed"): 2,
        relay_metric("relay_disconnects_total", reason="taken_over"): 1,
        relay_metric("relay_disconnects_total", reason="evicted"): 1,
        relay_metric("relay_cluster_connected"): 1,
        relay_metric("relay_cluster_requests_total", result="delivered"): 3,
        relay_metric("relay_cluster_requests_total", result="no_responders"): 1,
    }
    await until_metrics_show(metrics_port, expected)


async def until_metrics_show(port: int, expected: dict[Sample, float | None]) -> None:
    """Scrape until the samples in ``expected`` have their values (the relay
    counts a disconnect once it notices it); fail showing the difference."""
    deadline = time.monotonic() + PROMPT
    while True:
        samples = scrape(port)
        shown = {key: samples.get(key) for key in expected}
        if shown == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert shown == expected


MODULES = ("nats", "prometheus_client", "relayserver.backplane", "relayserver.metrics")

# Runs in the relay's process: which optional modules it had loaded by its exit.
REPORT_MODULES = f"""
import atexit, sys
atexit.register(lambda: print(
    "loaded:", [name for name in {MODULES!r} if name in sys.modules], flush=True
))
"""


@pytest.mark.parametrize(
    ("options", "loaded"),
    [
        pytest.param((), [], id="plain"),
        pytest.param(
            ("--metrics-port", "0"),
            ["prometheus_client", "relayserver.metrics"],
            id="metrics",
        ),
        pytest.param(
            ("--nats", "{nats}", "--node", "relay-1"),
            ["nats", "relayserver.backplane"],
            id="cluster",
        ),
    ],
)
async def test_the_relay_loads_only_the_optional_clients_it_was_asked_for(
    nats_server: NatsServer,
    tmp_path: Path,
    options: tuple[str, ...],
    loaded: list[str],
) -> None:
    given = [option.format(nats=nats_server.url) for option in options]
    relay = RelayNode(tmp_path, *given, preamble=REPORT_MODULES)
    relay.start()
    try:
        a = await Card.connect(relay.port, "A", proto=2)
        b = await Card.connect(relay.port, "B", proto=2)
        await a.request({"action": "send", "to": "B", "message": "hi"})
        await a.request({"action": "watch", "names": ["B", "C"]})
        assert await a.line() == {"ok": "send"}
        assert await a.line() == {"ok": "watch", "online": ["B"]}
        await a.close()
        await b.close()
    finally:
        relay.stop()

    assert f"loaded: {loaded!r}" in relay.log(), relay.log()
