"""The socket scenarios again on uvloop, the event loop ``relayserver`` runs on."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import test_relay_limits
import test_relay_v1
import test_relay_v2

uvloop = pytest.importorskip("uvloop")

Scenario = Callable[[], Coroutine[Any, Any, None]]


def scenarios() -> list[Scenario]:
    """Every socket test that needs no fixture."""
    found = []
    for module in (test_relay_v1, test_relay_v2, test_relay_limits):
        for name, function in vars(module).items():
            if not name.startswith("test_") or not inspect.iscoroutinefunction(
                function
            ):
                continue
            if not inspect.signature(function).parameters:
                found.append(function)
    return found


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda f: f.__name__)
def test_on_uvloop(scenario: Scenario) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
