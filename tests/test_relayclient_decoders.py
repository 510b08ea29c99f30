"""The relay client's decoders: bytes split anywhere in, events or our error out."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modembridge.relayclient import (
    Ack,
    Decoded,
    Delivery,
    Heartbeat,
    Pong,
    Refusal,
    RelayProtocolError,
    V1Decoder,
    V2Decoder,
    send_request,
)


def feed_split(
    decoder: V1Decoder | V2Decoder, data: bytes, cuts: list[int]
) -> list[Decoded]:
    events: list[Decoded] = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        events += decoder.feed(data[start:cut])
        start = cut
    events += decoder.feed(data[start:])
    if isinstance(decoder, V1Decoder):
        events += decoder.flush()
    return events


def merged(events: list[Decoded]) -> list[Decoded]:
    """Adjacent v1 deliveries joined: v1 cannot tell them apart anyway."""
    out: list[Decoded] = []
    for event in events:
        if out and isinstance(event, Delivery) and isinstance(out[-1], Delivery):
            out[-1] = Delivery(None, out[-1].data + event.data)
        else:
            out.append(event)
    return out


def test_v1_replies_are_matched_to_sends_in_order() -> None:
    decoder = V1Decoder()
    decoder.expect_reply(1, "B")
    decoder.expect_reply(2, "C")
    decoder.expect_reply(3, "B")

    events = decoder.feed(b"send_successC not connectheartbeathello Bwrong format")

    assert events == [
        Ack(1),
        Refusal(2, "not connected", "C"),
        Heartbeat(),
        Delivery(None, b"hello B"),
        Refusal(3, "wrong format", "B"),
    ]


def test_v1_word_split_across_reads_is_held_until_complete() -> None:
    decoder = V1Decoder()
    decoder.expect_reply(1, "B")

    first = decoder.feed(b"data then send_su")
    second = decoder.feed(b"ccess")

    assert first == [Delivery(None, b"data then ")]
    assert second == [Ack(1)]


def test_v1_held_tail_is_data_once_flushed() -> None:
    decoder = V1Decoder()

    assert decoder.feed(b"my heart") == [Delivery(None, b"my ")]
    assert decoder.holding
    assert decoder.flush() == [Delivery(None, b"heart")]


def test_v1_accepts_the_original_servers_heartbeat_spelling() -> None:
    assert V1Decoder().feed(b"heartBeat") == [Heartbeat()]


@given(
    st.binary(max_size=200).filter(
        lambda b: not any(w in b for w in (b"success", b"wrong", b"eart"))
    ),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_v1_data_without_relay_words_comes_through_whole(
    data: bytes, cuts: list[int]
) -> None:
    events = merged(feed_split(V1Decoder(), data, cuts))

    assert events == ([Delivery(None, data)] if data else [])


@given(
    st.lists(
        st.sampled_from(
            [b"send_success", b"heartbeat", b"B not connect", b"x", b"payload\r\n"]
        ),
        max_size=12,
    ),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_v1_any_split_gives_the_same_events(
    pieces: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(pieces)

    def run(split: list[int]) -> list[Decoded]:
        decoder = V1Decoder()
        for request_id in range(20):
            decoder.expect_reply(request_id, "B")
        return merged(feed_split(decoder, data, split))

    assert run(cuts) == run([])


def test_v2_lines_become_events() -> None:
    lines = [
        {"ok": "send", "id": 7},
        {"error": "not connected", "to": "B", "id": 8},
        {"from": "A", "message": "hi"},
        {"from": "A", "message_b64": "AAH/"},
        {"heartbeat": 1700000000},
        {"ok": "ping", "id": 9},
        {"ok": "connect", "card": "A", "proto": 2, "heartbeat": 30},
        {"something": "new"},
    ]
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)

    events = V2Decoder().feed(data)

    assert events == [
        Ack(7),
        Refusal(8, "not connected", "B"),
        Delivery("A", b"hi"),
        Delivery("A", b"\x00\x01\xff"),
        Heartbeat(1700000000.0),
        Pong(),
    ]


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1, 2]",
        b'{"from": "A"}',
        b'{"from": "A", "message_b64": "!!"}',
        b"\xff",
        b"[" * 100_000,
        b'{"heartbeat": ' + b"9" * 5000 + b"}",
    ],
)
def test_v2_garbage_is_our_protocol_error_in_its_place(line: bytes) -> None:
    before, error, after = V2Decoder().feed(
        b'{"heartbeat": 1}\n' + line + b'\n{"ok": "send", "id": 2}\n'
    )

    assert (before, after) == (Heartbeat(1.0), Ack(2))
    assert isinstance(error, RelayProtocolError)


def test_v2_endless_line_is_refused_and_skipped_not_buffered() -> None:
    decoder = V2Decoder(max_line=1024)
    for _ in range(5):
        assert decoder.feed(b"x" * 200) == []

    (error,) = decoder.feed(b"x" * 200)
    after = decoder.feed(b"x" * 200 + b'x\n{"ok": "send", "id": 3}\n')

    assert isinstance(error, RelayProtocolError)
    assert "longer than 1024 bytes" in str(error)
    assert after == [Ack(3)]


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_v2_any_bytes_yield_events_or_our_error(data: bytes, cuts: list[int]) -> None:
    decoded = feed_split(V2Decoder(max_line=128), data, cuts)

    kinds = Delivery | Ack | Refusal | Heartbeat | Pong | RelayProtocolError
    assert all(isinstance(item, kinds) for item in decoded)


def test_send_request_puts_text_in_message_and_bytes_in_base64() -> None:
    text = json.loads(send_request("B", "héllo".encode(), 3))
    binary = json.loads(send_request("B", b"\x00\xff", 4))

    assert text == {"action": "send", "to": "B", "message": "héllo", "id": 3}
    assert binary == {"action": "send", "to": "B", "message_b64": "AP8=", "id": 4}


def test_version_1_send_has_no_id_and_only_text() -> None:
    request = json.loads(send_request("B", b"ok\xff", None))

    assert request == {"action": "send", "to": "B", "message": "ok\ufffd"}
