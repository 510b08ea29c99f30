"""Heartbeat: the relay pushes a heartbeat to thousands of idle cards.

The idle cards watch their sockets with edge-triggered epoll and never read during
the run, so each heartbeat costs the load generator one event and no system call;
the arrival times, grouped into rounds, give how long the relay took to reach every
card. Meanwhile one pair in another load process plays ping-pong, and its round
trips during a heartbeat round against those outside show how long relaying stalled.
Afterwards every card's bytes are checked to be whole heartbeats.

Mosquitto has no counterpart (MQTT keepalive is driven by the client), so this
workload runs against the relay only.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event

from bench import idle, meter, servers
from bench.dialects import dialect_for
from bench.latency import PingPong, percentile
from bench.loadgen import FORK, LoadProcess
from bench.result import Result

HEARTBEAT = b"heartbeat"

# Round trips this close to a round's edges count as during the round.
ROUND_MARGIN = 0.005


@dataclass(frozen=True)
class Params:
    """Shape of one heartbeat run."""

    cards: int = 20_000
    interval: int = 2
    rounds: int = 5
    timeout: float = 180.0


FULL = Params()
SMOKE = Params(cards=50, interval=1, rounds=2, timeout=30.0)


@dataclass(frozen=True)
class Watch:
    """Runs in each idle-card process: note when heartbeats arrive, then check them."""

    seconds: float
    ready: Event

    def __call__(
        self, index: int, names: list[str], socks: list[socket.socket], server_pid: int
    ) -> tuple[list[tuple[float, int]], dict[int, int], float]:
        """Arrival batches (time, cards), cards per count of beats, CPU seconds."""
        _beats_per_card(socks)  # what arrived while registering is not a round
        poller = select.epoll()
        for sock in socks:
            poller.register(sock.fileno(), select.EPOLLIN | select.EPOLLET)
        self.ready.set()
        cpu = meter.own_cpu().cpu

        arrivals = []
        ends = time.monotonic() + self.seconds
        while (left := ends - time.monotonic()) > 0:
            events = poller.poll(timeout=min(left, 0.5), maxevents=len(socks))
            if events:
                arrivals.append((time.monotonic(), len(events)))
        poller.close()
        cpu = meter.own_cpu().cpu - cpu
        return arrivals, _beats_per_card(socks), cpu


def _beats_per_card(socks: list[socket.socket]) -> dict[int, int]:
    """For each count of whole heartbeats, how many cards received that many."""
    counts: dict[int, int] = {}
    for sock in socks:
        sock.settimeout(0)
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            data = b""
        beats = data.count(HEARTBEAT)
        if data != HEARTBEAT * beats:
            raise RuntimeError(f"a card received {data[:60]!r}, not heartbeats")
        counts[beats] = counts.get(beats, 0) + 1
    return counts


def _ping_pong(
    port: int, seconds: float, ready: Event
) -> tuple[list[tuple[float, float]], float]:
    """The busy pair: (end time, round trip in seconds) samples, and CPU seconds."""
    game = PingPong(port, dialect_for("relay"), 64, prefix="busy-", skip=HEARTBEAT)
    if not ready.wait(timeout=300):
        raise TimeoutError("idle cards never became ready")
    samples = []
    cpu = meter.own_cpu().cpu
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        took = game.round_trip() / 1e9
        samples.append((time.monotonic(), took))
    game.close()
    return samples, meter.own_cpu().cpu - cpu


def rounds_of(
    arrivals: list[tuple[float, int]], interval: float
) -> list[tuple[float, float, int]]:
    """Arrival batches grouped into rounds: (first, last, cards reached)."""
    found: list[tuple[float, float, int]] = []
    for at, count in sorted(arrivals):
        if found and at - found[-1][1] < interval / 2:
            first, _, reached = found[-1]
            found[-1] = (first, at, reached + count)
        else:
            found.append((at, at, count))
    return found


def measure(params: Params = FULL) -> Result:
    """One heartbeat run against a fresh relay beating every ``interval`` seconds."""
    count = idle.card_capacity(params.cards)
    seconds = params.rounds * params.interval + params.interval / 2
    ready = FORK.Event()
    with servers.running("relay", heartbeat=params.interval) as server:
        pinger = LoadProcess(_ping_pong, server.port, seconds, ready)
        start = meter.server_cpu(server.pid)
        job = idle.new_job(
            server.port, "relay", server.pid, Watch(seconds, ready), count
        )
        shares = idle.run_shares(job, count, params.timeout)
        end = meter.server_cpu(server.pid)
        samples, pinger_cpu = pinger.result(params.timeout)

    arrivals = [batch for share in shares for batch in share.extra[0]]
    beats: dict[int, int] = {}
    for share in shares:
        for got, cards in share.extra[1].items():
            beats[got] = beats.get(got, 0) + cards
    rounds = rounds_of(arrivals, params.interval)
    result = _result(count, rounds, samples, meter.share_of_core(start, end))
    result.loadgen_cpu = (
        pinger_cpu + sum(share.extra[2] for share in shares)
    ) / seconds
    missed = beats.get(0, 0)
    if missed:
        result.notes.append(f"{missed} cards received no heartbeat at all")
    return result


def _result(
    count: int,
    rounds: list[tuple[float, float, int]],
    samples: list[tuple[float, float]],
    server_cpu: float,
) -> Result:
    """Figures from the rounds seen and the ping-pong samples."""
    windows = [(first - ROUND_MARGIN, last + ROUND_MARGIN) for first, last, _ in rounds]
    during: list[float] = []
    outside: list[float] = []
    for ended, took in samples:
        overlaps = any(ended - took <= hi and ended >= lo for lo, hi in windows)
        (during if overlaps else outside).append(took * 1e6)
    during.sort()
    outside.sort()
    whole = [last - first for first, last, reached in rounds if reached >= count]
    figures = {
        "cards": float(count),
        "rounds": float(len(rounds)),
        "whole_rounds": float(len(whole)),
        "round_ms_max": max(whole, default=0.0) * 1000,
        "round_ms_mean": sum(whole) / len(whole) * 1000 if whole else 0.0,
        "rtt_p50_us_outside": percentile(outside, 0.5) if outside else 0.0,
        "rtt_p99_us_outside": percentile(outside, 0.99) if outside else 0.0,
        "rtt_max_us_during": during[-1] if during else 0.0,
        "rtt_p50_us_during": percentile(during, 0.5) if during else 0.0,
    }
    return Result("heartbeat", "relay", figures, server_cpu=server_cpu)
