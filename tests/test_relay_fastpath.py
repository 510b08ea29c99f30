"""The fast patterns for connects and for requests completed by a later read give the
very requests the literal parser gives."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from relayserver.codec import Event, RequestDecoder
from relayserver.errors import DecodeError
from relayserver.literal import parse_dict
from relayserver.requests import Connect, Send, from_dict

names = st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)


@st.composite
def connect_requests(draw: st.DrawFn) -> bytes:
    fields: dict[str, object] = {"action": "connect", "from": draw(names)}
    if draw(st.booleans()):
        fields["proto"] = draw(st.integers(0, 12))
    if draw(st.booleans()):
        fields["id"] = draw(st.integers(0, 10**9) | st.text(max_size=5))
    if draw(st.booleans()):
        spaced = draw(st.booleans())
        separators = (", ", ": ") if spaced else (",", ":")
        return json.dumps(fields, separators=separators).encode(
            "utf-8", "surrogatepass"
        )
    body = ",".join(f"{key!r}:{value!r}" for key, value in fields.items())
    return ("{" + body + "}").encode("utf-8", "surrogatepass")


def slow(raw: bytes) -> object:
    """What the literal parser alone makes of ``raw``; an error by its reason."""
    try:
        return from_dict(parse_dict(raw.decode("utf-8", "surrogateescape")))
    except DecodeError as error:
        return error.reason


def shown(events: list[Event]) -> list[object]:
    return [e.reason if isinstance(e, DecodeError) else e for e in events]


@settings(max_examples=300, deadline=None)
@given(connect_requests(), st.integers(1, 200))
def test_a_connect_whole_or_split_decodes_as_the_literal_parser_reads_it(
    raw: bytes, cut: int
) -> None:
    expected = slow(raw)
    assert isinstance(expected, Connect | str)
    whole = RequestDecoder().feed(raw)
    decoder = RequestDecoder()
    split = decoder.feed(raw[: cut % len(raw)]) + decoder.feed(raw[cut % len(raw) :])
    assert shown(whole) == shown(split) == [expected]


def test_a_send_completed_by_a_later_read_is_the_same_send() -> None:
    raw = b'{"action": "send", "to": "B", "message": "hi", "id": 4}'
    for cut in range(1, len(raw)):
        decoder = RequestDecoder()
        events = decoder.feed(raw[:cut]) + decoder.feed(raw[cut:])
        assert events == [Send("B", b"hi", id=4)]
