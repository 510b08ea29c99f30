"""The relay's one periodic timer: heartbeats to every card, idle checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


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
