"""AT path: a simulated module, the attach agent and a relay, bulk data both ways."""

from __future__ import annotations

from bench.result import Result


def measure(smoke: bool) -> list[Result]:
    """Not measured yet: raises ``NotImplementedError``."""
    raise NotImplementedError("the AT path workload is not written yet")
