"""Our relay against Mosquitto, alternately in one run, with medians and ratios.

Runs go relay, Mosquitto, relay, Mosquitto ... (a fresh server each run), so a
machine that gets busier or quieter during the run affects both alike.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from bench.result import Result

KINDS = ("relay", "mosquitto")


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of one figure over the rounds."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        """The spread of ``values``."""
        return cls(statistics.median(values), min(values), max(values))


def alternate(
    measure: Callable[[str], Result], rounds: int, echo: Callable[[str], None]
) -> dict[str, list[Result]]:
    """``rounds`` runs per server kind, interleaved A B A B; results by kind."""
    results: dict[str, list[Result]] = {kind: [] for kind in KINDS}
    for number in range(1, rounds + 1):
        for kind in KINDS:
            result = measure(kind)
            echo(f"  round {number}: {result.line()}")
            for note in result.notes:
                echo(f"    note: {note}")
            results[kind].append(result)
    return results


def table(results: dict[str, list[Result]]) -> list[str]:
    """Lines of a table: per figure, each server's spread and the ratio of medians."""
    relay, mosquitto = results["relay"], results["mosquitto"]
    lines = [
        f"{'figure':<22} {'relay median [min..max]':>34} "
        f"{'mosquitto median [min..max]':>34} {'ratio':>7}"
    ]
    for name in relay[0].figures:
        ours = Spread.of([result.figures[name] for result in relay])
        theirs = Spread.of([result.figures[name] for result in mosquitto])
        ratio = ours.median / theirs.median if theirs.median else float("nan")
        lines.append(
            f"{name:<22} {_shown(ours):>34} {_shown(theirs):>34} {ratio:>7.2f}"
        )
    for label, attribute in (
        ("server_cpu", "server_cpu"),
        ("loadgen_cpu", "loadgen_cpu"),
    ):
        ours = Spread.of([getattr(result, attribute) for result in relay])
        theirs = Spread.of([getattr(result, attribute) for result in mosquitto])
        lines.append(f"{label:<22} {_shown(ours):>34} {_shown(theirs):>34} {'':>7}")
    return lines


def _shown(spread: Spread) -> str:
    """``median [min..max]`` with sensible precision."""
    return f"{spread.median:,.4g} [{spread.low:,.4g}..{spread.high:,.4g}]"
