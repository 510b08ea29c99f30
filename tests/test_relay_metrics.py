"""The relay's Prometheus metrics, counted from real traffic and scraped over HTTP."""

from __future__ import annotations

import asyncio
import urllib.error

import pytest
from relayclient_raw import (
    CardEvents,
    open_cards,
    running_relay,
    send_until_refused,
    unread_socket,
)
from test_metrics import scrape
from test_relay_presence import v2_card

from relayserver.limits import Limits
from relayserver.presence import MAX_NAMES
from relayserver.server import RelayServer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_port(relay: RelayServer) -> int:
    assert relay.metrics is not None
    assert relay.metrics.port is not None
    return relay.metrics.port


async def scraped(relay: RelayServer) -> Samples:
    """What Prometheus would read from the relay now."""
    return await asyncio.to_thread(scrape, metrics_port(relay))


def by_label(samples: Samples, name: str) -> dict[str, float]:
    """The samples of a metric with one label, by that label's value."""
    return {
        labels[0][1]: value
        for (sample, labels), value in samples.items()
        if sample == name
    }


def v1_send(to: bytes, message: bytes) -> bytes:
    return b"{'action':'send','to':'%s','message':'%s'}" % (to, message)


async def test_the_counters_add_up_to_the_traffic() -> None:
    async with running_relay(metrics_port=0) as relay:
        events = CardEvents(relay)
        a, b = await open_cards(relay.port, 2)
        await a.connect("A")
        await b.connect("B")
        c, d = await v2_card(relay.port, "C"), await v2_card(relay.port, "D")

        # Version 1: three sends in one write (routed as a run), then two alone.
        run = v1_send(b"B", b"one") + v1_send(b"B", b"two") + v1_send(b"B", b"three")
        await a.request(run, b"send_success" * 3)
        await b.expect(b"onetwothree")
        for text in (b"four", b"five"):
            await a.request(v1_send(b"B", text), b"send_success")
            await b.expect(text)
        # Version 1 to version 2 is converted, so it takes the request path.
        await a.request(v1_send(b"C", b"six"), b"send_success")
        assert await c.line() == {"from": "A", "message": "six"}
        # Version 2: a text and a binary message of two bytes.
        await c.send(b'{"action":"send","to":"D","message":"hello","id":1}')
        await c.send(b'{"action":"send","to":"D","message_b64":"AP8=","id":2}')
        assert [await c.line() for _ in range(2)] == [
            {"ok": "send", "id": 1},
            {"ok": "send", "id": 2},
        ]
        assert [await d.line() for _ in range(2)] == [
            {"from": "C", "message": "hello"},
            {"from": "C", "message_b64": "AP8="},
        ]
        # To a card nobody holds, and bytes that are no request, in each version.
        await a.request(v1_send(b"Z", b"lost"), b"Z not connect")
        await c.send(b'{"action":"send","to":"Z","message":"lost","id":3}')
        assert await c.line() == {"error": "not connected", "to": "Z", "id": 3}
        await a.request(b"hello\n", b"wrong format")
        await c.send(b"{'action':'dance','id':4}")
        assert (await c.line())["error"] == "wrong format"
        # Presence: asked by version 2, refused to version 1, too many names.
        await c.send(b'{"action":"who","names":["A"],"id":5}')
        assert await c.line() == {"ok": "who", "online": ["A"], "id": 5}
        await c.send(b'{"action":"watch","names":["Z"],"id":6}')
        assert await c.line() == {"ok": "watch", "online": [], "id": 6}
        await c.send(b'{"action":"unwatch","names":["Z"],"id":7}')
        assert await c.line() == {"ok": "unwatch", "id": 7}
        await a.request(b"{'action':'who','names':['B']}", b"wrong format")
        names = ",".join(f'"n{i}"' for i in range(MAX_NAMES + 1))
        await c.send(b'{"action":"who","names":[%s],"id":8}' % names.encode())
        assert (await c.line())["error"] == "too many names"
        # B takes its name over from a second connection; D leaves.
        (b_again,) = await open_cards(relay.port, 1)
        await b_again.connect("B")
        assert await b.closed_by_relay() == b""
        await d.close()
        await events.wait_for("disconnect", "D")

        samples = await scraped(relay)

        assert samples[("relay_cards_connected", ())] == 3
        assert samples[("relay_connects_total", ())] == 5
        assert by_label(samples, "relay_disconnects_total") == {
            "taken_over": 1,
            "closed": 1,
        }
        assert by_label(samples, "relay_requests_total") == {
            "connect": 5,
            "send": 3 + 2 + 1 + 2 + 2,
            "malformed": 2,
            "who": 3,
            "watch": 1,
            "unwatch": 1,
        }
        assert by_label(samples, "relay_messages_relayed_total") == {
            "local": 3 + 2 + 1 + 2
        }
        sizes = len(b"onetwothreefourfivesix") + len(b"hello") + 2
        assert by_label(samples, "relay_bytes_relayed_total") == {"local": sizes}
        assert by_label(samples, "relay_errors_total") == {
            "not_connected": 2,
            "wrong_format": 3,
            "too_many_names": 1,
        }
        for card in (a, b, c, b_again):
            await card.close()


async def test_a_card_that_does_not_read_is_counted_as_slow() -> None:
    limits = Limits(write_high_water=64 * 1024)
    async with running_relay(metrics_port=0, limits=limits) as relay:
        events = CardEvents(relay)
        sleeper = unread_socket(relay.port)
        sleeper.sendall(b"{'action':'connect','from':'B'}")
        await events.wait_for("connect", "B")
        a = await v2_card(relay.port, "A")

        acknowledged = await send_until_refused(a, "B")
        # Going away with bytes unread, the card resets the connection at once.
        sleeper.close()
        await events.wait_for("disconnect", "B")
        samples = await scraped(relay)

        assert acknowledged > 0
        assert samples[("relay_write_pauses_total", ())] == 1
        assert by_label(samples, "relay_disconnects_total") == {"slow": 1}
        requests = by_label(samples, "relay_requests_total")
        assert requests == {"connect": 2, "send": acknowledged + 1}
        messages = by_label(samples, "relay_messages_relayed_total")
        assert messages == {"local": acknowledged}
        relayed = by_label(samples, "relay_bytes_relayed_total")
        assert relayed == {"local": acknowledged * 30_000}
        assert by_label(samples, "relay_errors_total") == {"not_connected": 1}
        assert samples[("relay_cards_connected", ())] == 1
        await a.close()


async def test_every_heartbeat_round_is_timed() -> None:
    async with running_relay(heartbeat=0.05, metrics_port=0) as relay:
        (card,) = await open_cards(relay.port, 1)
        await card.expect(b"heartbeat")

        beats_before = relay.tick
        samples = await scraped(relay)
        beats_after = relay.tick

        # A round is timed once it reached every card; the last may be under way.
        timed = samples[("relay_heartbeat_round_seconds_count", ())]
        assert timed >= 1
        assert beats_before - 1 <= timed <= beats_after
        every = samples[("relay_heartbeat_round_seconds_bucket", (("le", "+Inf"),))]
        assert every == timed
        assert samples[("relay_heartbeat_round_seconds_sum", ())] >= 0
        await card.close()


async def test_the_metrics_stop_with_the_relay() -> None:
    async with running_relay(metrics_port=0) as relay:
        port = metrics_port(relay)
        assert (await scraped(relay))[("relay_cards_connected", ())] == 0

    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(scrape, port)


async def test_a_relay_without_a_metrics_port_counts_nothing() -> None:
    async with running_relay() as relay:
        assert relay.metrics is None
        a, b = await open_cards(relay.port, 2)
        await a.connect("A")
        await b.connect("B")
        await a.request(v1_send(b"B", b"x") * 2, b"send_success" * 2)
        await b.expect(b"xx")
        await a.request(b"junk\n", b"wrong format")
        await b.close()
        await a.close()
