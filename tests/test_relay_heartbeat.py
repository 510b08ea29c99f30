"""Heartbeat rounds: every card is reached, in slices that leave the loop free for
relaying in between."""

from __future__ import annotations

import asyncio

import pytest
from relayclient_raw import RawCard, open_cards, running_relay

from relayserver import heartbeat
from relayserver.heartbeat import Round


async def run_round(items: list[int], **kwargs: float) -> list[object]:
    """Run a round over ``items`` while another callback reschedules itself until
    the round is done; return the order in which the visits and that callback ran."""
    loop = asyncio.get_running_loop()
    seen: list[object] = []
    done = loop.create_future()
    round_ = Round(items, seen.append, **kwargs)

    def other() -> None:
        seen.append("other")
        if round_.done:
            done.set_result(None)
        else:
            loop.call_soon(other)

    loop.call_soon(other)
    round_.start()
    await done
    return seen


async def test_a_round_visits_every_item_once_in_order() -> None:
    items = list(range(1000))
    seen = await run_round(items)
    assert [item for item in seen if item != "other"] == items


async def test_a_round_gives_the_loop_back_between_slices() -> None:
    items = list(range(10 * heartbeat.CHECK_EVERY))
    seen = await run_round(items, slice_seconds=0.0)
    visits = [i for i, item in enumerate(seen) if item != "other"]
    # With no time to spare, each slice is one clock check's worth of items, and
    # the other callback runs between every two slices.
    assert "other" in seen[visits[0] : visits[-1]]
    slices = "".join("v" if item != "other" else "o" for item in seen).split("o")
    assert [len(run) for run in slices if run] == [heartbeat.CHECK_EVERY] * 10


async def test_a_cancelled_round_visits_nothing_more() -> None:
    seen: list[int] = []
    round_ = Round(list(range(100)), seen.append, slice_seconds=0.0)
    round_.start()
    round_.cancel()
    await asyncio.sleep(0.01)
    assert round_.done
    assert seen == list(range(heartbeat.CHECK_EVERY))


async def test_a_sliced_round_to_many_cards_interleaves_with_relaying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One small slice at a time: a round to 300 cards takes many loop iterations.
    monkeypatch.setattr(heartbeat, "SLICE_SECONDS", 0.0)
    monkeypatch.setattr(heartbeat, "CHECK_EVERY", 4)
    async with running_relay(heartbeat=0.02) as relay:
        idle = await open_cards(relay.port, 300)
        a, b = await RawCard.open(relay.port), await RawCard.open(relay.port)
        await a.connect("A")
        await b.connect("B")
        await asyncio.sleep(0.03)
        for n in range(200):
            message = b"m%03d" % n
            await a.send(b"{'action':'send','to':'B','message':'%s'}" % message)
            # The pair's bytes are its own: heartbeats, acks and messages, each whole.
            await expect_skipping_heartbeats(a, b"send_success")
            await expect_skipping_heartbeats(b, message)
        for card in idle:
            await card.expect(b"heartbeat")
        for card in [*idle, a, b]:
            await card.close()


async def expect_skipping_heartbeats(card: RawCard, expected: bytes) -> None:
    """Read ``expected``, passing over any whole heartbeats before it."""
    while True:
        head = await asyncio.wait_for(card.reader.readexactly(1), 5.0)
        if head == expected[:1]:
            break
        await card.expect(b"eartbeat")
    await card.expect(expected[1:])
