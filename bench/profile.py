"""Where the relay spends its time under the throughput workload, sampled by py-spy.

py-spy attaches to the running relay from outside (no change to the relay, no
tracing overhead in its interpreter) and writes collapsed stacks; this module sums
them into the functions that cost most, by their own samples and inclusively. With
``native`` the C frames (the regular-expression engine, uvloop, the system calls)
show too, at the price of pausing the relay for each sample, which halves its rate.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import servers, throughput
from bench.loadgen import run_load

# A frame as py-spy prints it: "function (file.py:line)".
_LINE_NUMBER = re.compile(r":\d+\)$")


@dataclass(frozen=True)
class Profile:
    """Sample counts: per function on top of the stack, and per function anywhere."""

    samples: int
    own: Counter[str]
    inclusive: Counter[str]
    figures: dict[str, float]

    def lines(self, top: int) -> list[str]:
        """The ``top`` costliest functions both ways, as shares of all samples."""
        out = [f"{self.samples} samples; run: {_shown(self.figures)}", "own time:"]
        out += [self._line(name, count) for name, count in self.own.most_common(top)]
        out.append("inclusive time:")
        out += [
            self._line(name, count) for name, count in self.inclusive.most_common(top)
        ]
        return out

    def _line(self, name: str, count: int) -> str:
        """One function's share."""
        return f"  {100 * count / self.samples:5.1f}%  {name}"


def py_spy_available() -> bool:
    """Whether the ``py-spy`` sampler is installed (``pip install py-spy``)."""
    return shutil.which("py-spy") is not None


def profile_throughput(messages: int, output: Path, native: bool = False) -> Profile:
    """Run the throughput workload with ``messages`` per sender under py-spy."""
    params = throughput.Params(messages=messages, timeout=300.0)
    with servers.running("relay") as server:
        spy = _start_spy(server.pid, output, native)
        try:
            figures, _, _ = run_load(
                throughput._load, server.port, "relay", params, server.pid, timeout=330
            )
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
    return summarise(output, figures)


def _start_spy(pid: int, output: Path, native: bool) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` into ``output`` as collapsed stacks."""
    output.parent.mkdir(parents=True, exist_ok=True)
    command = ["py-spy", "record", "--pid", str(pid), "--rate", "1000"]
    command += ["--format", "raw", "--output", str(output)]
    command += ["--native"] if native else ["--nonblocking"]
    spy = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    # py-spy needs a moment to attach; samples before the load are idle anyway.
    time.sleep(1.0)
    return spy


def summarise(collapsed: Path, figures: dict[str, float]) -> Profile:
    """Sum a py-spy raw file (``frame;frame;... count`` per line)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return Profile(samples, own, inclusive, figures)


def _shown(figures: dict[str, float]) -> str:
    """Figures as ``name=value`` pairs."""
    return ", ".join(f"{name}={value:,.6g}" for name, value in figures.items())
