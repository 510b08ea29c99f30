"""Real TCP connections that the simulated module opens for its host.

When the host asks the module to open a socket, the simulator resolves the name and
connects from this machine with asyncio. Bytes from the far end are handed to the
personality, which turns them into the module's URCs or keeps them for the host to
read; the far end closing is reported the same way. Reading from the network pauses
while the module's receive buffer is full, which is TCP flow control doing what the
module's buffer limit does on hardware.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
from typing import Protocol

logger = logging.getLogger(__name__)

# How many unread bytes a socket keeps before it stops reading from the network.
RECEIVE_BUFFER = 65536


class OpenFailure(enum.Enum):
    """Why a connection could not be made."""

    DNS = "name not resolved"
    REFUSED = "connection refused"
    TIMEOUT = "connect timed out"
    NETWORK = "network error"


class OpenError(Exception):
    """Opening a connection failed; ``reason`` says how."""

    def __init__(self, reason: OpenFailure, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


class SocketEvents(Protocol):
    """What a socket tells its personality."""

    def socket_data(self, sock: TcpSocket, data: bytes) -> None:
        """Bytes arrived from the far end."""

    def socket_closed(self, sock: TcpSocket) -> None:
        """The far end closed, or the connection broke."""


class TcpSocket(asyncio.Protocol):
    """One connection of the module: its counters and the bytes not yet read."""

    def __init__(self, link: int, events: SocketEvents) -> None:
        self.link = link
        self._events = events
        self.transport: asyncio.Transport | None = None
        self.remote_ip = ""
        self.remote_port = 0
        self.local_port = 0
        self.unread = bytearray()
        self.received = 0
        self.read = 0
        self.sent = 0
        self.connected = False
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Note the transport and both addresses of the new connection."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connected = True
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if peer:
            self.remote_ip, self.remote_port = str(peer[0]), int(peer[1])
        if local:
            self.local_port = int(local[1])

    def data_received(self, data: bytes) -> None:
        """Count bytes from the far end and hand them to the personality."""
        self.received += len(data)
        self._events.socket_data(self, data)

    def eof_received(self) -> bool:
        """The far end finished sending: close the connection."""
        # Close our side too: a module has no half-open sockets to offer its host.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Report the close once, if the connection had been made."""
        was_connected = self.connected
        self.connected = False
        self.transport = None
        if was_connected:
            self._events.socket_closed(self)

    def send(self, data: bytes) -> bool:
        """Write to the far end; False when the connection is gone."""
        if self.transport is None or not self.connected:
            return False
        self.transport.write(data)
        self.sent += len(data)
        return True

    @property
    def unacked(self) -> int:
        """Bytes written but still in our send buffer."""
        if self.transport is None:
            return 0
        return self.transport.get_write_buffer_size()

    def keep(self, data: bytes) -> None:
        """Store received bytes for the host, pausing the network when full."""
        self.unread += data
        if len(self.unread) >= RECEIVE_BUFFER and self.transport and not self._paused:
            self.transport.pause_reading()
            self._paused = True

    def take(self, size: int) -> bytes:
        """Remove and return up to ``size`` unread bytes."""
        data = bytes(self.unread[:size])
        del self.unread[:size]
        self.read += len(data)
        if self._paused and len(self.unread) < RECEIVE_BUFFER // 2:
            self.resume()
        return data

    def pause(self) -> None:
        """Stop reading from the network (the host is not keeping up)."""
        if self.transport is not None and not self._paused:
            self.transport.pause_reading()
            self._paused = True

    def resume(self) -> None:
        """Read from the network again."""
        if self.transport is not None and self._paused:
            self.transport.resume_reading()
        self._paused = False

    def close(self) -> None:
        """Close the connection without reporting it (the host or network did it)."""
        self.connected = False
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def open_tcp(
    host: str,
    port: int,
    link: int,
    events: SocketEvents,
    seconds: float,
    *,
    name: str = "?",
) -> TcpSocket:
    """Resolve ``host`` and connect within ``seconds``; raise ``OpenError``."""
    loop = asyncio.get_running_loop()
    address = await resolve(host, port)
    try:
        async with asyncio.timeout(seconds):
            _transport, sock = await loop.create_connection(
                lambda: TcpSocket(link, events), address, port
            )
    except TimeoutError as error:
        raise OpenError(OpenFailure.TIMEOUT, f"{host}:{port}") from error
    except ConnectionRefusedError as error:
        raise OpenError(OpenFailure.REFUSED, f"{host}:{port}") from error
    except OSError as error:
        raise OpenError(OpenFailure.NETWORK, f"{host}:{port}: {error}") from error
    logger.info("modem[%s]: link %d connected to %s:%d", name, link, address, port)
    return sock


async def resolve(host: str, port: int = 0) -> str:
    """The first IPv4 address of ``host``; raise ``OpenError`` when it has none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host, port, family=socket.AF_INET, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError) as error:
        raise OpenError(OpenFailure.DNS, f"{host}: {error}") from error
    if not infos:
        raise OpenError(OpenFailure.DNS, host)
    return str(infos[0][4][0])
