"""Presence on one relay, over real sockets: who is online, and watching names."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import pytest
from relayclient_raw import CardEvents, RawCard, open_cards, running_relay

from relayserver.presence import MAX_NAMES
from relayserver.requests import MAX_NAME_BYTES


async def v2_card(port: int, name: str) -> RawCard:
    """A card connected under ``name`` with protocol version 2."""
    card = await RawCard.open(port)
    assert (await card.connect_v2(name))["ok"] == "connect"
    return card


def presence_request(action: str, names: object, **fields: Any) -> bytes:
    return json.dumps({"action": action, "names": names, **fields}).encode()


async def ask(card: RawCard, action: str, names: object, **fields: Any) -> Any:
    """Send a presence request and return the relay's answer."""
    await card.send(presence_request(action, names, **fields))
    return await card.line()


async def told_nothing_more(card: RawCard) -> None:
    """The relay wrote ``card`` nothing it has not read yet: a ping's answer is
    the next line."""
    await card.send(b'{"action":"ping","id":"quiet?"}')
    assert await card.line() == {"ok": "ping", "id": "quiet?"}


def online(card: str) -> dict[str, str]:
    return {"presence": "online", "card": card}


def offline(card: str) -> dict[str, str]:
    return {"presence": "offline", "card": card}


async def test_who_and_watch_answer_those_online_in_the_order_asked() -> None:
    async with running_relay() as relay:
        asker, a, d = [await v2_card(relay.port, n) for n in ("W", "A", "D")]
        (old,) = await open_cards(relay.port, 1)
        await old.connect("E")

        answer = await ask(asker, "who", ["D", "B", "A", "E", "W"], id=1)

        # Version 1 cards are online too; only asking takes version 2.
        assert answer == {"ok": "who", "online": ["D", "A", "E", "W"], "id": 1}
        assert await ask(asker, "who", ["B"], id="q") == {
            "ok": "who",
            "online": [],
            "id": "q",
        }
        assert await ask(asker, "who", ["A"]) == {"ok": "who", "online": ["A"]}
        watched = await ask(asker, "watch", ["E", "B", "D"])
        assert watched == {"ok": "watch", "online": ["E", "D"]}
        for card in (asker, a, d, old):
            await card.close()


async def test_watch_answers_those_online_then_tells_each_change_once() -> None:
    async with running_relay() as relay:
        events = CardEvents(relay)
        watcher, b = await v2_card(relay.port, "W"), await v2_card(relay.port, "B")

        answer = await ask(watcher, "watch", ["B", "C"], id=2)
        assert answer == {"ok": "watch", "online": ["B"], "id": 2}

        c = await v2_card(relay.port, "C")
        assert await watcher.line() == online("C")
        # Connecting again under its own name on the same connection changes nothing.
        assert (await c.connect_v2("C"))["ok"] == "connect"
        await b.close()
        await events.wait_for("disconnect", "B")
        assert await watcher.line() == offline("B")
        await told_nothing_more(watcher)

        await c.close()
        await events.wait_for("disconnect", "C")
        assert await watcher.line() == offline("C")
        b = await v2_card(relay.port, "B")
        assert await watcher.line() == online("B")
        await told_nothing_more(watcher)
        await watcher.close()
        await b.close()


async def test_a_change_racing_the_watch_is_told_once_and_after_the_reply() -> None:
    rng = random.Random(7)
    async with running_relay() as relay:
        watcher = await v2_card(relay.port, "W")
        for round_ in range(20):
            name = f"racer{round_}"
            card = await RawCard.open(relay.port)
            watch = presence_request("watch", [name], id=round_)
            connect = json.dumps({"action": "connect", "from": name, "proto": 2})
            writes = [(watcher, watch), (card, connect.encode())]
            rng.shuffle(writes)
            for sender, data in writes:
                sender.writer.write(data)
                # Let the relay get a few steps further, or none, before the other.
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
            await watcher.send(b"")
            await card.send(b"")

            answer = await watcher.line()
            assert answer["ok"] == "watch"
            assert answer["id"] == round_
            if answer["online"] == []:
                assert await watcher.line() == online(name)
            else:
                assert answer["online"] == [name]
            await told_nothing_more(watcher)
            assert (await card.line())["ok"] == "connect"
            await card.close()
            assert await watcher.line() == offline(name)
        await watcher.close()


async def test_a_card_taking_its_own_name_over_stays_online() -> None:
    async with running_relay() as relay:
        events = CardEvents(relay)
        watcher, first = await v2_card(relay.port, "W"), await v2_card(relay.port, "B")
        assert await ask(watcher, "watch", ["B"]) == {"ok": "watch", "online": ["B"]}

        second = await v2_card(relay.port, "B")
        # The relay has forgotten the older connection once the card sees it closed.
        assert await first.closed_by_relay() == b""
        await told_nothing_more(watcher)

        await second.close()
        await events.wait_for("disconnect", "B")
        assert await watcher.line() == offline("B")
        await told_nothing_more(watcher)
        for card in (watcher, first):
            await card.close()


async def test_unwatch_stops_the_changes_for_that_card_only() -> None:
    async with running_relay() as relay:
        events = CardEvents(relay)
        watcher, other = await v2_card(relay.port, "W"), await v2_card(relay.port, "V")
        assert (await ask(watcher, "watch", ["B", "C"]))["online"] == []
        assert (await ask(other, "watch", ["B"]))["online"] == []

        assert await ask(watcher, "unwatch", ["B", "never"], id=3) == {
            "ok": "unwatch",
            "id": 3,
        }
        b, c = await v2_card(relay.port, "B"), await v2_card(relay.port, "C")

        assert await other.line() == online("B")
        assert await watcher.line() == online("C")
        await told_nothing_more(watcher)
        assert await ask(watcher, "unwatch", ["C"]) == {"ok": "unwatch"}
        await c.close()
        await events.wait_for("disconnect", "C")
        await told_nothing_more(watcher)
        for card in (watcher, other, b):
            await card.close()


async def test_a_watcher_that_leaves_is_forgotten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_relay() as relay:
        events = CardEvents(relay)
        watcher, other = await v2_card(relay.port, "W"), await v2_card(relay.port, "V")
        await ask(watcher, "watch", ["B", "C"])
        await ask(other, "watch", ["C"])

        await watcher.close()
        await events.wait_for("disconnect", "W")

        assert relay.presence.watched() == ["C"]
        b, c = await v2_card(relay.port, "B"), await v2_card(relay.port, "C")
        await b.close()
        await events.wait_for("disconnect", "B")
        assert await other.line() == online("C")
        await told_nothing_more(other)
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        for card in (other, c):
            await card.close()


async def test_a_watcher_whose_name_is_taken_over_is_forgotten() -> None:
    async with running_relay() as relay:
        events = CardEvents(relay)
        first = await v2_card(relay.port, "W")
        await ask(first, "watch", ["B"])

        second = await v2_card(relay.port, "W")
        assert await first.closed_by_relay() == b""

        assert relay.presence.watched() == []
        b = await v2_card(relay.port, "B")
        await told_nothing_more(second)
        await b.close()
        await events.wait_for("disconnect", "B")
        await told_nothing_more(second)
        for card in (first, second):
            await card.close()


async def test_too_many_names_are_refused_and_the_card_goes_on() -> None:
    async with running_relay() as relay:
        watcher = await v2_card(relay.port, "W")
        names = [f"card{i}" for i in range(MAX_NAMES + 1)]

        refused = await ask(watcher, "who", names, id=4)
        assert refused["error"] == "too many names"
        assert refused["id"] == 4
        assert str(MAX_NAMES) in refused["detail"]
        refused = await ask(watcher, "watch", names, id=5)
        assert refused["error"] == "too many names"
        assert refused["id"] == 5
        refused = await ask(watcher, "unwatch", names, id=9)
        assert refused["error"] == "too many names"
        assert refused["id"] == 9

        full = await ask(watcher, "watch", names[:MAX_NAMES], id=6)
        assert full == {"ok": "watch", "online": [], "id": 6}
        # Watching a name again costs nothing; one more name is too many.
        again = await ask(watcher, "watch", names[:2], id=7)
        assert again == {"ok": "watch", "online": [], "id": 7}
        refused = await ask(watcher, "watch", names[MAX_NAMES:], id=8)
        assert refused["error"] == "too many names"
        assert refused["id"] == 8
        assert str(MAX_NAMES) in refused["detail"]
        # The refused name is not watched, the others still are.
        card = await v2_card(relay.port, names[MAX_NAMES])
        first = await v2_card(relay.port, names[0])
        assert await watcher.line() == online(names[0])
        await told_nothing_more(watcher)
        for each in (watcher, card, first):
            await each.close()


BAD_NAMES: list[object] = [
    "B",
    [],
    ["B", 7],
    ["B", None],
    ["B", ""],
    ["x" * (MAX_NAME_BYTES + 1)],
    {"B": True},
]


@pytest.mark.parametrize("action", ["who", "watch", "unwatch"])
@pytest.mark.parametrize("names", BAD_NAMES, ids=repr)
async def test_a_bad_list_of_names_is_wrong_format(action: str, names: object) -> None:
    async with running_relay() as relay:
        watcher = await v2_card(relay.port, "W")

        refused = await ask(watcher, action, names, id=9)

        assert refused["error"] == "wrong format"
        assert refused["id"] == 9
        assert isinstance(refused["detail"], str)
        assert "names" in refused["detail"]
        assert relay.presence.watched() == []
        await told_nothing_more(watcher)
        await watcher.close()


async def test_names_missing_and_names_at_the_longest_allowed() -> None:
    async with running_relay() as relay:
        watcher = await v2_card(relay.port, "W")
        await watcher.send(b'{"action":"who","id":10}')
        refused = await watcher.line()
        assert refused["error"] == "wrong format"
        assert refused["id"] == 10
        assert "names" in refused["detail"]

        longest = "x" * MAX_NAME_BYTES
        assert await ask(watcher, "who", [longest]) == {"ok": "who", "online": []}
        await watcher.close()


@pytest.mark.parametrize("action", ["who", "watch", "unwatch"])
async def test_a_version_1_connection_gets_wrong_format_and_goes_on(
    action: str,
) -> None:
    async with running_relay() as relay:
        old, stranger, b = await open_cards(relay.port, 3)
        await old.connect("A")
        await b.connect("B")

        await old.request(presence_request(action, ["B"], id=1), b"wrong format")
        # So does a connection that never connected, which speaks version 1 too.
        await stranger.request(presence_request(action, ["B"]), b"wrong format")

        assert relay.presence.watched() == []
        await old.request(b"{'action':'ping'}", b"pong")
        await old.request(b"{'action':'send','to':'B','message':'hi'}", b"send_success")
        await b.expect(b"hi")
        for card in (old, stranger, b):
            await card.close()


async def test_a_card_back_on_version_1_hears_no_json() -> None:
    async with running_relay() as relay:
        events = CardEvents(relay)
        (card,) = await open_cards(relay.port, 1)
        await card.connect_v2("W")
        assert (await ask(card, "watch", ["B"]))["online"] == []
        await card.connect("W")

        b = await v2_card(relay.port, "B")

        # Presence lines are version 2: a version 1 card reads only its own words.
        await card.send(b"{'action':'ping'}")
        assert await asyncio.wait_for(card.reader.readexactly(4), 10) == b"pong"
        await card.close()
        await events.wait_for("disconnect", "W")
        assert relay.presence.watched() == []
        await b.close()


async def test_requests_behind_a_who_in_one_write_are_answered_in_order() -> None:
    async with running_relay() as relay:
        asker, b = await v2_card(relay.port, "A"), await v2_card(relay.port, "B")

        await asker.send(
            presence_request("who", ["B", "C"], id=1)
            + b'{"action":"ping","id":2}'
            + b'{"action":"send","to":"B","message":"hi","id":3}'
            + presence_request("watch", ["C"], id=4)
            + b"garbage\n"
            + presence_request("unwatch", ["C"], id="5")
            + b'{"action":"send","to":"C","message":"x","id":6}'
        )

        answers = [await asker.line() for _ in range(7)]
        assert answers[4].pop("detail")
        assert answers == [
            {"ok": "who", "online": ["B"], "id": 1},
            {"ok": "ping", "id": 2},
            {"ok": "send", "id": 3},
            {"ok": "watch", "online": [], "id": 4},
            {"error": "wrong format"},
            {"ok": "unwatch", "id": "5"},
            {"error": "not connected", "to": "C", "id": 6},
        ]
        assert await b.line() == {"from": "A", "message": "hi"}
        await asker.close()
        await b.close()
