"""The relay's one periodic timer, and the round it starts: heartbeats to every card,
idle checks.

A round to tens of thousands of cards is one write system call per card, about 7 µs
each on loopback: done in one callback it would hold the event loop, and every
card's relaying with it, for a tenth of a second or more. So a round walks its cards
in slices of at most about :data:`SLICE_SECONDS` each and gives the loop back between
slices, where reads and writes of busy cards are served as usual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")

# How long one slice of a round may hold the loop: a message relayed during a round
# waits about that long at most. The clock is read every CHECK_EVERY items (about
# 0.1 ms of heartbeats), which keeps reading it out of the cost of a round.
SLICE_SECONDS = 0.001
CHECK_EVERY = 16


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds on the running loop, with no task."""

    __slots__ = ("_beat", "_handle", "_interval", "_loop", "_next")

    def __init__(self, interval: float, beat: Callable[[], None]) -> None:
        if interval <= 0:
            raise ValueError("the heartbeat interval must be positive")
        self._interval = interval
        self._beat = beat
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next = 0.0

    def start(self) -> None:
        """Schedule the first beat one interval from now."""
        self._loop = asyncio.get_running_loop()
        self._next = self._loop.time()
        self._schedule()

    def stop(self) -> None:
        """Cancel the next beat."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        assert self._loop is not None
        # Counting from the planned time, not from now, keeps the period exact; after
        # a stall longer than a period the missed beats are not made up.
        self._next = max(self._next + self._interval, self._loop.time())
        self._handle = self._loop.call_at(self._next, self._fire)

    def _fire(self) -> None:
        self._schedule()
        self._beat()


class Round(Generic[Item]):
    """Calls ``visit`` on each of ``items`` in order, in slices that hold the running
    loop for about ``slice_seconds`` (default :data:`SLICE_SECONDS`) at most, with
    the loop's other work in between."""

    __slots__ = ("_handle", "_index", "_items", "_slice_seconds", "_visit")

    def __init__(
        self,
        items: Sequence[Item],
        visit: Callable[[Item], object],
        slice_seconds: float | None = None,
    ) -> None:
        self._items = items
        self._visit = visit
        self._slice_seconds = SLICE_SECONDS if slice_seconds is None else slice_seconds
        self._index = 0
        self._handle: asyncio.Handle | None = None

    @property
    def done(self) -> bool:
        """Whether every item was visited, or the round was cancelled."""
        return self._index >= len(self._items)

    @property
    def left(self) -> int:
        """How many items are still to be visited."""
        return len(self._items) - self._index

    def start(self) -> None:
        """Visit the first slice now and schedule the rest."""
        self._slice()

    def cancel(self) -> None:
        """Visit nothing more."""
        self._index = len(self._items)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _slice(self) -> None:
        items, visit, index = self._items, self._visit, self._index
        end = len(items)
        deadline = time.perf_counter() + self._slice_seconds
        while index < end:
            stop = min(index + CHECK_EVERY, end)
            for item in items[index:stop]:
                visit(item)
            index = stop
            if time.perf_counter() >= deadline:
                break
        self._index = index
        if index < end:
            self._handle = asyncio.get_running_loop().call_soon(self._slice)
        else:
            self._handle = None
