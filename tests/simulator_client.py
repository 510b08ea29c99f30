"""A tiny raw serial client for the simulator tests: bytes in, bytes out.

It opens the simulator's device with real pyserial and never interprets AT beyond
waiting for a marker, so the tests check the module's exact bytes.
"""

from __future__ import annotations

import asyncio
import contextlib

import serial

TIMEOUT = 3.0


class RawClient:
    """A pyserial port polled from asyncio, with a buffer of what was not yet taken."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, 115200, timeout=0)
        self.buffer = bytearray()
        self.reads = 0

    def write(self, data: bytes) -> None:
        """Write raw bytes to the module."""
        self.port.write(data)

    def _poll(self) -> None:
        data = self.port.read(65536)
        if data:
            self.reads += 1
            self.buffer += data

    async def read_until(self, marker: bytes, seconds: float = TIMEOUT) -> bytes:
        """Everything up to and including ``marker``; fail after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._poll()
        while marker not in self.buffer:
            if loop.time() > deadline:
                raise AssertionError(f"no {marker!r} in {bytes(self.buffer)!r}")
            await asyncio.sleep(0.002)
            self._poll()
        end = self.buffer.index(marker) + len(marker)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    async def read_exactly(self, size: int, seconds: float = TIMEOUT) -> bytes:
        """Exactly ``size`` bytes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._poll()
        while len(self.buffer) < size:
            if loop.time() > deadline:
                raise AssertionError(f"only {bytes(self.buffer)!r} of {size} bytes")
            await asyncio.sleep(0.002)
            self._poll()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def read_quiet(self, quiet: float = 0.1) -> bytes:
        """Whatever arrives until the line has been silent for ``quiet`` seconds."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        size = len(self.buffer)
        while True:
            # Poll before judging the silence: a test process that was not
            # scheduled for a while must still see what arrived meanwhile.
            self._poll()
            if len(self.buffer) != size:
                size, last = len(self.buffer), loop.time()
            elif loop.time() - last >= quiet:
                break
            await asyncio.sleep(0.005)
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    async def command(self, line: str, until: bytes = b"OK\r\n") -> bytes:
        """Send ``line`` with CR and return the reply up to ``until``."""
        self.write(line.encode("latin-1") + b"\r")
        return await self.read_until(until)

    async def read_until_vanished(self, seconds: float = TIMEOUT) -> None:
        """Read until reading raises because the device went away (or time is up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            self._poll()
            await asyncio.sleep(0.01)

    def close(self) -> None:
        """Close the port; a vanished device is fine."""
        with contextlib.suppress(OSError, serial.SerialException):
            self.port.close()


class EchoServer:
    """A loopback TCP server that records what it got and can talk and hang up."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.peers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Listen on an ephemeral loopback port."""
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.peers.append((reader, writer))
        self.connected.set()

    async def peer(
        self, index: int = 0
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The ``index``-th accepted connection, waiting for it."""
        async with asyncio.timeout(TIMEOUT):
            while len(self.peers) <= index:
                self.connected.clear()
                await self.connected.wait()
        return self.peers[index]

    async def stop(self) -> None:
        """Close every connection and the listener."""
        for _reader, writer in self.peers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
