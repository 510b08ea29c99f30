"""What the simulated module writes: in order, late, in pieces, or not at all.

Every byte the module prints goes through one queue, so echo, replies, URCs and
payloads keep their order. Faults act here: a delay per write (latency towards the
host), writes cut into fragments of N bytes, and a hung module that holds its output.
A callback attached to an item runs once its bytes are on the wire; the engine uses it
to know when the host can have seen a prompt or a final result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modembridge.wirelog import WIRE, split_lines, visible

logger = logging.getLogger(__name__)

# Pause between two fragments, so that the host's reads really see them apart.
_FRAGMENT_GAP = 0.002


@dataclass
class _Item:
    data: bytes
    due: float
    on_written: Callable[[], None] | None


class Transmitter:
    """An ordered output queue towards the host, with latency and fragmentation."""

    def __init__(
        self,
        write: Callable[[bytes], Awaitable[None]],
        name: str,
        latency: float = 0.0,
        fragment: int | None = None,
    ) -> None:
        self._write = write
        self.name = name
        self.latency = latency
        self.fragment = fragment
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._running = asyncio.Event()
        self._running.set()
        self._backlog = 0
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def backlog(self) -> int:
        """Bytes queued and not yet written."""
        return self._backlog

    def start(self) -> None:
        """Start writing queued items on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop writing and forget what was queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.discard()

    def discard(self) -> None:
        """Drop everything queued (the module lost power)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._backlog = 0
        self._progress.set()

    def send(self, data: bytes, on_written: Callable[[], None] | None = None) -> None:
        """Queue ``data``; ``on_written`` runs once it has reached the terminal."""
        due = asyncio.get_running_loop().time() + self.latency
        self._backlog += len(data)
        self._queue.put_nowait(_Item(data, due, on_written))

    def hold(self) -> None:
        """Stop writing until ``release``: the module stopped answering."""
        self._running.clear()

    def release(self) -> None:
        """Write again what was held."""
        self._running.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self._queue.get()
            delay = item.due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._running.wait()

            await self._write_item(item.data)
            self._backlog = max(0, self._backlog - len(item.data))
            self._progress.set()
            if item.on_written is not None:
                item.on_written()

    async def wait_below(self, limit: int) -> None:
        """Return once no more than ``limit`` bytes wait to be written."""
        while self._backlog > limit:
            self._progress.clear()
            await self._progress.wait()

    async def _write_item(self, data: bytes) -> None:
        if logger.isEnabledFor(WIRE):
            for piece in split_lines(data):
                logger.log(WIRE, "modem[%s]: < %s", self.name, visible(piece))
        if not self.fragment:
            await self._write(data)
            return
        # The gap goes between fragments only: once the last byte is out the host
        # may answer at once, and the item's callback must already have run.
        for start in range(0, len(data), self.fragment):
            if start:
                await asyncio.sleep(_FRAGMENT_GAP)
            await self._write(data[start : start + self.fragment])
