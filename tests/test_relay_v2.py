"""Protocol version 2 over real sockets, and conversion to and from version 1."""

from __future__ import annotations

import base64
import json
import time

from relayclient_raw import open_cards, running_relay


async def test_a_v2_connect_is_answered_with_a_json_line() -> None:
    async with running_relay(heartbeat=7.5) as relay:
        (a,) = await open_cards(relay.port, 1)
        reply = await a.connect_v2("A", id=1)
        assert reply == {
            "ok": "connect",
            "card": "A",
            "proto": 2,
            "heartbeat": 7.5,
            "id": 1,
        }
        await a.close()


async def test_a_card_asking_for_a_newer_version_gets_version_2() -> None:
    async with running_relay() as relay:
        (a,) = await open_cards(relay.port, 1)
        await a.send(b"{'action':'connect','from':'A','proto':5}")
        assert (await a.line())["proto"] == 2
        await a.close()


async def test_pipelined_sends_are_acked_in_order_with_their_ids() -> None:
    async with running_relay() as relay:
        a, b = await open_cards(relay.port, 2)
        await a.connect_v2("A")
        await b.connect_v2("B")
        sends = b"".join(
            json.dumps(
                {"action": "send", "to": "B", "message": f"m{i}", "id": i}
            ).encode()
            for i in range(20)
        )
        await a.send(sends + b'{"action":"send","to":"B","message":"s","id":"last"}')
        assert [await a.line() for _ in range(21)] == [
            *({"ok": "send", "id": i} for i in range(20)),
            {"ok": "send", "id": "last"},
        ]
        deliveries = [await b.line() for _ in range(21)]
        assert [d["message"] for d in deliveries] == [f"m{i}" for i in range(20)] + [
            "s"
        ]
        assert {d["from"] for d in deliveries} == {"A"}
        await a.close()
        await b.close()


async def test_an_error_names_what_failed_and_which_request() -> None:
    async with running_relay() as relay:
        (a,) = await open_cards(relay.port, 1)
        await a.connect_v2("A")
        await a.send(b"{'action':'send','to':'B','message':'x','id':7}")
        assert await a.line() == {"error": "not connected", "to": "B", "id": 7}
        await a.send(b"{'action':'send','to':'B','id':8}")
        error = await a.line()
        assert error["error"] == "wrong format"
        assert error["id"] == 8
        assert "message" in error["detail"]
        await a.send(b"garbage\n")
        error = await a.line()
        assert error["error"] == "wrong format"
        assert "id" not in error
        await a.close()


async def test_a_v2_delivery_says_who_sent_it() -> None:
    async with running_relay() as relay:
        a, b = await open_cards(relay.port, 2)
        await a.connect_v2("A")
        await b.connect_v2("B")
        await a.send(b'{"action":"send","to":"B","message":"hi\\nthere"}')
        assert await a.line() == {"ok": "send"}
        assert await b.line() == {"from": "A", "message": "hi\nthere"}
        await a.close()
        await b.close()


async def test_binary_payloads_travel_as_base64_between_v2_cards() -> None:
    payload = bytes(range(256))
    async with running_relay() as relay:
        a, b = await open_cards(relay.port, 2)
        await a.connect_v2("A")
        await b.connect_v2("B")
        encoded = base64.b64encode(payload).decode()
        await a.send(
            json.dumps({"action": "send", "to": "B", "message_b64": encoded}).encode()
        )
        assert await a.line() == {"ok": "send"}
        delivery = await b.line()
        assert delivery["from"] == "A"
        assert base64.b64decode(delivery["message_b64"]) == payload
        await a.close()
        await b.close()


async def test_a_v2_card_receiving_from_a_v1_card_gets_a_json_delivery() -> None:
    async with running_relay() as relay:
        old, new = await open_cards(relay.port, 2)
        await old.connect("A")
        await new.connect_v2("B")
        await old.request(b"{'action':'send','to':'B','message':'hi'}", b"send_success")
        assert await new.line() == {"from": "A", "message": "hi"}
        # Bytes that are not UTF-8 still arrive intact, as base64.
        await old.request(
            b"{'action':'send','to':'B','message':'\xff\x00'}", b"send_success"
        )
        delivery = await new.line()
        assert base64.b64decode(delivery["message_b64"]) == b"\xff\x00"
        await old.close()
        await new.close()


async def test_a_v1_card_receiving_from_a_v2_card_gets_raw_bytes() -> None:
    async with running_relay() as relay:
        new, old = await open_cards(relay.port, 2)
        await new.connect_v2("A")
        await old.connect("B")
        await new.send(b'{"action":"send","to":"B","message":"hi","id":1}')
        assert await new.line() == {"ok": "send", "id": 1}
        await old.expect(b"hi")
        await new.send(b'{"action":"send","to":"B","message_b64":"AP8=","id":2}')
        assert await new.line() == {"ok": "send", "id": 2}
        await old.expect(b"\x00\xff")
        await new.close()
        await old.close()


async def test_a_delivery_from_a_card_that_never_connected_has_no_sender() -> None:
    async with running_relay() as relay:
        anonymous, b = await open_cards(relay.port, 2)
        await b.connect_v2("B")
        await anonymous.request(
            b"{'action':'send','to':'B','message':'x'}", b"send_success"
        )
        assert await b.line() == {"from": None, "message": "x"}
        await anonymous.close()
        await b.close()


async def test_v2_heartbeats_carry_the_time_and_cannot_pass_for_data() -> None:
    async with running_relay(heartbeat=0.05) as relay:
        (a,) = await open_cards(relay.port, 1)
        await a.connect_v2("A")
        before = time.time()
        for _ in range(2):
            beat = await a.line()
            assert set(beat) == {"heartbeat"}
            assert before - 2 <= beat["heartbeat"] <= time.time() + 1
        await a.close()


async def test_ping_is_answered_with_its_id() -> None:
    async with running_relay() as relay:
        (a,) = await open_cards(relay.port, 1)
        await a.connect_v2("A")
        await a.send(b"{'action':'ping','id':42}{'action':'ping'}")
        assert await a.line() == {"ok": "ping", "id": 42}
        assert await a.line() == {"ok": "ping"}
        await a.close()


async def test_a_v1_ping_is_answered_pong() -> None:
    async with running_relay() as relay:
        (a,) = await open_cards(relay.port, 1)
        await a.request(b"{'action':'ping'}", b"pong")
        await a.close()


async def test_an_ack_comes_after_the_delivery_was_written() -> None:
    async with running_relay() as relay:
        a, b = await open_cards(relay.port, 2)
        await a.connect_v2("A")
        await b.connect_v2("B")
        await a.send(b"{'action':'send','to':'B','message':'x','id':1}")
        assert await a.line() == {"ok": "send", "id": 1}
        # The relay wrote the delivery before the ack, so it is already on its way.
        assert await b.line() == {"from": "A", "message": "x"}
        await a.close()
        await b.close()


async def test_a_card_sending_to_itself_sees_delivery_then_ack() -> None:
    async with running_relay() as relay:
        (a,) = await open_cards(relay.port, 1)
        await a.connect_v2("A")
        await a.send(b"{'action':'send','to':'A','message':'me','id':1}" * 2)
        lines = [await a.line() for _ in range(4)]
        assert lines == [
            {"from": "A", "message": "me"},
            {"ok": "send", "id": 1},
            {"from": "A", "message": "me"},
            {"ok": "send", "id": 1},
        ]
        await a.close()


async def test_a_v1_reconnect_returns_the_card_to_version_1() -> None:
    async with running_relay() as relay:
        (a,) = await open_cards(relay.port, 1)
        await a.connect_v2("A")
        await a.connect("A")
        await a.request(b"{'action':'send','to':'Z','message':'x'}", b"Z not connect")
        await a.close()
