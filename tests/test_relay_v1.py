"""Protocol version 1 over real sockets: each row of the table, each fact under it,
and none of the original server's defects."""

from __future__ import annotations

import asyncio
from pathlib import Path

from relayclient_raw import CardEvents, RawCard, open_cards, running_relay

CONNECT_A = b"{'action':'connect','from':'A'}"
CONNECT_B = b"{'action':'connect','from':'B'}"
SEND_B_HI = b"{'action':'send','to':'B','message':'hi'}"


async def test_connect_is_answered_connect_success() -> None:
    async with running_relay() as relay:
        card = await RawCard.open(relay.port)
        await card.request(CONNECT_A, b"connect_success")
        assert relay.cards() == ["A"]
        await card.close()


async def test_send_writes_the_raw_message_to_the_target_and_acks_the_sender() -> None:
    async with running_relay() as relay:
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.connect("A")
        await b.connect("B")
        await a.request(SEND_B_HI, b"send_success")
        await b.expect(b"hi")
        # Nothing but the message reached B: its next bytes are its own next reply.
        await b.request(b"{'action':'send','to':'A','message':'yo'}", b"send_success")
        await a.expect(b"yo")
        await a.close()
        await b.close()


async def test_send_to_a_card_not_connected_is_answered_with_its_name() -> None:
    async with running_relay() as relay:
        a = await RawCard.open(relay.port)
        await a.connect("A")
        await a.request(SEND_B_HI, b"B not connect")
        await a.request(
            b"{'action':'send','to':'card-7','message':'x'}", b"card-7 not connect"
        )
        await a.close()


async def test_unknown_target_does_not_end_the_senders_connection() -> None:
    async with running_relay() as relay:
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.connect("A")
        await a.request(SEND_B_HI, b"B not connect")
        await b.connect("B")
        await a.request(SEND_B_HI, b"send_success")
        await b.expect(b"hi")
        await a.close()
        await b.close()


async def test_unreadable_input_is_wrong_format_and_the_connection_stays() -> None:
    async with running_relay() as relay:
        card = await RawCard.open(relay.port)
        await card.request(b"hello\n", b"wrong format")
        await card.request(b"{'action':'dance'}", b"wrong format")
        await card.request(b"{not even close}", b"wrong format")
        await card.request(CONNECT_A, b"connect_success")
        await card.close()


async def test_code_in_a_request_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "owned"
    attack = b"{'action':__import__('os').system('touch %s')}" % str(marker).encode()
    async with running_relay() as relay:
        card = await RawCard.open(relay.port)
        await card.request(attack, b"wrong format")
        await card.request(
            b"{'action':'send','to':'B','message':__import__('os').getcwd()}",
            b"wrong format",
        )
        await card.request(CONNECT_A, b"connect_success")
        await card.close()
    assert not marker.exists()


async def test_python_and_json_spellings_are_both_understood() -> None:
    async with running_relay() as relay:
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.request(b'{"action": "connect", "from": "A"}', b"connect_success")
        await b.connect("B")
        await a.request(
            b'{"action": "send", "to": "B", "message": "caf\\u00e9"}', b"send_success"
        )
        await b.expect("café".encode())
        await a.close()
        await b.close()


async def test_two_requests_in_one_segment_are_answered_in_order() -> None:
    async with running_relay() as relay:
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await b.connect("B")
        await a.request(CONNECT_A + SEND_B_HI, b"connect_successsend_success")
        await b.expect(b"hi")
        await a.request(SEND_B_HI + b"\n" + SEND_B_HI + b"\r\n", b"send_success" * 2)
        await b.expect(b"hihi")
        await a.close()
        await b.close()


async def test_a_request_split_across_segments_is_reassembled() -> None:
    async with running_relay() as relay:
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.connect("A")
        await b.connect("B")
        for byte in SEND_B_HI:
            await a.send(bytes([byte]))
        await a.expect(b"send_success")
        await b.expect(b"hi")
        await a.close()
        await b.close()


async def test_an_oversized_request_is_wrong_format_and_the_next_one_works() -> None:
    async with running_relay() as relay:
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.connect("A")
        await b.connect("B")
        huge = b"{'action':'send','to':'B','message':'" + b"x" * (80 * 1024) + b"'}"
        await a.request(huge + SEND_B_HI, b"wrong formatsend_success")
        await b.expect(b"hi")
        await a.close()
        await b.close()


async def test_a_newer_connection_takes_the_name_over_and_closes_the_older() -> None:
    async with running_relay() as relay:
        old, new, a = await open_cards(relay.port, 3)
        await old.connect("B")
        await new.connect("B")
        assert await old.closed_by_relay() == b""
        await a.request(SEND_B_HI, b"send_success")
        await new.expect(b"hi")
        assert relay.cards() == ["B"]
        for card in (new, a, old):
            await card.close()


async def test_what_was_acknowledged_still_reaches_the_older_connection() -> None:
    async with running_relay() as relay:
        old, new = await open_cards(relay.port, 2)
        await old.connect("B")
        # One read: a send to B, acknowledged, then this connection takes B over.
        await new.request(
            SEND_B_HI + b"{'action':'connect','from':'B'}",
            b"send_successconnect_success",
        )
        assert await old.closed_by_relay() == b"hi"
        await new.close()
        await old.close()


async def test_a_disconnect_releases_the_name_at_once() -> None:
    async with running_relay() as relay:
        events = CardEvents(relay)
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await b.connect("B")
        await b.close()
        await events.wait_for("disconnect", "B")
        assert relay.cards() == []
        await a.request(SEND_B_HI, b"B not connect")
        await a.close()


async def test_a_takeover_survives_the_older_connection_ending_later() -> None:
    async with running_relay() as relay:
        events = CardEvents(relay)
        old, new, a = await open_cards(relay.port, 3)
        await old.connect("B")
        await new.connect("B")
        await old.close()
        await old.closed_by_relay()
        await a.request(SEND_B_HI, b"send_success")
        await new.expect(b"hi")
        await new.close()
        await events.wait_for("disconnect", "B")
        await a.close()


async def test_many_disconnects_leave_nothing_registered() -> None:
    async with running_relay() as relay:
        events = CardEvents(relay)
        for round_ in range(20):
            card = await RawCard.open(relay.port)
            await card.connect(f"C{round_}")
            card.writer.transport.abort()  # a reset, as a dropped cellular link does
            await events.wait_for("disconnect", f"C{round_}")
        assert relay.cards() == []
        probe = await RawCard.open(relay.port)
        await probe.request(
            b"{'action':'send','to':'C3','message':'x'}", b"C3 not connect"
        )
        await probe.close()


async def test_a_card_may_send_without_connecting_first() -> None:
    async with running_relay() as relay:
        anonymous, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await b.connect("B")
        await anonymous.request(SEND_B_HI, b"send_success")
        await b.expect(b"hi")
        await anonymous.close()
        await b.close()


async def test_the_receiver_gets_the_message_bytes_only() -> None:
    async with running_relay() as relay:
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.connect("A")
        await b.connect("B")
        await a.request(
            b"{'action':'send','to':'B','message':'one'}"
            b"{'action':'send','to':'B','message':'two\\n'}",
            b"send_success" * 2,
        )
        await b.expect(b"onetwo\n")
        await a.close()
        await b.close()


async def test_every_card_gets_heartbeat_every_interval() -> None:
    async with running_relay(heartbeat=0.05) as relay:
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.connect("A")
        await b.connect("B")
        for _ in range(3):
            await a.expect(b"heartbeat")
            await b.expect(b"heartbeat")
        await a.close()
        await b.close()


async def test_a_write_to_a_card_that_went_away_is_an_error_to_the_sender() -> None:
    async with running_relay() as relay:
        events = CardEvents(relay)
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.connect("A")
        await b.connect("B")
        b.writer.transport.abort()
        await events.wait_for("disconnect", "B")
        await a.request(SEND_B_HI, b"B not connect")
        await a.request(CONNECT_A, b"connect_success")
        await a.close()


async def test_sends_racing_a_vanishing_target_each_get_a_v1_reply() -> None:
    async with running_relay() as relay:
        a, b = await open_cards(relay.port, 2)
        await a.connect("A")
        await b.connect("B")
        b.writer.transport.abort()
        await a.send(SEND_B_HI * 50)
        replies = b""
        while replies.count(b"send_success") + replies.count(b"B not connect") < 50:
            replies += await asyncio.wait_for(a.reader.read(4096), 5)
        leftover = replies.replace(b"send_success", b"").replace(b"B not connect", b"")
        assert leftover == b""
        await a.request(CONNECT_A, b"connect_success")
        await a.close()
