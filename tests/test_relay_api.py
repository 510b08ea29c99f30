"""The in-process API other parts of the project build on."""

from __future__ import annotations

import asyncio

import pytest
from relayclient_raw import CardEvents, RawCard, open_cards

from relayserver.server import RelayConfig, RelayServer


async def test_start_binds_a_free_port_and_close_closes_every_connection() -> None:
    server = RelayServer(RelayConfig(host="127.0.0.1", port=0, heartbeat=30.0))
    await server.start()
    assert server.port > 0
    a, anonymous = await open_cards(server.port, 2)
    await a.connect("A")
    assert server.cards() == ["A"]
    await server.close()
    assert await a.closed_by_relay() == b""
    assert await anonymous.closed_by_relay() == b""
    assert server.cards() == []
    with pytest.raises(ConnectionRefusedError):
        await RawCard.open(server.port)
    await a.close()
    await anonymous.close()


async def test_listeners_hear_connects_and_disconnects() -> None:
    server = RelayServer(RelayConfig(host="127.0.0.1", port=0))
    heard: list[tuple[str, str]] = []
    server.add_listener(lambda event, card: heard.append((event, card)))
    events = CardEvents(server)
    await server.start()
    a, b = await open_cards(server.port, 2)
    await a.connect("A")
    await b.connect("A")  # takeover: a second connect, no disconnect
    await a.closed_by_relay()
    await b.connect("B")  # the connection takes another name: A is released
    await events.wait_for("disconnect", "A")
    await b.close()
    await events.wait_for("disconnect", "B")
    await server.close()
    assert heard == [
        ("connect", "A"),
        ("connect", "A"),
        ("disconnect", "A"),
        ("connect", "B"),
        ("disconnect", "B"),
    ]
    await a.close()


async def test_a_failing_listener_does_not_break_the_relay() -> None:
    server = RelayServer(RelayConfig(host="127.0.0.1", port=0))

    def broken(event: str, card: str) -> None:
        raise RuntimeError(event + card)

    server.add_listener(broken)
    await server.start()
    (a,) = await open_cards(server.port, 1)
    await a.connect("A")
    await a.request(b"{'action':'send','to':'A','message':'me'}", b"mesend_success")
    await a.close()
    await server.close()


async def test_deliver_writes_to_a_local_card_and_reports_whether_it_could() -> None:
    server = RelayServer(RelayConfig(host="127.0.0.1", port=0))
    await server.start()
    old, new = await open_cards(server.port, 2)
    await old.connect("B")
    await new.connect_v2("C")
    assert server.deliver("B", "remote", b"raw")
    await old.expect(b"raw")
    assert server.deliver("C", "remote", b"\x00\x01", binary=True)
    assert await new.line() == {"from": "remote", "message_b64": "AAE="}
    assert not server.deliver("nobody", None, b"x")
    server.evict("B")
    assert await old.closed_by_relay() == b""
    await asyncio.gather(old.close(), new.close())
    await server.close()
