"""A byte pipe: what the relay client speaks through, a module socket or plain TCP."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod


class BytePipe(ABC):
    """An ordered, reliable stream of bytes in both directions."""

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Send all of ``data``; raises ``ModemError`` when the pipe is broken."""

    @abstractmethod
    async def read(self) -> bytes:
        """The next bytes that arrived; ``b""`` once the far end has closed."""

    @abstractmethod
    async def close(self) -> None:
        """Close the pipe; closing twice is harmless."""


class TcpPipe(BytePipe):
    """A plain TCP connection from this host."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> TcpPipe:
        """Open a TCP connection to ``host:port``."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def write(self, data: bytes) -> None:
        """Send all of ``data`` and wait until the kernel took it."""
        self._writer.write(data)
        await self._writer.drain()

    async def read(self) -> bytes:
        """The next bytes that arrived; ``b""`` at end of stream."""
        return await self._reader.read(65536)

    async def close(self) -> None:
        """Close the connection and wait until it is closed."""
        if self._writer.is_closing():
            return
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
