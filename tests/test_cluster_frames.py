"""The backplane's send requests and replies as bytes: any bytes in, no crash out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relayserver.backplane import (
    Delivery,
    _parse_outcomes,
    _parse_send_frame,
    _send_frame,
    subject_token,
)

names = st.text(min_size=1, max_size=40)
deadlines = st.floats(allow_nan=False, allow_infinity=False)
messages = st.lists(st.tuples(st.binary(max_size=200), st.booleans()), min_size=1)


@given(st.none() | names, messages, deadlines)
def test_a_send_request_reads_back_as_it_was_written(
    sender: str | None, batch: list[tuple[bytes, bool]], deadline: float
) -> None:
    frame = _send_frame(sender, batch, deadline)

    assert _parse_send_frame(frame) == (sender, batch, deadline)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_send_request_or_none(data: bytes) -> None:
    parsed = _parse_send_frame(data)

    if parsed is not None:
        sender, batch, deadline = parsed
        assert batch
        assert _send_frame(sender, batch, deadline) == data


@given(st.binary(max_size=20), st.integers(min_value=1, max_value=20))
def test_any_reply_is_outcomes_or_none(data: bytes, count: int) -> None:
    outcomes = _parse_outcomes(data, count)

    if outcomes is not None:
        assert len(outcomes) == count
        assert set(outcomes) <= {Delivery.DELIVERED, Delivery.NOT_CONNECTED}


@given(names, names)
def test_distinct_names_get_distinct_subject_tokens(one: str, two: str) -> None:
    token = subject_token(one)

    assert token
    assert not set(token) & set(". *>\t\r\n")
    assert len(token) <= 200
    assert (token == subject_token(two)) == (one == two)
