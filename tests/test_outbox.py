"""The outbox: in order, kept until acknowledged, bounded, never dropped silently."""

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modembridge.outbox import Outbox, OutboxFull, Outgoing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_outbox(**kwargs: Any) -> tuple[Outbox, list[tuple[bytes, str]], Clock]:
    reports: list[tuple[bytes, str]] = []
    clock = Clock()

    def undeliverable(message: Outgoing, reason: str) -> None:
        reports.append((message.data, reason))

    outbox = Outbox(undeliverable, clock=clock, **kwargs)
    return outbox, reports, clock


def send_all(outbox: Outbox, first_id: int = 1) -> list[bytes]:
    sent = []
    request_id = first_id
    while (message := outbox.next_ready()) is not None:
        outbox.sent(message, request_id)
        sent.append(message.data)
        request_id += 1
    return sent


def test_messages_go_out_in_order_and_leave_on_ack() -> None:
    outbox, reports, _ = make_outbox(window=3)
    for text in (b"1", b"2", b"3"):
        outbox.put("B", text)

    assert send_all(outbox) == [b"1", b"2", b"3"]
    for request_id in (1, 2, 3):
        outbox.acked(request_id)

    assert len(outbox) == 0
    assert reports == []


def test_in_flight_messages_are_resent_in_order_after_a_lost_connection() -> None:
    outbox, _, _ = make_outbox(window=5)
    for text in (b"1", b"2", b"3"):
        outbox.put("B", text)
    send_all(outbox)
    outbox.acked(1)

    assert outbox.connection_lost() == 2
    outbox.put("B", b"4")

    assert send_all(outbox, first_id=10) == [b"2", b"3", b"4"]


def test_target_offline_waits_and_retries_keeping_order_for_that_target() -> None:
    outbox, reports, clock = make_outbox(retry_delay=1.0, window=5)
    outbox.put("B", b"b1")
    outbox.put("B", b"b2")
    outbox.put("C", b"c1")
    first = outbox.next_ready()
    assert first is not None
    outbox.sent(first, 1)

    outbox.refused(1, "not connected")

    assert send_all(outbox, first_id=2) == [b"c1"]
    clock.now += 1.0
    assert send_all(outbox, first_id=3) == [b"b1", b"b2"]
    assert reports == []


def test_the_window_keeps_a_later_message_from_overtaking_a_refused_one() -> None:
    outbox, _, clock = make_outbox(retry_delay=1.0)
    for text in (b"1", b"2", b"3"):
        outbox.put("B", text)
    outbox.put("C", b"c")

    assert send_all(outbox) == [b"1", b"c"]
    outbox.refused(1, "not connected")
    assert send_all(outbox, first_id=3) == []
    clock.now += 1.0
    assert send_all(outbox, first_id=4) == [b"1"]
    outbox.acked(4)
    assert send_all(outbox, first_id=5) == [b"2"]


def test_a_permanent_refusal_is_reported() -> None:
    outbox, reports, _ = make_outbox()
    outbox.put("B", b"x")
    send_all(outbox)

    outbox.refused(1, "wrong format")

    assert reports == [(b"x", "relay refused it: wrong format")]
    assert len(outbox) == 0


def test_messages_not_sent_within_patience_are_reported() -> None:
    outbox, reports, clock = make_outbox(patience=10.0)
    outbox.put("B", b"old")
    clock.now += 5
    outbox.put("B", b"new")
    clock.now += 5

    outbox.expire()

    assert reports == [(b"old", "not sent within 10 s")]
    assert len(outbox) == 1


def test_refusal_after_patience_is_reported_instead_of_retried() -> None:
    outbox, reports, clock = make_outbox(patience=10.0)
    outbox.put("B", b"x")
    send_all(outbox)
    clock.now += 11

    outbox.refused(1, "not connected")

    assert reports == [(b"x", "relay refused it: not connected")]


def test_the_bound_refuses_more_messages_loudly() -> None:
    outbox, _, _ = make_outbox(limit=2)
    outbox.put("B", b"1")
    outbox.put("B", b"2")

    with pytest.raises(OutboxFull, match="2 messages"):
        outbox.put("B", b"3")


def test_abandon_reports_everything_left_in_order() -> None:
    outbox, reports, _ = make_outbox(window=2)
    for text in (b"1", b"2", b"3"):
        outbox.put("B", text)
    first = outbox.next_ready()
    assert first is not None
    outbox.sent(first, 1)

    outbox.abandon("stopped")

    assert reports == [(b"1", "stopped"), (b"2", "stopped"), (b"3", "stopped")]


async def test_wait_ready_wakes_when_a_message_is_put() -> None:
    outbox = Outbox(lambda message, reason: None)
    waiter = asyncio.create_task(outbox.wait_ready())
    await asyncio.sleep(0)
    assert not waiter.done()

    outbox.put("B", b"hello")

    message = await asyncio.wait_for(waiter, 1)
    assert message.data == b"hello"


async def test_expire_forever_reports_on_time_with_a_real_clock() -> None:
    reports: list[str] = []
    outbox = Outbox(lambda m, reason: reports.append(reason), patience=0.05)
    expiry = asyncio.create_task(outbox.expire_forever())
    outbox.put("B", b"x")

    await asyncio.wait_for(outbox.drained(), 2)

    expiry.cancel()
    await asyncio.gather(expiry, return_exceptions=True)
    assert reports == ["not sent within 0.05 s"]


OPERATIONS: tuple[str, ...] = ("put", "put", "send", "send", "ack", "ack", "refuse")
OPERATIONS += ("gone", "lost", "tick")


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(OPERATIONS),
            st.integers(0, 3),
        ),
        max_size=60,
    ),
    st.integers(1, 3),
)
def test_every_message_is_acknowledged_or_reported_exactly_once(
    operations: list[tuple[str, int]], window: int
) -> None:
    outbox, reports, clock = make_outbox(limit=5, patience=5.0, window=window)
    handed: list[bytes] = []
    acked: list[bytes] = []
    in_flight: list[int] = []
    next_id = 1
    for operation, n in operations:
        if operation == "put" and len(outbox) < outbox.limit:
            target = "BC"[n % 2]
            handed.append(f"{target}{len(handed):03d}".encode())
            outbox.put(target, handed[-1])
        elif operation == "send" and (message := outbox.next_ready()) is not None:
            outbox.sent(message, next_id)
            in_flight.append(next_id)
            next_id += 1
        elif operation in ("ack", "refuse", "gone") and in_flight:
            request_id = in_flight.pop(n % len(in_flight))
            if operation == "ack":
                message = outbox.acked(request_id)
                assert message is not None
                acked.append(message.data)
            else:
                reason = "not connected" if operation == "refuse" else "wrong format"
                outbox.refused(request_id, reason)
        elif operation == "lost":
            outbox.connection_lost()
            in_flight.clear()
        elif operation == "tick":
            clock.now += n
            outbox.expire()

    outbox.abandon("stopped")

    reported = [data for data, _ in reports]
    assert sorted(acked + reported) == sorted(handed)
    if window == 1:
        for first_byte in b"BC":
            to_target = [data for data in acked if data[0] == first_byte]
            assert to_target == sorted(to_target)
