"""Latency: one pair plays ping-pong through the server, one message at a time.

A sends to B; as soon as B has the message it sends one back to A; the round trip
ends when A has both its own send acknowledgement (version 1 only) and B's message.
Both cards live in the load process on blocking sockets, so the load generator's own
share of a round trip is the same few system calls for both servers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench import cards, meter, servers
from bench.dialects import Dialect, dialect_for, payload_of
from bench.loadgen import run_load
from bench.result import Result


@dataclass(frozen=True)
class Params:
    """Shape of one latency run."""

    rounds: int = 2000
    warmup: int = 200
    size: int = 64
    timeout: float = 60.0


FULL = Params()
SMOKE = Params(rounds=50, warmup=10, timeout=20.0)


class PingPong:
    """Cards A and B registered on one server, ready to bounce a message.

    ``skip`` is a filler the server may put between units (the relay's heartbeat),
    which the cards pass over.
    """

    def __init__(
        self,
        port: int,
        dialect: Dialect,
        size: int,
        prefix: str = "",
        skip: bytes = b"",
    ) -> None:
        a_name, b_name = f"{prefix}A", f"{prefix}B"
        self.a = cards.CardStream(cards.register(port, dialect, a_name), a_name, skip)
        self.b = cards.CardStream(cards.register(port, dialect, b_name), b_name, skip)
        payload = payload_of(size)
        self.ping = dialect.send(b_name, payload)
        self.pong = dialect.send(a_name, payload)
        self.ping_arrives = dialect.delivery(b_name, payload, sender=a_name)
        self.pong_arrives = dialect.delivery(a_name, payload, sender=b_name)
        self.ack = dialect.sent()

    def round_trip(self) -> int:
        """One round trip; its duration in nanoseconds."""
        started = time.perf_counter_ns()
        self.a.sock.sendall(self.ping)
        self.b.take(self.ping_arrives, "ping")
        self.b.sock.sendall(self.pong)
        self.a.take(self.ack, "ack")
        self.a.take(self.pong_arrives, "pong")
        ended = time.perf_counter_ns()

        # B's own acknowledgement is read outside the timed span.
        self.b.take(self.ack, "ack")
        return ended - started

    def close(self) -> None:
        """Close both cards."""
        cards.close_all([self.a.sock, self.b.sock])


def percentile(sorted_values: list[float], share: float) -> float:
    """The value below which ``share`` of the sorted values fall (nearest rank)."""
    index = min(len(sorted_values) - 1, max(0, round(share * len(sorted_values)) - 1))
    return sorted_values[index]


def summary_us(durations_ns: list[int]) -> dict[str, float]:
    """p50, p99, mean and max of round trips, in microseconds."""
    ordered = sorted(value / 1000 for value in durations_ns)
    return {
        "p50_us": percentile(ordered, 0.50),
        "p99_us": percentile(ordered, 0.99),
        "mean_us": sum(ordered) / len(ordered),
        "max_us": ordered[-1],
    }


def _load(
    port: int, kind: str, params: Params, server_pid: int
) -> tuple[dict[str, float], float, float]:
    """The load process: warm up, then time the round trips."""
    game = PingPong(port, dialect_for(kind), params.size)
    deadline = time.monotonic() + params.timeout
    for _ in range(params.warmup):
        game.round_trip()

    own_start, server_start = meter.own_cpu(), meter.server_cpu(server_pid)
    started = time.monotonic()
    durations = []
    for _ in range(params.rounds):
        durations.append(game.round_trip())
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(durations)} round trips in {params.timeout:g} s")
    own_end, server_end = meter.own_cpu(), meter.server_cpu(server_pid)
    game.close()

    figures = summary_us(durations)
    figures["seconds"] = time.monotonic() - started
    own = meter.share_of_core(own_start, own_end)
    return figures, meter.share_of_core(server_start, server_end), own


def measure(kind: str, params: Params = FULL) -> Result:
    """One latency run against a fresh server of ``kind``."""
    with servers.running(kind) as server:
        figures, server_cpu, own_cpu = run_load(
            _load, server.port, kind, params, server.pid, timeout=params.timeout + 30
        )
    return Result(
        "latency", kind, figures, server_cpu, own_cpu, span=figures["seconds"]
    )
