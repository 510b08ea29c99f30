"""The request decoder: any bytes, split anywhere, give requests or DecodeError."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayserver.codec import RequestDecoder
from relayserver.errors import DecodeError
from relayserver.literal import parse_dict
from relayserver.requests import Connect, Ping, Send, from_dict

CONNECT = b"{'action':'connect','from':'A'}"
SEND = b"{'action':'send','to':'B','message':'hi'}"


def decode(*chunks: bytes, max_size: int = 64 * 1024) -> list[object]:
    decoder = RequestDecoder(max_size)
    events: list[object] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def reasons(events: Sequence[object]) -> list[str]:
    return [
        e.reason if isinstance(e, DecodeError) else type(e).__name__ for e in events
    ]


def test_python_and_json_spellings_give_the_same_requests() -> None:
    python = decode(CONNECT + SEND)
    spelled_json = decode(
        b'{"action": "connect", "from": "A"}{"action": "send", "to": "B", '
        b'"message": "hi"}'
    )
    assert python == spelled_json == [Connect("A"), Send("B", b"hi")]


@pytest.mark.parametrize(
    "separator", [b"", b"\n", b"\r\n", b" ", b"\t", b",", b";", b"\x00", b" \n\n "]
)
def test_requests_are_found_with_or_without_separators(separator: bytes) -> None:
    events = decode(CONNECT + separator + SEND + separator + SEND + separator)
    assert events == [Connect("A"), Send("B", b"hi"), Send("B", b"hi")]


def test_a_request_split_at_every_position_gives_the_same_request() -> None:
    whole = CONNECT + b"\n" + b"{'action':'send','to':'B','message':'a\\'{b}\"'}"
    expected = [Connect("A"), Send("B", b"a'{b}\"")]
    for cut in range(len(whole) + 1):
        assert decode(whole[:cut], whole[cut:]) == expected, cut


def test_one_byte_at_a_time_gives_the_same_requests() -> None:
    whole = CONNECT + SEND + b'{"action":"ping","id":3}'
    chunks = [whole[i : i + 1] for i in range(len(whole))]
    assert decode(*chunks) == [Connect("A"), Send("B", b"hi"), Ping(3)]


def test_code_is_never_evaluated() -> None:
    events = decode(b"{'action':__import__('os').system('touch /tmp/owned')}")
    assert len(events) == 1
    assert isinstance(events[0], DecodeError)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"{'action':'send','to':'B','message':'a'+'b'}",
        b"{'action':'send','to':'B','message':f'{1}'}",
        b"{'action':'send','to':B,'message':'x'}",
        b"{'action':'send','to':'B','message':'x' if 1 else 'y'}",
        b"{**{'action':'ping'}}",
        b"{'action':'send','to':'B','message':1}",
        b"{'action':'send','message':'x'}",
        b"{'action':'send','to':'','message':'x'}",
        b"{'action':'connect'}",
        b"{'action':'fly'}",
        b"{'to':'B'}",
        b"{1:'x'}",
        b"{'action':'send' 'to':'B'}",
        b"{'action':'send','to':'B','message_b64':'%%%'}",
    ],
)
def test_requests_the_relay_cannot_act_on_are_errors(request_bytes: bytes) -> None:
    events = decode(request_bytes + SEND)
    assert isinstance(events[0], DecodeError)
    assert events[1:] == [Send("B", b"hi")]


def test_garbage_is_reported_once_and_the_next_request_still_decodes() -> None:
    events = decode(b"hello there\n" + SEND + b"junk" + SEND)
    assert reasons(events) == [
        "not a request (a request starts with '{')",
        "Send",
        "not a request (a request starts with '{')",
        "Send",
    ]


def test_a_stray_closing_brace_is_garbage() -> None:
    assert reasons(decode(b"}" + SEND))[1:] == ["Send"]


def test_an_oversized_request_is_skipped_without_being_kept() -> None:
    decoder = RequestDecoder(max_size=256)
    head = b"{'action':'send','to':'B','message':'"
    events = decoder.feed(head + b"x" * 300)
    assert reasons(events) == ["request larger than 256 bytes"]
    for _ in range(100):
        assert decoder.feed(b"{}x" * 300) == []
        assert decoder.pending == 0
    # Still inside the oversized message string: its quote ends it, then its brace.
    assert decoder.feed(b"'}" + SEND) == [Send("B", b"hi")]


def test_an_oversized_request_arriving_whole_is_an_error() -> None:
    big = b"{'action':'send','to':'B','message':'" + b"y" * 500 + b"'}"
    assert reasons(decode(big + SEND, max_size=256)) == [
        "request larger than 256 bytes",
        "Send",
    ]


def test_a_line_break_inside_a_string_resynchronises_after_it() -> None:
    events = decode(b"{'action':'send','to':'B','message':'oops\n" + SEND)
    assert reasons(events) == ["line break inside a string", "Send"]


def test_braces_nested_too_deep_drop_the_rest_of_the_line() -> None:
    events = decode(b"{" * 40 + b"}}}} more {'a'}\n" + SEND)
    assert reasons(events) == ["nested deeper than 16", "Send"]


def test_an_unclosed_request_is_bounded() -> None:
    decoder = RequestDecoder(max_size=128)
    decoder.feed(b"{'action':'send'")
    for _ in range(50):
        decoder.feed(b", 'k': 1")
        assert decoder.pending <= 128
    assert decoder.pending == 0 or decoder.pending <= 128


@pytest.mark.parametrize(
    ("literal", "payload"),
    [
        (rb"'a\nb'", b"a\nb"),
        (rb"'\x41\101\t'", b"AA\t"),
        (rb'"\u00e9\ud83d\ude00"', "é😀".encode()),
        (rb"'\U0001F600'", "😀".encode()),
        (rb"'back\\slash \q'", b"back\\slash \\q"),
        (rb'"quote \" inside"', b'quote " inside'),
        (b"'caf\xc3\xa9'", "café".encode()),
        (b"'raw \xff\xfe bytes'", b"raw \xff\xfe bytes"),
    ],
)
def test_escapes_and_raw_bytes_in_messages(literal: bytes, payload: bytes) -> None:
    request = b"{'action':'send','to':'B','message':" + literal + b"}"
    assert decode(request) == [Send("B", payload)]


def test_binary_payloads_come_as_base64() -> None:
    request = b"{'action':'send','to':'B','message_b64':'AP8Q'}"
    assert decode(request) == [Send("B", b"\x00\xff\x10", binary=True)]


def test_connect_fields() -> None:
    events = decode(
        b"{'action':'connect','from':'A','proto':2,'token':'t','id':1}"
        b"{'action':'connect','from':'A','proto':7}"
        b"{'action':'connect','from':'A','proto':'2'}"
        b"{'action':'connect','from':'A','extra':[1,2.5,None,True,false,null]}"
    )
    assert events[0] == Connect("A", 2, "t", 1)
    assert events[1] == Connect("A", 2)
    assert isinstance(events[2], DecodeError)
    assert events[3] == Connect("A")


def test_an_error_carries_the_request_id_when_there_is_one() -> None:
    (error,) = decode(b'{"action":"send","to":"B","id":9}')
    assert isinstance(error, DecodeError)
    assert error.request_id == 9


def test_an_id_with_leading_zeros_is_not_a_number_in_either_spelling() -> None:
    for request in (
        b"{'action':'send','to':'B','message':'x','id':007}",
        b'{"action":"send","to":"B","message":"x","id":007}',
    ):
        assert isinstance(decode(request)[0], DecodeError)


def test_a_boolean_is_no_request_id() -> None:
    assert decode(b"{'action':'ping','id':True}") == [Ping(None)]


def test_python_2_unicode_prefixes_are_accepted() -> None:
    request = b"{u'action': u'send', u'to': u'B', u'message': u'hi'}"
    assert decode(request) == [Send("B", b"hi")]


def test_trailing_commas_as_python_allows() -> None:
    assert decode(b"{'action':'ping',}") == [Ping()]


# What cards may put in names and messages; quotes and backslashes included.
names = st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)
messages = st.text(max_size=200)


def python_literal(value: str) -> bytes:
    return repr(value).encode("utf-8", "surrogatepass")


@st.composite
def send_requests(draw: st.DrawFn) -> tuple[bytes, Send]:
    to, message = draw(names), draw(messages)
    request_id = draw(st.none() | st.integers(0, 10**9))
    if draw(st.booleans()):
        fields: dict[str, object] = {"action": "send", "to": to, "message": message}
        if request_id is not None:
            fields["id"] = request_id
        raw = json.dumps(fields, ensure_ascii=draw(st.booleans())).encode(
            "utf-8", "surrogatepass"
        )
    else:
        raw = b"{'action': 'send', 'to': %s, 'message': %s%s}" % (
            python_literal(to),
            python_literal(message),
            b"" if request_id is None else b", 'id': %d" % request_id,
        )
    expected = Send(to, message.encode("utf-8", "surrogatepass"), id=request_id)
    return raw, expected


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_bytes_split_anywhere_give_requests_or_decode_errors(
    data: bytes, cuts: list[int]
) -> None:
    decoder = RequestDecoder(max_size=256)
    for chunk in split(data, cuts):
        for event in decoder.feed(chunk):
            assert isinstance(event, Connect | Send | Ping | DecodeError)
        assert decoder.pending <= 256


@settings(max_examples=300, deadline=None)
@given(
    st.lists(send_requests(), min_size=1, max_size=8),
    st.lists(st.sampled_from([b"", b"\n", b" ", b"\r\n", b","]), min_size=8),
    st.lists(st.integers(0, 10_000), max_size=12),
)
def test_valid_requests_split_anywhere_decode_exactly(
    requests: list[tuple[bytes, Send]], separators: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(
        raw + sep for (raw, _), sep in zip(requests, separators, strict=False)
    )
    assert decode(*split(stream, cuts)) == [expected for _, expected in requests]


@settings(max_examples=300, deadline=None)
@given(send_requests())
def test_the_fast_path_agrees_with_the_full_parser(
    request: tuple[bytes, Send],
) -> None:
    raw, expected = request
    slow = from_dict(parse_dict(raw.decode("utf-8", "surrogateescape")))
    assert decode(raw) == [slow] == [expected]
