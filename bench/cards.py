"""Cards on raw sockets: register one, register thousands, read exact replies."""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import time

from bench.dialects import Dialect

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

CARDS_PER_ADDRESS = 1000

# Reads and fillers a card passes over while waiting for one unit, at most.
MAX_FILLERS = 10_000

# SO_LINGER on, zero seconds: close() sends RST instead of FIN.
LINGER_RESET = struct.pack("ii", 1, 0)


class CardError(RuntimeError):
    """A server answered a card with something other than what the dialect says."""


def open_socket(port: int, timeout: float = 5.0) -> socket.socket:
    """A blocking loopback connection with Nagle off."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes (the socket's timeout bounds each wait)."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise CardError(f"connection closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def expect(sock: socket.socket, wanted: bytes, what: str) -> None:
    """Read ``len(wanted)`` bytes and fail unless they are ``wanted``."""
    got = recv_exact(sock, len(wanted))
    if got != wanted:
        raise CardError(f"{what}: expected {wanted[:80]!r}, got {got[:80]!r}")


class CardStream:
    """What one card receives, taken unit by unit, optionally skipping a filler.

    The relay writes each reply, delivery and heartbeat whole, so at every unit
    boundary the stream starts either with the unit expected or with the filler
    (a heartbeat), never with a mix.
    """

    def __init__(self, sock: socket.socket, name: str, skip: bytes = b"") -> None:
        self.sock = sock
        self.name = name
        self._skip = skip
        self._buffer = bytearray()

    def take(self, wanted: bytes, what: str) -> None:
        """Consume ``wanted`` (after any fillers); fail on anything else, or after
        ``MAX_FILLERS`` fillers in a row."""
        for _ in range(MAX_FILLERS):
            if self._skip and self._buffer.startswith(self._skip):
                del self._buffer[: len(self._skip)]
                continue
            if self._buffer.startswith(wanted):
                del self._buffer[: len(wanted)]
                return
            if not self._could_be_unit(wanted):
                raise CardError(
                    f"card[{self.name}] {what}: expected {wanted[:80]!r}, "
                    f"got {bytes(self._buffer[:80])!r}"
                )
            chunk = self.sock.recv(65536)
            if not chunk:
                raise CardError(f"card[{self.name}] {what}: connection closed")
            self._buffer += chunk
        raise CardError(f"card[{self.name}] {what}: only fillers arrived")

    def _could_be_unit(self, wanted: bytes) -> bool:
        """Whether the buffer may still grow into ``wanted`` or a filler."""
        head = bytes(self._buffer[: len(wanted)])
        if wanted.startswith(head):
            return True
        return bool(self._skip) and self._skip.startswith(
            bytes(self._buffer[: len(self._skip)])
        )


def register(port: int, dialect: Dialect, card: str) -> socket.socket:
    """A connected socket on which ``card`` is registered."""
    sock = open_socket(port)
    sock.sendall(dialect.register(card))
    expect(sock, dialect.registered(card), f"card[{card}] registering")
    return sock


def register_many(
    port: int, dialect: Dialect, cards: list[str], timeout: float = 120.0
) -> list[socket.socket]:
    """Register every card, a bounded number at a time; sockets in the same order."""
    return Registration(port, dialect, cards).run(timeout)


def source_address(index: int) -> str:
    """The loopback address card number ``index`` connects from.

    Linux looks for a free ephemeral port per (source, destination) pair, and that
    search grows slow once most of the ~28 000 ports point at one destination. Many
    source addresses in 127/8 keep every pair sparse.
    """
    group = index // CARDS_PER_ADDRESS
    return f"127.0.{1 + group // 250}.{2 + group % 250}"


class Registration:
    """Handshakes of many cards on one selector, ``CONCURRENCY`` in flight.

    Bounding the handshakes in flight keeps the listen backlog from overflowing:
    a dropped SYN costs a one-second retransmission and would measure the kernel's
    timer instead of the server. Mosquitto listens with a backlog of 100, so fewer
    than that are in flight.
    """

    CONCURRENCY = 64

    def __init__(self, port: int, dialect: Dialect, cards: list[str]) -> None:
        self.port = port
        self.dialect = dialect
        self.cards = cards
        self.done: list[socket.socket | None] = [None] * len(cards)
        self.pending: dict[int, tuple[int, bytearray]] = {}
        self.started = 0
        self.selector = selectors.DefaultSelector()

    def run(self, timeout: float) -> list[socket.socket]:
        """Register every card; raise ``CardError`` on a wrong answer or timeout."""
        deadline = time.monotonic() + timeout
        try:
            while self.started < len(self.cards) or self.pending:
                self._start_more()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    left = len(self.cards) - self.done.count(None)
                    raise CardError(f"{left} cards unregistered after {timeout:g} s")
                for key, events in self.selector.select(timeout=min(remaining, 1.0)):
                    self._advance(key.fileobj, events)  # type: ignore[arg-type]
        finally:
            self.selector.close()
        return [sock for sock in self.done if sock is not None]

    def _start_more(self) -> None:
        """Open connections until ``CONCURRENCY`` handshakes are in flight."""
        while self.started < len(self.cards) and len(self.pending) < self.CONCURRENCY:
            sock = _start_connect(self.port, self.started)
            self.selector.register(sock, selectors.EVENT_WRITE)
            self.pending[sock.fileno()] = (self.started, bytearray())
            self.started += 1

    def _advance(self, sock: socket.socket, events: int) -> None:
        """One step of one handshake: connected -> request written -> reply read."""
        index, received = self.pending[sock.fileno()]
        card = self.cards[index]
        if events & selectors.EVENT_WRITE:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise CardError(
                    f"card[{card}]: connect failed: {errno.errorcode[code]}"
                )
            sock.send(self.dialect.register(card))
            self.selector.modify(sock, selectors.EVENT_READ)
            return

        wanted = self.dialect.registered(card)
        chunk = sock.recv(len(wanted) - len(received))
        if not chunk:
            raise CardError(f"card[{card}]: closed while registering")
        received += chunk
        if len(received) < len(wanted):
            return
        if bytes(received) != wanted:
            raise CardError(f"card[{card}]: registering answered {bytes(received)!r}")
        self.selector.unregister(sock)
        del self.pending[sock.fileno()]
        sock.settimeout(5.0)
        self.done[index] = sock


def _start_connect(port: int, index: int) -> socket.socket:
    """A non-blocking socket with its connection under way."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # Pick the port at connect time, from the whole range, not at bind time.
    sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((source_address(index), 0))
    sock.settimeout(0)
    code = sock.connect_ex(("127.0.0.1", port))
    if code not in (0, errno.EINPROGRESS):
        sock.close()
        raise CardError(f"connect to port {port} failed: {errno.errorcode[code]}")
    return sock


def close_all(socks: list[socket.socket]) -> None:
    """Close every socket at once, with a reset.

    A reset leaves no TIME_WAIT entry behind; thousands of those per run would
    slow down the next run's connects.
    """
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        sock.close()
