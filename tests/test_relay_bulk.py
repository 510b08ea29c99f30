"""Runs of plain sends taken whole: the same requests, replies and deliveries, byte
for byte, as taking the sends one by one, whatever else is mixed in and wherever the
bytes are split."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relayclient_raw import RawCard, running_relay

from relayserver.codec import RequestDecoder, SendRun
from relayserver.errors import DecodeError
from relayserver.limits import Limits
from relayserver.requests import Send

MAX_SIZE = 160


def canonical(to: bytes, message: bytes) -> bytes:
    return b"{'action':'send','to':'%s','message':'%s'}" % (to, message)


# Message bytes a card may send in the plain spelling, raw non-UTF-8 bytes and
# braces included, and a few that push a send into the general path.
plain_bytes = st.binary(max_size=40).map(
    lambda b: b.replace(b"'", b"q").replace(b"\\", b"s").replace(b"\n", b"n")
)
names = st.sampled_from([b"B", b"C", b"S", b"V", b"X", b"caf\xc3\xa9", b'q"x'])
requests = st.one_of(
    st.builds(canonical, names, plain_bytes),
    st.builds(canonical, names, plain_bytes),
    st.builds(canonical, names, plain_bytes),
    st.builds(lambda m: canonical(b"B", b"x" * MAX_SIZE + m), plain_bytes),
    st.builds(
        lambda m: b"{'action': 'send', 'to': 'C', 'message': '%s'}" % m, plain_bytes
    ),
    st.builds(
        lambda n: b'{"action":"send","to":"B","message":"m","id":%d}' % n,
        st.integers(0, 99),
    ),
    st.just(b"{'action':'send','to':'B','message':'it\\'s'}"),
    st.just(b"{'action':'ping'}"),
    st.just(b"{'action':'connect','from':'S'}"),
    st.just(b"{'action':'send','to':'B'}"),
    st.just(b"{'action':'send','to':'B','message':'x'"),  # completed by the next one
    st.just(b"not a request\n"),
    st.just(b"}"),
)
separators = st.sampled_from([b"", b"", b"", b"\n", b" ", b";"])


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """A card's bytes, cut into reads anywhere."""
    parts = draw(st.lists(st.tuples(requests, separators), min_size=1, max_size=30))
    stream = b"".join(request + separator for request, separator in parts)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=8))))
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges) if b > a]


def shown(events: Sequence[object]) -> list[object]:
    """Events as comparable values: a decode error by what it says."""
    return [
        (e.reason, e.data, e.request_id) if isinstance(e, DecodeError) else e
        for e in events
    ]


def expanded(run: SendRun) -> dict[bytes, list[bytes]]:
    return {to: list(messages) for to, messages in run.messages.items()}


def per_target(events: Sequence[object]) -> dict[bytes, list[bytes]]:
    grouped: dict[bytes, list[bytes]] = {}
    for event in events:
        assert isinstance(event, Send)
        assert event.id is None
        assert not event.binary
        name = event.to.encode("utf-8", "surrogateescape")
        grouped.setdefault(name, []).append(event.payload)
    return grouped


@settings(max_examples=400, deadline=None)
@given(streams())
def test_a_run_holds_exactly_the_sends_the_decoder_gives_one_by_one(
    reads: list[bytes],
) -> None:
    one_by_one, in_runs = RequestDecoder(MAX_SIZE), RequestDecoder(MAX_SIZE)
    for data in reads:
        events = one_by_one.feed(data)
        run = in_runs.maybe_sends(data)
        if run is None:
            assert shown(in_runs.feed(data)) == shown(events)
        else:
            assert per_target(events[: run.count]) == expanded(run)
            assert shown(in_runs.take(run)) == shown(events[run.count :])
        assert in_runs.pending == one_by_one.pending


def test_a_run_stops_before_a_request_in_another_spelling() -> None:
    decoder = RequestDecoder()
    data = canonical(b"B", b"1") + canonical(b"C", b"2") + canonical(b"B", b"3")
    run = decoder.maybe_sends(data + b"{'action':'ping'}")
    assert run is None  # a run is taken only when it tiles the read
    run = decoder.maybe_sends(data + canonical(b"B", b"4")[:20])
    assert run is not None
    assert (run.count, expanded(run)) == (3, {b"B": [b"1", b"3"], b"C": [b"2"]})
    assert decoder.take(run) == []
    assert decoder.pending == 20
    assert decoder.feed(canonical(b"B", b"4")[20:]) == [Send("B", b"4")]


def test_a_send_longer_than_the_bound_is_left_to_the_decoder() -> None:
    decoder = RequestDecoder(max_size=64)
    data = canonical(b"B", b"x" * 40) + canonical(b"B", b"y")
    assert decoder.maybe_sends(data) is None
    events = decoder.feed(data)
    assert isinstance(events[0], DecodeError)
    assert events[1] == Send("B", b"y")


class GeneralDecoder(RequestDecoder):
    """The decoder as it was before runs: it never offers one."""

    def maybe_sends(self, data: bytes) -> SendRun | None:
        return None


async def exchange(reads: list[bytes], *, bulk: bool) -> dict[str, bytes]:
    """What each card receives when card S sends ``reads`` to B, C, V (version 2),
    itself and X (nobody)."""
    limits = Limits(max_request_size=MAX_SIZE)
    async with running_relay(limits=limits) as relay:
        cards = {name: await RawCard.open(relay.port) for name in "SBCV"}
        for name in "SBC":
            await cards[name].connect(name)
        await cards["V"].connect_v2("V")
        if not bulk:
            # The general path alone: the decoder never offers a run.
            for connection in relay._connections:
                connection._decoder = GeneralDecoder(MAX_SIZE)
        for data in reads:
            await cards["S"].send(data)
        return await received_until_marks(cards)


async def received_until_marks(cards: dict[str, RawCard]) -> dict[str, bytes]:
    """Close the stream with a mark to each card; what each got before it."""
    # Ends any request left open, however deep, as garbage at worst.
    await cards["S"].send(b"}" * 20 + b"\n")
    got: dict[str, bytes] = {}
    for name in "BCVS":
        await cards["S"].send(canonical(name.encode(), b"END"))
        got[name] = await read_until(cards[name], b"END")
    await cards["S"].expect(b"send_success")
    for card in cards.values():
        await card.close()
    return got


async def read_until(card: RawCard, mark: bytes) -> bytes:
    data = await asyncio.wait_for(card.reader.readuntil(mark), 5.0)
    return data[: -len(mark)]


@settings(max_examples=40, deadline=None)
@given(streams())
def test_the_relay_answers_and_delivers_the_same_with_and_without_runs(
    reads: list[bytes],
) -> None:
    fast = asyncio.run(exchange(reads, bulk=True))
    general = asyncio.run(exchange(reads, bulk=False))
    assert fast == general


async def test_a_run_is_delivered_in_order_and_acknowledged_after() -> None:
    async with running_relay() as relay:
        a, b, c = [await RawCard.open(relay.port) for _ in range(3)]
        await b.connect("B")
        await c.connect("C")
        run = b"".join(
            canonical(b"BC"[i % 2 : i % 2 + 1], b"m%d" % i) for i in range(9)
        )
        await a.send(run)
        await a.expect(b"send_success" * 9)
        await b.expect(b"m0m2m4m6m8")
        await c.expect(b"m1m3m5m7")
        for card in (a, b, c):
            await card.close()


@pytest.mark.parametrize(
    ("target", "reply"),
    [(b"X", b"X not connect"), (b"A", b"send_success")],
)
async def test_a_run_with_a_send_the_relay_cannot_take_whole_keeps_its_order(
    target: bytes, reply: bytes
) -> None:
    async with running_relay() as relay:
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.connect("A")
        await b.connect("B")
        await a.send(
            canonical(b"B", b"1") + canonical(target, b"2") + canonical(b"B", b"3")
        )
        expected_a = b"send_success" + (b"2" if target == b"A" else b"") + reply
        await a.expect(expected_a + b"send_success")
        await b.expect(b"13")
        for card in (a, b):
            await card.close()


async def test_a_run_to_a_version_2_card_is_converted() -> None:
    async with running_relay() as relay:
        a, v = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.connect("A")
        await v.connect_v2("V")
        await a.send(canonical(b"V", b"1") + canonical(b"V", b"2"))
        await a.expect(b"send_success" * 2)
        assert [await v.line(), await v.line()] == [
            {"from": "A", "message": "1"},
            {"from": "A", "message": "2"},
        ]
        for card in (a, v):
            await card.close()


async def test_with_authentication_a_run_from_an_unconnected_card_is_refused() -> None:
    async with running_relay(tokens={"B": "t"}) as relay:
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await b.request(
            b"{'action':'connect','from':'B','token':'t'}", b"connect_success"
        )
        await a.send(canonical(b"B", b"1") + canonical(b"B", b"2"))
        await a.expect(b"connect first" * 2)
        await b.request(canonical(b"B", b"self"), b"selfsend_success")
        for card in (a, b):
            await card.close()
