"""Connections: thousands of idle registered cards, and one send to the last of them.

Measures how long registering all cards takes, how much resident memory the server
grew by per card, and that a message to the card registered last still arrives.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from bench import cards, idle, meter, servers
from bench.dialects import dialect_for, payload_of
from bench.result import Result


@dataclass(frozen=True)
class Params:
    """Shape of one connections run."""

    cards: int = 5000
    size: int = 64
    timeout: float = 180.0


SMALL = Params(cards=5000)
LARGE = Params(cards=20_000)
SMOKE = Params(cards=50, timeout=30.0)


@dataclass(frozen=True)
class AfterRegistering:
    """Runs in each load process once all cards are in: weigh, then route a send."""

    kind: str
    size: int
    last_card: str

    def __call__(
        self, index: int, names: list[str], socks: list[socket.socket], server_pid: int
    ) -> dict[str, float]:
        """Share 0 weighs the server; the share holding the last card routes to it."""
        found: dict[str, float] = {}
        if index == 0:
            # Let the server settle (freed buffers, deferred work) before weighing.
            time.sleep(0.2)
            found["rss"] = float(meter.rss_bytes(server_pid))
        if names[-1] == self.last_card:
            found["route_ms"] = self._route_to_last(socks, names)
        return found

    def _route_to_last(self, socks: list[socket.socket], names: list[str]) -> float:
        """Send from this share's first card to the last; milliseconds to arrive."""
        dialect = dialect_for(self.kind)
        payload = payload_of(self.size, seed=7)
        started = time.monotonic()
        socks[0].sendall(dialect.send(names[-1], payload))
        arrives = dialect.delivery(names[-1], payload, sender=names[0])
        cards.expect(socks[-1], arrives, f"card[{names[-1]}]")
        elapsed = time.monotonic() - started
        cards.expect(socks[0], dialect.sent(), f"card[{names[0]}] ack")
        return elapsed * 1000


def measure(kind: str, params: Params = SMALL) -> Result:
    """One connections run against a fresh server of ``kind``."""
    count = idle.card_capacity(params.cards)
    task = AfterRegistering(kind, params.size, idle.card_names(count)[-1])
    with servers.running(kind) as server:
        rss_before = meter.rss_bytes(server.pid)
        job = idle.new_job(server.port, kind, server.pid, task, count)
        shares = idle.run_shares(job, count, params.timeout + 60)

    started = min(share.started for share in shares)
    registered = max(share.registered for share in shares) - started
    found = {key: value for share in shares for key, value in share.extra.items()}
    figures = {
        "cards": float(count),
        "register_s": registered,
        "cards_per_s": count / registered,
        "rss_per_card_bytes": (found["rss"] - rss_before) / count,
        "server_rss_mib": found["rss"] / (1 << 20),
        "route_ms": found["route_ms"],
    }
    result = Result(
        f"connections[{params.cards}]",
        kind,
        figures,
        server_cpu=_server_share(shares, registered),
        loadgen_cpu=sum(share.own_cpu for share in shares) / registered,
        span=registered,
    )
    if count < params.cards:
        result.notes.append(
            f"{count} cards, not {params.cards}: the hard limit on open files here "
            f"is {idle.file_limit()} and cannot be raised without CAP_SYS_RESOURCE"
        )
    return result


def _server_share(shares: list[idle.Share], span: float) -> float:
    """The server's CPU while registering, as a share of one core."""
    for share in shares:
        if share.server_cpu is not None:
            return (share.server_cpu[1] - share.server_cpu[0]) / span
    return 0.0
