"""Numbers a hardware-in-the-loop run records, not only pass or fail.

Each test records named values (``time_to_register_s``, ``rtt_p90_ms``, ``signal_dbm``)
with ``Measurements.record``; the pytest plugin puts them into the JUnit properties of
the test and summarises every name over the session at the end.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile by the nearest-rank rule; values not empty."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latency_summary(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and max of round-trip times, in milliseconds, named by prefix."""
    millis = [s * 1000 for s in seconds]
    return {
        f"{prefix}_p50_ms": round(percentile(millis, 0.50), 2),
        f"{prefix}_p90_ms": round(percentile(millis, 0.90), 2),
        f"{prefix}_p99_ms": round(percentile(millis, 0.99), 2),
        f"{prefix}_max_ms": round(max(millis), 2),
    }


@dataclass(frozen=True)
class Sample:
    """One recorded value and the test that recorded it."""

    test: str
    value: float


class Measurements:
    """Named numeric values of a session, kept per name in recording order."""

    def __init__(self) -> None:
        self._samples: dict[str, list[Sample]] = defaultdict(list)

    def record(self, test: str, name: str, value: float) -> None:
        """Keep ``value`` under ``name``; it must be a finite number."""
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{name}: {value!r} is not a finite number")
        self._samples[name].append(Sample(test, number))

    def names(self) -> list[str]:
        """Every name recorded, sorted."""
        return sorted(self._samples)

    def values(self, name: str) -> list[float]:
        """The values recorded under ``name``."""
        return [sample.value for sample in self._samples.get(name, [])]

    def summary_lines(self) -> Iterable[str]:
        """One line a name: count, min, median, max."""
        width = max((len(name) for name in self._samples), default=0)
        for name in self.names():
            values = self.values(name)
            yield (
                f"{name:<{width}}  n={len(values):<3} min={min(values):g} "
                f"median={statistics.median(values):g} max={max(values):g}"
            )
