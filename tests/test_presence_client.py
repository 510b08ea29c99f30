"""The presence watcher: against a real relay on loopback, and relays that misbehave.

The real relay runs in the test's loop (a cluster of two in one test, over a real
nats-server). The misbehaving ones are raw asyncio servers on loopback that answer
the watcher's requests from a script: a relay from before presence, a version 1
relay, and relays that cut their lines into single bytes, mix in heartbeats and
deliveries, or write garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cluster_support import NatsServer, require_nats_server
from hypothesis import given
from hypothesis import strategies as st
from relayclient_raw import RawCard, running_relay

from modembridge.errors import ModemError
from modembridge.presence import (
    Change,
    PresenceDecoder,
    PresenceError,
    PresenceTimeout,
    PresenceUnsupported,
    PresenceWatcher,
    Reply,
    observer_name,
)
from modembridge.relayclient import Heartbeat, RelayClosed, RelayProtocolError
from relayserver.limits import Limits
from relayserver.server import RelayConfig, RelayServer

PROMPT = 10.0
"""How long a test waits for what should take milliseconds."""


@contextlib.asynccontextmanager
async def watching(port: int) -> AsyncIterator[PresenceWatcher]:
    async with PresenceWatcher(("127.0.0.1", port)) as watcher:
        yield watcher


async def card(port: int, name: str) -> RawCard:
    """A version 2 card ``name``, connected."""
    raw = await RawCard.open(port)
    assert (await raw.connect_v2(name))["ok"] == "connect"
    return raw


# ---------------------------------------------------------------------------------
# A real relay


async def test_waits_until_a_card_connects_and_until_it_leaves() -> None:
    async with running_relay() as relay, watching(relay.port) as watcher:
        await watcher.wait_offline("B", within=PROMPT)
        coming = asyncio.create_task(watcher.wait_online("B", within=PROMPT))

        b = await card(relay.port, "B")
        await coming
        assert watcher.is_online("B") is True

        await b.close()
        await watcher.wait_offline("B", within=PROMPT)
        assert watcher.is_online("B") is False


async def test_a_card_online_before_the_watch_is_not_waited_for() -> None:
    async with running_relay() as relay, watching(relay.port) as watcher:
        b = await card(relay.port, "B")

        await watcher.wait_online("B", within=PROMPT)

        assert watcher.is_online("B") is True
        await b.close()


async def test_waits_for_several_cards_at_once() -> None:
    names = [f"card-{number}" for number in range(5)]
    async with running_relay() as relay, watching(relay.port) as watcher:
        waits = asyncio.gather(
            *(watcher.wait_online(name, within=PROMPT) for name in names)
        )
        cards = [await card(relay.port, name) for name in reversed(names)]

        await waits
        assert [watcher.is_online(name) for name in names] == [True] * 5
        for raw in cards:
            await raw.close()


async def test_online_lists_the_cards_connected_in_the_order_asked() -> None:
    async with running_relay() as relay, watching(relay.port) as watcher:
        a, c = await card(relay.port, "A"), await card(relay.port, "C")

        assert await watcher.online(["C", "B", "A"]) == ["C", "A"]
        assert await watcher.online([watcher.name]) == [watcher.name]
        await a.close()
        await c.close()


async def test_a_card_that_does_not_come_is_our_timeout() -> None:
    async with running_relay() as relay, watching(relay.port) as watcher:
        with pytest.raises(PresenceTimeout, match="card B not online") as caught:
            await watcher.wait_online("B", within=0.3)

    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, ModemError)
    assert caught.value.card == "B"


async def test_observers_have_names_of_their_own() -> None:
    async with (
        running_relay() as relay,
        watching(relay.port) as one,
        watching(relay.port) as two,
    ):
        assert one.name != two.name
        assert await one.online([one.name, two.name]) == [one.name, two.name]


async def test_log_lines_name_the_observer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="modembridge.presence")

    async with running_relay() as relay, watching(relay.port) as watcher:
        b = await card(relay.port, "B")
        await watcher.wait_online("B", within=PROMPT)
        await b.close()
        await watcher.wait_offline("B", within=PROMPT)

    lines = [r.getMessage() for r in caplog.records if r.name == "modembridge.presence"]
    assert lines
    assert all(line.startswith(f"observer[{watcher.name}]: ") for line in lines)
    assert any("card B online at the relay after" in line for line in lines)
    assert any("card B offline at the relay after" in line for line in lines)


async def test_the_watcher_keeps_a_relay_with_an_idle_timeout_talking() -> None:
    limits = Limits(idle_timeout=4)
    async with (
        running_relay(heartbeat=0.25, limits=limits) as relay,
        watching(relay.port) as watcher,
    ):
        silent = await card(relay.port, "C")

        # C connected after the observer: had the observer been silent too, the
        # relay would have closed it first.
        await silent.closed_by_relay()
        assert await watcher.online(["C", watcher.name]) == [watcher.name]
        await silent.close()


async def test_a_relay_that_goes_away_ends_every_wait() -> None:
    relay = RelayServer(RelayConfig(host="127.0.0.1", port=0))
    await relay.start()
    async with watching(relay.port) as watcher:
        await watcher.wait_offline("B", within=PROMPT)
        waiting = asyncio.create_task(watcher.wait_online("B", within=PROMPT))

        await relay.close()

        with pytest.raises(RelayClosed, match=watcher.name):
            await waiting
        with pytest.raises(RelayClosed):
            await watcher.online(["B"])
        # B was offline when the relay went: that is no answer any more.
        with pytest.raises(RelayClosed):
            await watcher.wait_offline("B", within=PROMPT)


async def test_an_unreachable_relay_is_our_error() -> None:
    async with running_relay() as relay:
        port = relay.port

    with pytest.raises(
        RelayClosed, match=f"cannot reach the relay at 127.0.0.1:{port}"
    ):
        await PresenceWatcher(("127.0.0.1", port)).open()


async def test_names_no_relay_accepts_are_refused_here() -> None:
    async with running_relay() as relay, watching(relay.port) as watcher:
        for names in ([], [""], ["x" * 257], ["B"] * 1001):
            with pytest.raises(ValueError, match="card name"):
                await watcher.online(names)
        with pytest.raises(TypeError, match="list of card names"):
            await watcher.online("B")


@pytest.mark.nats
async def test_on_a_cluster_a_card_on_another_node_is_seen(tmp_path: Path) -> None:
    nats_server = NatsServer(require_nats_server(), tmp_path)
    nats_server.start()
    try:
        async with (
            running_relay(nats=nats_server.url, node="relay-1") as one,
            running_relay(nats=nats_server.url, node="relay-2") as two,
            watching(one.port) as watcher,
        ):
            await watcher.wait_offline("B", within=PROMPT)

            b = await card(two.port, "B")
            await watcher.wait_online("B", within=PROMPT)
            assert await watcher.online(["B"]) == ["B"]

            await b.close()
            await watcher.wait_offline("B", within=PROMPT)
    finally:
        nats_server.stop()


# ---------------------------------------------------------------------------------
# Scripted relays

Script = Callable[[dict[str, Any]], list[bytes]]
"""What a scripted relay writes in answer to one request, piece by piece."""


def connect_ok(request: dict[str, Any]) -> list[bytes]:
    reply = {"ok": "connect", "card": request["from"], "proto": 2, "heartbeat": 30.0}
    return [json.dumps(reply).encode() + b"\n"]


def wrong_format(request: dict[str, Any]) -> list[bytes]:
    """A version 2 relay from before presence: wrong format to who and watch."""
    if request["action"] == "connect":
        return connect_ok(request)
    detail = f"unknown action {request['action']!r}"
    reply = {"error": "wrong format", "detail": detail, "id": request["id"]}
    return [json.dumps(reply).encode() + b"\n"]


def in_bytes(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


class ScriptedRelay:
    """A raw TCP server on loopback answering each request with what a script says."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return (str(host), int(port))

    async def __aenter__(self) -> ScriptedRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            async for request in requests(reader):
                self.requests.append(request)
                for piece in self.script(request):
                    writer.write(piece)
                    await writer.drain()
        writer.close()


async def requests(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects a card writes, however its writes are cut."""
    decoder = json.JSONDecoder()
    text = ""
    while data := await reader.read(4096):
        text += data.decode()
        while text := text.lstrip():
            try:
                request, end = decoder.raw_decode(text)
            except ValueError:
                break
            text = text[end:]
            yield request


async def test_a_relay_from_before_presence_is_said_to_lack_it() -> None:
    async with (
        ScriptedRelay(wrong_format) as relay,
        PresenceWatcher(relay.address) as watcher,
    ):
        with pytest.raises(PresenceUnsupported, match="does not support presence"):
            await watcher.wait_online("B", within=PROMPT)
        with pytest.raises(PresenceUnsupported, match="wrong format to who"):
            await watcher.online(["B"])

    assert [r["action"] for r in relay.requests] == ["connect", "watch", "who"]


async def test_a_version_1_relay_is_said_to_lack_presence() -> None:
    def version_1(request: dict[str, Any]) -> list[bytes]:
        return [b"heartbeat", b"connect_success"]

    async with ScriptedRelay(version_1) as relay:
        with pytest.raises(PresenceUnsupported, match="protocol version 1 only"):
            await PresenceWatcher(relay.address).open()


def chatty(request: dict[str, Any]) -> list[bytes]:
    """Replies cut into single bytes, with heartbeats, a delivery and blank lines."""
    if request["action"] == "connect":
        return in_bytes(b"heartbeat") + connect_ok(request)
    if request["action"] == "ping":
        return [b'{"ok":"ping","id":%d}\n' % request["id"]]
    names = request["names"]
    reply = {"ok": request["action"], "online": [], "id": request["id"]}
    lines = json.dumps(reply).encode() + b"\n"
    lines += b'{"heartbeat":1764790000}\n\r\n{"from":"X","message":"hi"}\n'
    lines += b'{"presence":"online","card":"nobody asked"}\n'
    if request["action"] == "watch":
        lines += b'{"presence":"online","card":%s}\n' % json.dumps(names[0]).encode()
    return in_bytes(lines)


async def test_replies_cut_anywhere_among_heartbeats_are_understood() -> None:
    async with (
        ScriptedRelay(chatty) as relay,
        PresenceWatcher(relay.address) as watcher,
    ):
        assert await watcher.online(["B"]) == []
        await watcher.wait_online("B", within=PROMPT)

        assert watcher.is_online("B") is True
        assert watcher.is_online("nobody asked") is None


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        (b"<html>502 Bad Gateway</html>\n", "not JSON"),
        (b'["online"]\n', "not a JSON object"),
        (b'{"presence":"maybe","card":"B"}\n', "neither online nor offline"),
        (b'{"ok":"watch","online":"B","id":2}\n', "not a list of card names"),
        (b'{"ok":"watch","online":[],"id":7}\n', "out of order"),
        (b'{"ok":"who","online":[],"id":1}\n', "answers watch"),
        (b'{"heartbeat":' + b"9" * 5000 + b"}\n", "not JSON"),
    ],
)
async def test_garbage_from_the_relay_is_our_protocol_error(
    garbage: bytes, error: str
) -> None:
    def broken(request: dict[str, Any]) -> list[bytes]:
        if request["action"] == "connect":
            return connect_ok(request)
        return [garbage]

    async with (
        ScriptedRelay(broken) as relay,
        PresenceWatcher(relay.address) as watcher,
    ):
        with pytest.raises(RelayProtocolError, match=error):
            await watcher.wait_online("B", within=PROMPT)
        # The watcher cannot trust what it knows any more: it says so again.
        with pytest.raises(RelayProtocolError, match=error):
            await watcher.online(["B"])


async def test_a_refusal_says_what_the_relay_said() -> None:
    def crowded(request: dict[str, Any]) -> list[bytes]:
        if request["action"] == "connect":
            return connect_ok(request)
        reply = {"error": "too many names", "detail": "1000 at most", "id": 1}
        return [json.dumps(reply).encode() + b"\n"]

    async with (
        ScriptedRelay(crowded) as relay,
        PresenceWatcher(relay.address) as watcher,
    ):
        with pytest.raises(PresenceError, match=r"too many names \(1000 at most\)"):
            await watcher.wait_online("B", within=PROMPT)


def test_observer_names_differ_and_name_the_process() -> None:
    first, second = observer_name(), observer_name("hil-ab12-observer")

    assert first != second
    assert first.startswith("hil-observer-")
    assert second.startswith("hil-ab12-observer-")


# ---------------------------------------------------------------------------------
# The decoder on its own

TRANSCRIPT = (
    b'{"ok":"watch","online":["B"],"id":1}\n'
    b'{"heartbeat":1764790000}\n'
    b'{"presence":"offline","card":"B"}\n'
    b'{"from":"X","message":"hi"}\n'
    b'{"error":"cluster unavailable","detail":"NATS away","id":2}\n'
    b'{"presence":"online","card":"B\\u00e9"}\n'
)
ITEMS = [
    Reply("watch", None, 1, ("B",)),
    Heartbeat(1764790000.0),
    Change("B", online=False),
    Reply(None, "cluster unavailable", 2, (), "NATS away"),
    Change("B\u00e9", online=True),
]


def fed_in_pieces(decoder: PresenceDecoder, data: bytes, cuts: list[int]) -> list[Any]:
    items: list[Any] = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        items += decoder.feed(data[start:cut])
        start = cut
    return items + decoder.feed(data[start:])


@given(st.lists(st.integers(0, len(TRANSCRIPT)), max_size=12))
def test_a_transcript_cut_anywhere_decodes_the_same(cuts: list[int]) -> None:
    assert fed_in_pieces(PresenceDecoder(), TRANSCRIPT, cuts) == ITEMS


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_any_bytes_give_items_or_our_error_only(data: bytes, cuts: list[int]) -> None:
    decoder = PresenceDecoder(max_line=64)

    items = fed_in_pieces(decoder, data, cuts)

    kinds = Reply | Change | Heartbeat | RelayProtocolError
    assert all(isinstance(item, kinds) for item in items)
    # Once the line it is in ends, the decoder understands the relay again.
    decoder.feed(b"\n")
    assert decoder.feed(TRANSCRIPT.split(b"\n")[0] + b"\n") == [ITEMS[0]]


def test_an_overlong_line_is_one_error_and_skipped() -> None:
    decoder = PresenceDecoder(max_line=64)

    items = decoder.feed(b'{"presence":"online","card":"' + b"x" * 100)
    items += decoder.feed(b"y" * 100)
    items += decoder.feed(b'"}\n{"presence":"offline","card":"B"}\n')

    assert len(items) == 2
    assert isinstance(items[0], RelayProtocolError)
    assert "longer than 64 bytes" in str(items[0])
    assert items[1] == Change("B", online=False)
