"""CPU and memory readings of a process, from /proc and getrusage, no psutil."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Above this share of one core a process is taken to be what limited the run.
SATURATED = 0.9


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds a process had used (user + system) at a monotonic instant."""

    cpu: float
    at: float


def server_cpu(pid: int) -> CpuSample:
    """The CPU time of process ``pid`` from /proc/<pid>/stat (utime + stime)."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()

    # The command name may hold spaces and parentheses; fields follow the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return CpuSample((utime + stime) / CLOCK_TICKS, time.monotonic())


def own_cpu() -> CpuSample:
    """The CPU time of this process and its waited-for children."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime
    return CpuSample(cpu, time.monotonic())


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"process {pid} has no VmRSS (a zombie?)")


def share_of_core(start: CpuSample, end: CpuSample) -> float:
    """CPU used between two samples as a share of one core (1.0 = a full core)."""
    wall = end.at - start.at
    return (end.cpu - start.cpu) / wall if wall > 0 else 0.0
