"""Throughput: sender/receiver pairs push fixed-size messages, pipelined.

Each sender keeps up to ``window`` messages in flight (sent but not yet seen by its
receiver), so neither server is asked to queue without bound and a server that
drops messages shows it as loss instead of as a stall. Deliveries are counted by
bytes: every delivery is the same bytes, in both dialects.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass

from bench import cards, meter, servers
from bench.dialects import dialect_for, payload_of
from bench.loadgen import run_load
from bench.result import MIN_CPU_SPAN, Result

# Below this share of a core on both sides, a pipelined run was starved.
BUSY = 0.7

# Bytes a receiver lets pile up before the kernel wakes it (SO_RCVLOWAT).
LOW_WATER = 16 * 1024

# No delivery for this long means the rest is lost.
STALL_SECONDS = 2.0


@dataclass(frozen=True)
class Params:
    """Shape of one throughput run."""

    pairs: int = 4
    messages: int = 20_000
    size: int = 64
    window: int = 1000
    timeout: float = 120.0


FULL = Params()
SMOKE = Params(pairs=2, messages=200, window=50, timeout=20.0)


@dataclass(frozen=True)
class Sizes:
    """Bytes of one request, one delivery and one acknowledgement."""

    request: int
    delivery: int
    ack: int


class Pair:
    """One sender and its receiver, with their byte counters."""

    def __init__(
        self, sender: socket.socket, receiver: socket.socket, stream: bytes, last: bytes
    ) -> None:
        self.sender = sender
        self.receiver = receiver
        self.stream = memoryview(stream)
        self.last = last
        self.sent_bytes = 0
        self.ack_bytes = 0
        self.delivered_bytes = 0
        self.tail = b""
        self.writable_wait = False
        self.low_water = 1
        sender.settimeout(0)
        receiver.settimeout(0)

    def pump(self, sizes: Sizes, window: int) -> None:
        """Write what the window allows; note when the socket itself is full."""
        delivered = self.delivered_bytes // sizes.delivery
        limit = min(len(self.stream), (delivered + window) * sizes.request)
        if self.sent_bytes >= limit:
            self.writable_wait = False
            return
        try:
            written = self.sender.send(self.stream[self.sent_bytes : limit])
        except BlockingIOError:
            written = 0
        self.sent_bytes += written
        self.writable_wait = self.sent_bytes < limit

    def delivered(self, chunk: memoryview, expected: int, cap: int) -> None:
        """Count bytes that reached the receiver; keep the last delivery's worth."""
        self.delivered_bytes += len(chunk)
        self.tail = (self.tail + chunk[-len(self.last) :])[-len(self.last) :]
        self.wake_at(expected - self.delivered_bytes, cap)

    def wake_at(self, remaining: int, cap: int) -> None:
        """Let the kernel wake the receiver only once some bytes wait.

        A server that writes each message on its own (Mosquitto does) would
        otherwise wake the load generator once per message and make it the
        bottleneck. The mark stays well below what the window lets be in flight
        (``cap``), and near the end drops to what is still expected.
        """
        mark = max(1, min(LOW_WATER, cap, remaining))
        if mark != self.low_water:
            self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
            self.low_water = mark

    def done(self, messages: int, sizes: Sizes) -> bool:
        """Whether every message and every acknowledgement arrived."""
        return (
            self.delivered_bytes >= messages * sizes.delivery
            and self.ack_bytes >= messages * sizes.ack
        )


class Run:
    """The pump loop over all pairs, on one selector."""

    def __init__(self, pairs: list[Pair], params: Params, sizes: Sizes) -> None:
        self.pairs = pairs
        self.params = params
        self.sizes = sizes
        self.selector = selectors.DefaultSelector()
        for pair in pairs:
            self.selector.register(pair.sender, selectors.EVENT_READ, (pair, "ack"))
            self.selector.register(pair.receiver, selectors.EVENT_READ, (pair, "data"))
        self.buffer = bytearray(1 << 18)
        self.last_delivery = time.monotonic()
        self.low_cap = params.window * sizes.delivery // 4
        for pair in pairs:
            pair.wake_at(params.messages * sizes.delivery, self.low_cap)

    def until_done(self) -> float:
        """Pump until all arrived or deliveries stall; the last delivery's time."""
        deadline = time.monotonic() + self.params.timeout
        try:
            while not all(
                pair.done(self.params.messages, self.sizes) for pair in self.pairs
            ):
                now = time.monotonic()
                if now > deadline or now - self.last_delivery > STALL_SECONDS:
                    break
                self._pump_all()
                for key, events in self.selector.select(timeout=0.2):
                    if events & selectors.EVENT_READ:
                        self._read(key)
        finally:
            self.selector.close()
        return self.last_delivery

    def _pump_all(self) -> None:
        """Let every sender write; watch for writability only while one is full."""
        for pair in self.pairs:
            waiting = pair.writable_wait
            pair.pump(self.sizes, self.params.window)
            if pair.writable_wait != waiting:
                events = selectors.EVENT_READ
                events |= selectors.EVENT_WRITE if pair.writable_wait else 0
                self.selector.modify(pair.sender, events, (pair, "ack"))

    def _read(self, key: selectors.SelectorKey) -> None:
        """Take what one socket has and count it."""
        pair, role = key.data
        sock: socket.socket = key.fileobj  # type: ignore[assignment]
        try:
            count = sock.recv_into(self.buffer)
        except BlockingIOError:
            return
        if count == 0:
            raise cards.CardError(f"server closed a card's socket ({role})")
        if role == "ack":
            pair.ack_bytes += count
        else:
            expected = self.params.messages * self.sizes.delivery
            pair.delivered(memoryview(self.buffer)[:count], expected, self.low_cap)
            self.last_delivery = time.monotonic()


def _load(
    port: int, kind: str, params: Params, server_pid: int
) -> tuple[dict[str, float], float, float]:
    """The load process: register the pairs, run them, return figures and CPU."""
    dialect = dialect_for(kind)
    payload = payload_of(params.size)
    pairs = []
    for index in range(params.pairs):
        sender = cards.register(port, dialect, f"A{index}")
        receiver = cards.register(port, dialect, f"B{index}")
        stream = b"".join(
            dialect.send(f"B{index}", payload, seq) for seq in range(params.messages)
        )
        last = dialect.delivery(f"B{index}", payload, sender=f"A{index}")
        pairs.append(Pair(sender, receiver, stream, last))
    sizes = Sizes(
        len(dialect.send("B0", payload)),
        len(dialect.delivery("B0", payload, sender="A0")),
        len(dialect.sent()),
    )

    own_start, server_start = meter.own_cpu(), meter.server_cpu(server_pid)
    started = time.monotonic()
    last_delivery = Run(pairs, params, sizes).until_done()
    own_end, server_end = meter.own_cpu(), meter.server_cpu(server_pid)

    delivered = sum(pair.delivered_bytes for pair in pairs) // sizes.delivery
    for pair in pairs:
        if pair.done(params.messages, sizes) and pair.tail != pair.last:
            raise cards.CardError(f"last delivery was {pair.tail!r}")
    cards.close_all([sock for pair in pairs for sock in (pair.sender, pair.receiver)])
    elapsed = max(last_delivery - started, 1e-9)
    figures = {
        "msgs_per_s": delivered / elapsed,
        "delivered": float(delivered),
        "loss": float(params.pairs * params.messages - delivered),
        "seconds": elapsed,
    }
    own = meter.share_of_core(own_start, own_end)
    return figures, meter.share_of_core(server_start, server_end), own


def measure(kind: str, params: Params = FULL) -> Result:
    """One throughput run against a fresh server of ``kind``."""
    with servers.running(kind) as server:
        figures, server_cpu, own_cpu = run_load(
            _load, server.port, kind, params, server.pid, timeout=params.timeout + 30
        )
    result = Result(
        "throughput", kind, figures, server_cpu, own_cpu, span=figures["seconds"]
    )
    if figures["loss"]:
        result.notes.append(f"{figures['loss']:.0f} messages were not delivered")
    if figures["seconds"] >= MIN_CPU_SPAN and max(server_cpu, own_cpu) < BUSY:
        # A pipelined run keeps one side busy unless others took the CPU from it.
        result.notes.append(
            "neither side kept its core busy: other processes on the machine took "
            "the CPU, so this run understates the server"
        )
    return result
