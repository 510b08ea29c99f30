"""A raw TCP card for the relay tests, and a relay running in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

from relayserver.server import RelayConfig, RelayServer

TIMEOUT = 5.0


class RawCard:
    """A card that speaks bytes, as a deployed card or a person at a raw socket does."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, **kwargs: Any) -> RawCard:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, **kwargs)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def expect(self, expected: bytes) -> None:
        """Read exactly as many bytes as ``expected`` has and compare them."""
        got = await asyncio.wait_for(self.reader.readexactly(len(expected)), TIMEOUT)
        assert got == expected

    async def request(self, data: bytes, reply: bytes) -> None:
        await self.send(data)
        await self.expect(reply)

    async def connect(self, name: str) -> None:
        await self.request(
            b"{'action':'connect','from':'%s'}" % name.encode(), b"connect_success"
        )

    async def line(self) -> dict[str, Any]:
        """Read one version 2 line as a dict."""
        raw = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert raw.endswith(b"\n"), raw
        value = json.loads(raw)
        assert isinstance(value, dict)
        return value

    async def connect_v2(self, name: str, **fields: Any) -> dict[str, Any]:
        request = {"action": "connect", "from": name, "proto": 2, **fields}
        await self.send(json.dumps(request).encode())
        return await self.line()

    async def closed_by_relay(self) -> bytes:
        """Wait until the relay closes the connection; return what came before."""
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def open_cards(port: int, count: int) -> list[RawCard]:
    return [await RawCard.open(port) for _ in range(count)]


@contextlib.asynccontextmanager
async def running_relay(**settings: Any) -> AsyncIterator[RelayServer]:
    """A relay on a free loopback port, closed afterwards."""
    settings.setdefault("heartbeat", 30.0)
    server = RelayServer(RelayConfig(host="127.0.0.1", port=0, **settings))
    await server.start()
    try:
        yield server
    finally:
        await server.close()


class CardEvents:
    """Waits for the relay's connect and disconnect events of a card."""

    def __init__(self, server: RelayServer) -> None:
        self._seen: list[tuple[str, str]] = []
        self._changed = asyncio.Event()
        server.add_listener(self._record)

    def _record(self, event: str, card: str) -> None:
        self._seen.append((event, card))
        self._changed.set()

    async def wait_for(self, event: str, card: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            while (event, card) not in self._seen:
                self._changed.clear()
                await self._changed.wait()
        self._seen.remove((event, card))


def unread_socket(port: int, receive_buffer: int = 4096) -> socket.socket:
    """A blocking socket with a small receive buffer, for a card that never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    return sock


async def send_until_refused(sender: RawCard, to: str) -> int:
    """Send big messages to ``to`` until the relay says it is not connected; the
    number of messages it acknowledged before."""
    body = "z" * 30_000
    for acknowledged in range(2000):
        await sender.send(b'{"action":"send","to":"%s","message":"%s"}' % (
            to.encode(), body.encode()
        ))  # fmt: skip
        reply = await sender.line()
        while "heartbeat" in reply:
            reply = await sender.line()
        if reply != {"ok": "send"}:
            assert reply == {"error": "not connected", "to": to}
            return acknowledged
    raise AssertionError("the relay kept buffering for a card that never reads")
