"""The NATS backplane between relay nodes, in one process, against a real nats-server.

Each node here is a backplane with a small card table on the relay's side of the
seam; the relay processes themselves are exercised in ``test_cluster_nodes.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import nats
import pytest
from cluster_support import NatsServer, free_port, require_nats_server

from relayserver.backplane import (
    Backplane,
    BackplaneConfig,
    Delivery,
    shown_url,
    subject_token,
)
from relayserver.presence import ClusterUnavailable, Presence
from relayserver.requests import Send

pytestmark = pytest.mark.nats

POLL = 0.02


class Watcher:
    """A card watching names: keeps the changes it was told about."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, bool]] = []
        self.changed = asyncio.Event()

    def presence_changed(self, name: str, online: bool) -> None:
        self.changes.append((name, online))
        self.changed.set()

    async def told(self, change: tuple[str, bool], seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while change not in self.changes:
                self.changed.clear()
                await self.changed.wait()


class Node:
    """One relay node as the backplane sees it: its cards and what they received."""

    def __init__(self, name: str, url: str) -> None:
        self.held: set[str] = set()
        self.broken: set[str] = set()
        self.received: dict[str, list[tuple[str | None, bytes, bool]]] = {}
        self.evicted: list[str] = []
        self.presence = Presence(name, self.held.__contains__)
        config = BackplaneConfig(url=url, node=name, request_timeout=1.0)
        self.backplane = Backplane(config, self, self.presence)

    def connect(self, card: str) -> None:
        self.held.add(card)
        self.presence.card_online(card)
        self.backplane.card_connected(card)

    def release(self, card: str) -> None:
        self.held.discard(card)
        self.presence.card_offline(card)
        self.backplane.card_released(card)

    def deliver(
        self, target: str, sender: str | None, payload: bytes, binary: bool
    ) -> bool:
        if target not in self.held or target in self.broken:
            return False
        self.received.setdefault(target, []).append((sender, payload, binary))
        return True

    def deliver_all(
        self, target: str, sender: str | None, messages: Sequence[tuple[bytes, bool]]
    ) -> list[bool]:
        return [self.deliver(target, sender, *message) for message in messages]

    def evict(self, name: str) -> None:
        # As the relay does: close the session, which releases the name.
        self.evicted.append(name)
        self.release(name)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Wait until ``check`` holds, polling; fail after ``seconds``."""
    for _attempt in range(int(seconds / POLL)):
        if await check():
            return
        await asyncio.sleep(POLL)
    pytest.fail(f"still not true after {seconds} s")


async def reachable(node: Node, card: str, holder: str | None) -> None:
    """Wait until ``node`` sees ``card`` held by ``holder`` (``None``: by nobody)."""

    async def check() -> bool:
        try:
            return (await node.backplane.probe([card]))[card] == holder
        except ClusterUnavailable:
            return False

    await eventually(check)


@pytest.fixture
async def nodes(nats_server: NatsServer) -> AsyncIterator[list[Node]]:
    started = [Node(name, nats_server.url) for name in ("relay-1", "relay-2")]
    for node in started:
        await node.backplane.start()
        assert node.backplane.connected
    yield started
    for node in started:
        await node.backplane.close()


async def test_a_send_reaches_a_card_held_by_another_node(nodes: list[Node]) -> None:
    one, two = nodes
    two.connect("B")
    await reachable(one, "B", "relay-2")

    delivery = await one.backplane.send("B", "A", b"hi", binary=False)

    assert delivery is Delivery.DELIVERED
    assert two.received["B"] == [("A", b"hi", False)]


async def test_binary_payloads_and_anonymous_senders_cross_intact(
    nodes: list[Node],
) -> None:
    one, two = nodes
    two.connect("B")
    await reachable(one, "B", "relay-2")
    frame = bytes(range(256))

    assert await one.backplane.send("B", None, frame, binary=True) is Delivery.DELIVERED

    assert two.received["B"] == [(None, frame, True)]


async def test_the_ack_is_no_when_the_holder_could_not_write(nodes: list[Node]) -> None:
    one, two = nodes
    two.connect("B")
    await reachable(one, "B", "relay-2")
    two.broken.add("B")

    assert await one.backplane.send("B", "A", b"hi") is Delivery.NOT_CONNECTED


async def test_many_messages_cross_in_one_request_in_order(
    nodes: list[Node],
) -> None:
    one, two = nodes
    two.connect("B")
    await reachable(one, "B", "relay-2")
    messages = [(f"m{index}".encode(), index % 2 == 0) for index in range(100)]

    deliveries = await one.backplane.send_many("B", "A", messages)

    assert deliveries == [Delivery.DELIVERED] * 100
    assert two.received["B"] == [("A", body, binary) for body, binary in messages]


async def test_a_message_too_large_for_nats_is_refused_before_sending(
    nodes: list[Node],
) -> None:
    one, two = nodes
    two.connect("B")
    await reachable(one, "B", "relay-2")

    huge = b"x" * (2 * 1024 * 1024)

    assert await one.backplane.send("B", "A", huge) is Delivery.TOO_LARGE
    assert "B" not in two.received


async def test_a_card_nobody_holds_is_not_connected_at_once(nodes: list[Node]) -> None:
    one, _ = nodes
    started = time.monotonic()

    assert await one.backplane.send("nobody", "A", b"hi") is Delivery.NOT_CONNECTED

    # NATS reports "no responders" itself: no waiting for the request timeout.
    assert time.monotonic() - started < one.backplane.config.request_timeout


async def test_a_released_card_becomes_not_connected(nodes: list[Node]) -> None:
    one, two = nodes
    two.connect("B")
    await reachable(one, "B", "relay-2")

    two.release("B")
    await reachable(one, "B", None)

    assert await one.backplane.send("B", "A", b"hi") is Delivery.NOT_CONNECTED


async def test_a_connect_on_another_node_evicts_the_older_session(
    nodes: list[Node],
) -> None:
    one, two = nodes
    one.connect("B")
    await reachable(two, "B", "relay-1")

    two.connect("B")
    await reachable(one, "B", "relay-2")

    # Both nodes answer probes until node 1 has heard of the newer session.
    await eventually(lambda: _true_when(one.evicted == ["B"]))
    assert two.evicted == []
    assert await one.backplane.send("B", "A", b"moved") is Delivery.DELIVERED
    assert two.received["B"] == [("A", b"moved", False)]


async def test_card_names_that_are_not_subject_tokens_still_route(
    nodes: list[Node],
) -> None:
    one, two = nodes
    names = ["a.b", "a b", "*", ">", "carte-é", "x" * 256, "%41", "A"]
    for name in names:
        two.connect(name)
    for name in names:
        await reachable(one, name, "relay-2")

    for name in names:
        assert await one.backplane.send(name, "A", name.encode()) is Delivery.DELIVERED

    assert {name: two.received[name][0][1] for name in names} == {
        name: name.encode() for name in names
    }
    assert len({subject_token(name) for name in names}) == len(names)


async def test_presence_follows_cards_across_nodes(nodes: list[Node]) -> None:
    one, two = nodes
    watcher = Watcher()
    assert await one.presence.watch(watcher, ["B", "C"]) == []

    two.connect("B")
    await watcher.told(("B", True))
    assert await one.presence.who(["B", "C"]) == ["B"]

    one.connect("B")
    await reachable(two, "B", "relay-1")
    one.release("B")
    await watcher.told(("B", False))

    # Moving to another node is not going offline: one online, one offline.
    assert watcher.changes == [("B", True), ("B", False)]


async def test_a_node_that_leaves_takes_its_cards_offline(nodes: list[Node]) -> None:
    one, two = nodes
    watcher = Watcher()
    two.connect("B")
    await reachable(one, "B", "relay-2")
    assert await one.presence.watch(watcher, ["B"]) == ["B"]

    await two.backplane.close()

    await watcher.told(("B", False))
    assert await one.backplane.send("B", "A", b"hi") is Delivery.NOT_CONNECTED


async def test_nats_going_away_fails_cross_node_sends_until_it_returns(
    nats_server: NatsServer, nodes: list[Node]
) -> None:
    one, two = nodes
    two.connect("B")
    await reachable(one, "B", "relay-2")

    nats_server.stop()
    await eventually(lambda: _false_when(one.backplane.connected))
    started = time.monotonic()
    assert await one.backplane.send("B", "A", b"lost") is Delivery.UNAVAILABLE
    assert time.monotonic() - started < 0.5
    with pytest.raises(ClusterUnavailable):
        await one.presence.who(["B"])

    nats_server.start()
    await reachable(one, "B", "relay-2")
    assert await one.backplane.send("B", "A", b"back") is Delivery.DELIVERED
    assert two.received["B"] == [("A", b"back", False)]


async def test_a_card_that_connects_while_nats_is_away_is_announced_after(
    nats_server: NatsServer, nodes: list[Node]
) -> None:
    one, two = nodes
    one.connect("B")
    await reachable(two, "B", "relay-1")
    nats_server.stop()
    await eventually(lambda: _false_when(two.backplane.connected))

    # Both nodes now hold a session of B; the newer one wins once NATS is back.
    two.connect("B")
    nats_server.start()
    await reachable(one, "B", "relay-2")

    # Both nodes answer probes until node 1 has heard of the newer session.
    await eventually(lambda: _true_when(one.evicted == ["B"]))
    assert await one.backplane.send("B", "A", b"hi") is Delivery.DELIVERED


async def test_a_node_starts_without_nats_and_joins_when_it_appears(
    nats_server: NatsServer,
) -> None:
    nats_server.stop()
    node = Node("late", nats_server.url)
    started = time.monotonic()
    await node.backplane.start()
    try:
        assert time.monotonic() - started < node.backplane.config.connect_timeout + 1
        assert not node.backplane.connected
        node.connect("B")
        assert await node.backplane.send("C", "B", b"x") is Delivery.UNAVAILABLE

        nats_server.start()
        await eventually(lambda: _true_when(node.backplane.connected))
        other = Node("other", nats_server.url)
        await other.backplane.start()
        try:
            await reachable(other, "B", "late")
        finally:
            await other.backplane.close()
    finally:
        await node.backplane.close()


async def test_garbage_on_the_cluster_subjects_is_dropped(nodes: list[Node]) -> None:
    one, two = nodes
    two.connect("B")
    await reachable(one, "B", "relay-2")
    client = await nats.connect(one.backplane.config.url)
    try:
        for kind in ("online", "offline", "node", "other"):
            for junk in (b"", b"{", b"[]", b'{"node": 1}', b"\xff\xfe"):
                await client.publish(f"relay.event.{kind}", junk)
        for junk in (b"", b"S", b"S\x00\xff\xff\xff\xfe", b"Q", b"\x00" * 9):
            reply = await client.request("relay.card.B", junk, timeout=1)
            assert reply.data == b"-"
        await client.flush()
    finally:
        await client.close()

    assert await one.backplane.send("B", "A", b"still fine") is Delivery.DELIVERED


async def _false_when(value: bool) -> bool:
    return not value


async def _true_when(value: bool) -> bool:
    return value


async def test_credentials_in_the_nats_url_work_and_stay_out_of_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = NatsServer(
        require_nats_server(), tmp_path, "--user", "relay", "--pass", "s3cret"
    )
    server.start()
    url = f"nats://relay:s3cret@127.0.0.1:{server.port}"
    one, two = Node("relay-1", url), Node("relay-2", url)
    try:
        caplog.set_level(logging.DEBUG)
        await one.backplane.start()
        await two.backplane.start()
        two.connect("B")
        await reachable(one, "B", "relay-2")

        assert await one.backplane.send("B", "A", b"hi") is Delivery.DELIVERED
        assert "s3cret" not in caplog.text
        assert f"127.0.0.1:{server.port}" in caplog.text
    finally:
        await one.backplane.close()
        await two.backplane.close()
        server.stop()


async def test_a_list_of_nats_servers_is_tried_in_turn(
    nats_server: NatsServer,
) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    node = Node("listed", f"{dead}, {nats_server.url}")
    try:
        await node.backplane.start()
        await eventually(lambda: _true_when(node.backplane.connected))
    finally:
        await node.backplane.close()


def test_shown_urls_hide_user_names_and_passwords() -> None:
    shown = shown_url("nats://relay:pw@10.0.0.5:4222, tls://10.0.0.6:4222")

    assert shown == "nats://10.0.0.5:4222,tls://10.0.0.6:4222"


def test_a_missing_nats_server_fails_where_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("MODEMBRIDGE_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="nats-server is not installed"):
        require_nats_server()

    monkeypatch.delenv("MODEMBRIDGE_REQUIRE_SERVICES")
    with pytest.raises(pytest.skip.Exception, match="nats-server is not installed"):
        require_nats_server()


async def test_a_node_whose_clock_is_far_off_is_named_once(
    nodes: list[Node], caplog: pytest.LogCaptureFixture
) -> None:
    one, _two = nodes
    client = await nats.connect(one.backplane.config.url)
    far: dict[str, object] = {"node": "far", "instance": "x"}
    try:
        for _beacon in range(3):
            alive = {**far, "state": "alive", "time": time.time() - 5}
            await client.publish("relay.event.node", json.dumps(alive).encode())
        # Events arrive in order: once the goodbye is heard, so were the beacons.
        bye = {**far, "state": "bye"}
        await client.publish("relay.event.node", json.dumps(bye).encode())
        await client.flush()
        await eventually(lambda: _true_when("left the cluster" in caplog.text))
    finally:
        await client.close()

    said = [record.getMessage() for record in caplog.records]
    warnings = [
        line for line in said if line.startswith("cluster[relay-1]: node far's")
    ]
    assert warnings == [
        "cluster[relay-1]: node far's clock is 5.0 s behind this node's; keep the "
        "nodes' clocks in step (NTP)"
    ]


async def test_giving_up_on_a_batch_does_not_break_the_one_before(
    tmp_path: Path,
) -> None:
    # A small payload limit makes the first batch cross in many requests; the
    # second batch to the same card waits for its turn, and is given up on.
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 2048\n")
    server = NatsServer(require_nats_server(), tmp_path, "-c", str(config))
    server.start()
    one, two = Node("relay-1", server.url), Node("relay-2", server.url)
    try:
        for node in (one, two):
            await node.backplane.start()
        two.connect("T")
        await reachable(one, "T", "relay-2")
        big = [Send("T", b"%04d" % i + b"x" * 500) for i in range(200)]

        first = asyncio.create_task(one.backplane.route(None, big))
        await asyncio.sleep(0)
        second = asyncio.create_task(one.backplane.route(None, [Send("T", b"late")]))
        await eventually(lambda: _true_when(bool(two.received.get("T"))))
        second.cancel()

        assert await first == [Delivery.DELIVERED] * len(big)
        assert [payload for _, payload, _ in two.received["T"]] == [
            send.payload for send in big
        ]
    finally:
        for node in (one, two):
            await node.backplane.close()
        server.stop()
