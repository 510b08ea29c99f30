"""Many idle cards, spread over as many load processes as descriptor limits need.

A process may hold no more descriptors than its hard RLIMIT_NOFILE, and only a
process with CAP_SYS_RESOURCE may raise that. So thousands of cards are shared out
over several load processes (all on the load CPU) that register their share at the
same moment, and the server itself can hold no more cards than its own limit.
"""

from __future__ import annotations

import math
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any

from bench import cards, meter
from bench.dialects import dialect_for
from bench.loadgen import FORK, LoadProcess
from bench.servers import FILE_LIMIT

# Descriptors a process keeps for itself beyond its cards (stdio, pipes, epoll).
RESERVED_FILES = 100


def file_limit() -> int:
    """How many descriptors a process here may open, after lifting its soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (
        max(soft, min(hard, FILE_LIMIT))
        if hard != resource.RLIM_INFINITY
        else FILE_LIMIT
    )


def card_capacity(wanted: int) -> int:
    """``wanted``, or fewer when the server could not hold that many connections."""
    return min(wanted, file_limit() - RESERVED_FILES)


def card_names(count: int) -> list[str]:
    """Names of ``count`` idle cards."""
    return [f"c{index:05d}" for index in range(count)]


@dataclass(frozen=True)
class Share:
    """What one load process did with its share of the cards."""

    index: int
    started: float
    registered: float
    own_cpu: float
    server_cpu: tuple[float, float] | None
    extra: Any


# What a share runs once its cards are registered and every share is: given its
# index, card names and sockets and the server pid, it returns its ``extra``.
Task = Callable[[int, list[str], list[socket.socket], int], Any]


@dataclass(frozen=True)
class Job:
    """What every load process of one run shares: the server and the task."""

    port: int
    kind: str
    server_pid: int
    barrier: Barrier
    task: Task


def _share(job: Job, index: int, names: list[str]) -> Share:
    """One load process: register its cards in step with the others, then the task."""
    job.barrier.wait(timeout=60)
    own_start = meter.own_cpu()
    server_start = meter.server_cpu(job.server_pid) if index == 0 else None
    started = time.monotonic()
    socks = cards.register_many(job.port, dialect_for(job.kind), names)
    registered = time.monotonic()
    own_end = meter.own_cpu()

    job.barrier.wait(timeout=300)
    server_cpu = None
    if server_start is not None:
        server_cpu = (server_start.cpu, meter.server_cpu(job.server_pid).cpu)
    try:
        extra = job.task(index, names, socks, job.server_pid)
    finally:
        job.barrier.wait(timeout=300)
        cards.close_all(socks)
    own = own_end.cpu - own_start.cpu
    return Share(index, started, registered, own, server_cpu, extra)


def run_shares(job: Job, count: int, timeout: float) -> list[Share]:
    """Register ``count`` cards over enough load processes, run the task in each."""
    names = card_names(count)
    per_process = file_limit() - RESERVED_FILES
    processes = max(1, math.ceil(count / per_process))
    size = math.ceil(count / processes)
    loads = [
        LoadProcess(_share, job, index, names[index * size : (index + 1) * size])
        for index in range(processes)
    ]
    return [load.result(timeout) for load in loads]


def new_job(port: int, kind: str, server_pid: int, task: Task, count: int) -> Job:
    """A job for as many load processes as ``count`` cards need."""
    processes = max(1, math.ceil(count / (file_limit() - RESERVED_FILES)))
    return Job(port, kind, server_pid, FORK.Barrier(processes), task)
