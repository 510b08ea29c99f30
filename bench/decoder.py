"""The relay's request decoder alone: nanoseconds per request for common shapes.

The throughput profile puts four fifths of the relay's time in the decoder, so its
cost per request, without sockets or an event loop, is the figure to watch when
changing it. Each shape is fed as the relay gets it under load: many requests per
read, in 64 KiB reads.
"""

from __future__ import annotations

import time

from bench.dialects import payload_of
from bench.result import Result

READ = 64 * 1024


def shapes(size: int) -> dict[str, bytes]:
    """One request of each common shape, with a ``size``-byte message."""
    message = payload_of(size).decode()
    return {
        "send_v1": f"{{'action':'send','to':'B0','message':'{message}'}}".encode(),
        "send_json": (
            f'{{"action": "send", "to": "B0", "message": "{message}", "id": 7}}\n'
        ).encode(),
        "connect_v1": b"{'action':'connect','from':'c00042'}",
    }


def measure(seconds_per_shape: float = 1.0, size: int = 64) -> Result:
    """ns per request and MB/s for each shape, best of repeated 64 KiB reads."""
    from relayserver.codec import RequestDecoder  # noqa: PLC0415

    figures: dict[str, float] = {}
    for name, request in shapes(size).items():
        count = max(1, READ // len(request))
        chunk = request * count
        decoder = RequestDecoder()
        best = float("inf")
        ends = time.monotonic() + seconds_per_shape
        while time.monotonic() < ends:
            started = time.perf_counter_ns()
            events = decoder.feed(chunk)
            best = min(best, time.perf_counter_ns() - started)
            if len(events) != count:
                raise RuntimeError(f"{name}: {len(events)} requests, not {count}")
        figures[f"{name}_ns"] = best / count
        figures[f"{name}_mb_per_s"] = len(chunk) / best * 1000
    return Result("decoder", "in-process", figures)
