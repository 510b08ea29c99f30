"""What one benchmark run measured, and how the machine's CPUs were shared."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.meter import SATURATED

# Shortest measured span (seconds) over which CPU shares mean anything.
MIN_CPU_SPAN = 0.5


@dataclass
class Result:
    """Figures of one run of one workload against one server.

    ``figures`` maps a name that carries its unit (``msgs_per_s``, ``p50_us``) to a
    number. ``server_cpu`` and ``loadgen_cpu`` are shares of one core over the
    measured span; ``notes`` says what limited the run when that is known.
    """

    workload: str
    server: str
    figures: dict[str, float]
    server_cpu: float = 0.0
    loadgen_cpu: float = 0.0
    notes: list[str] = field(default_factory=list)
    span: float = 1.0

    def __post_init__(self) -> None:
        """Say which side saturated its core, if any."""
        if self.span < MIN_CPU_SPAN:
            # /proc counts CPU in 10 ms ticks: shares over a short span are noise.
            return
        if self.loadgen_cpu >= SATURATED:
            self.notes.append(
                f"load generator at {self.loadgen_cpu:.0%} of a core: it may be the "
                "bottleneck, so this figure is a bound for the server"
            )
        if self.server_cpu >= SATURATED:
            self.notes.append(f"server at {self.server_cpu:.0%} of a core: CPU-bound")

    def line(self) -> str:
        """One human-readable line."""
        shown = ", ".join(
            f"{name}={value:,.6g}" for name, value in self.figures.items()
        )
        if not self.server_cpu and not self.loadgen_cpu:
            return f"{self.workload} [{self.server}]: {shown}"
        cpu = f"cpu server {self.server_cpu:.0%} loadgen {self.loadgen_cpu:.0%}"
        return f"{self.workload} [{self.server}]: {shown} ({cpu})"
