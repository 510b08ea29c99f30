"""Limits: connections, request size, idle cards and cards that do not read."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import pytest
from relayclient_raw import (
    CardEvents,
    RawCard,
    open_cards,
    running_relay,
    send_until_refused,
    unread_socket,
)

from relayserver.limits import Limits
from relayserver.server import RelayConfig, RelayServer


async def test_connections_past_the_limit_are_closed_on_arrival(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_relay(limits=Limits(max_connections=2)) as relay:
        a, b = await open_cards(relay.port, 2)
        await a.connect("A")
        await b.connect("B")
        third = await RawCard.open(relay.port)
        assert await third.closed_by_relay() == b""
        assert any(
            "2 connections already open" in r.getMessage() for r in caplog.records
        )
        await a.request(b"{'action':'send','to':'B','message':'hi'}", b"send_success")
        await b.expect(b"hi")
        # A place frees up once a card leaves.
        events = CardEvents(relay)
        await b.close()
        await events.wait_for("disconnect", "B")
        fourth = await RawCard.open(relay.port)
        await fourth.connect("D")
        for card in (a, third, fourth):
            await card.close()


async def test_the_request_size_bound_is_configurable() -> None:
    async with running_relay(limits=Limits(max_request_size=100)) as relay:
        a, b = await open_cards(relay.port, 2)
        await b.connect("B")
        small = b"{'action':'send','to':'B','message':'" + b"s" * 50 + b"'}"
        large = b"{'action':'send','to':'B','message':'" + b"L" * 100 + b"'}"
        await a.request(
            small + large + small, b"send_success" + b"wrong format" + b"send_success"
        )
        await b.expect(b"s" * 100)
        await a.close()
        await b.close()


async def test_a_silent_card_is_closed_after_the_idle_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relayserver")
    async with running_relay(heartbeat=0.05, limits=Limits(idle_timeout=3)) as relay:
        events = CardEvents(relay)
        silent, talker = await open_cards(relay.port, 2)
        await silent.connect("S")
        await talker.connect("T")
        # The talker answers every heartbeat with a ping, so it never falls silent.
        for _ in range(6):
            await talker.expect(b"heartbeat")
            await talker.request(b"{'action':'ping'}", b"pong")
        received = await silent.closed_by_relay()
        assert received.replace(b"heartbeat", b"") == b""
        await events.wait_for("disconnect", "S")
        assert relay.cards() == ["T"]
        assert "card[S]: disconnected (silent for 3 heartbeat intervals)" in [
            r.getMessage() for r in caplog.records
        ]
        await silent.close()
        await talker.close()


async def test_without_an_idle_timeout_a_silent_v1_card_stays() -> None:
    async with running_relay(heartbeat=0.02) as relay:
        (silent,) = await open_cards(relay.port, 1)
        await silent.connect("S")
        for _ in range(10):
            await silent.expect(b"heartbeat")
        assert relay.cards() == ["S"]
        await silent.close()


async def test_a_card_that_does_not_read_is_dropped_not_buffered_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = Limits(write_high_water=64 * 1024)
    async with running_relay(heartbeat=0.2, limits=limits) as relay:
        events = CardEvents(relay)
        sleeper = unread_socket(relay.port)
        sleeper.sendall(b"{'action':'connect','from':'B'}")
        await events.wait_for("connect", "B")
        (a,) = await open_cards(relay.port, 1)
        await a.connect_v2("A")
        assert await send_until_refused(a, "B") > 0
        await events.wait_for("disconnect", "B")
        assert relay.cards() == ["A"]
        dropped = [r for r in caplog.records if "does not read fast" in r.getMessage()]
        assert len(dropped) == 1
        assert dropped[0].levelno == logging.WARNING
        assert dropped[0].getMessage().startswith("card[B]: dropped")
        sleeper.close()
        await a.close()


async def test_a_dropped_slow_card_may_still_read_what_was_acknowledged() -> None:
    limits = Limits(write_high_water=64 * 1024)
    async with running_relay(heartbeat=2.0, limits=limits) as relay:
        events = CardEvents(relay)
        sleeper = unread_socket(relay.port)
        sleeper.sendall(b"{'action':'connect','from':'B'}")
        await events.wait_for("connect", "B")
        (a,) = await open_cards(relay.port, 1)
        await a.connect_v2("A")
        acknowledged = await send_until_refused(a, "B")
        # The card wakes up within the grace period: everything acked reaches it.
        reader, writer = await asyncio.open_connection(sock=sleeper)
        received = await asyncio.wait_for(reader.read(), 10)
        assert received.startswith(b"connect_success")
        assert received.count(b"z" * 30_000) == acknowledged
        await events.wait_for("disconnect", "B")
        writer.close()
        await a.close()


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        Limits(max_connections=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        Limits(idle_timeout=-1)
    with pytest.raises(ValueError, match="max_request_size"):
        Limits(max_request_size=10)


async def test_closing_ends_even_while_cards_keep_connecting() -> None:
    # A fleet reconnecting while the relay stops must not keep it from stopping.
    relay = RelayServer(RelayConfig(host="127.0.0.1", port=0, heartbeat=3600))
    await relay.start()
    stop, held = threading.Event(), list[socket.socket]()

    def connect_and_idle() -> None:
        while not stop.is_set():
            try:
                card = socket.create_connection(("127.0.0.1", relay.port), timeout=1)
                card.sendall(b"{'action':'connect','from':'X%d'}" % len(held))
                held.append(card)
            except OSError:
                time.sleep(0.001)

    threads = [threading.Thread(target=connect_and_idle) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        await asyncio.sleep(0.05)
        await asyncio.wait_for(relay.close(), 15)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for card in held:
            card.close()
    assert relay.cards() == []
