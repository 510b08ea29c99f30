"""Run load in a process of its own, on the CPU the server does not use."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import traceback
from collections.abc import Callable
from typing import Any

from bench.servers import LOADGEN_CPU, pin_to, raise_file_limit

FORK = multiprocessing.get_context("fork")


class LoadError(RuntimeError):
    """The load generator failed; carries its traceback as the message."""


def _child(
    body: Callable[..., Any],
    args: tuple[Any, ...],
    out: multiprocessing.connection.Connection,
) -> None:
    """Runs in the load process: pin, lift the descriptor limit, run, send back."""
    try:
        pin_to(LOADGEN_CPU)
        raise_file_limit()
        out.send(("ok", body(*args)))
    except BaseException:  # every failure must reach the parent
        out.send(("error", traceback.format_exc()))
    finally:
        out.close()


class LoadProcess:
    """One load generator process running ``body(*args)``; ``result`` waits for it."""

    def __init__(self, body: Callable[..., Any], *args: Any) -> None:
        self._receive, send = FORK.Pipe(duplex=False)
        self._process = FORK.Process(target=_child, args=(body, args, send))
        self._process.start()
        send.close()

    def result(self, timeout: float) -> Any:
        """What ``body`` returned; raises ``LoadError`` if it failed or overran."""
        try:
            if not self._receive.poll(timeout):
                raise LoadError(f"load generator gave no result within {timeout:g} s")
            status, value = self._receive.recv()
        except EOFError as error:
            raise LoadError("load generator died without a result") from error
        finally:
            self._finish()
        if status != "ok":
            raise LoadError(value)
        return value

    def _finish(self) -> None:
        """Reap the process, killing it if it is still running."""
        self._process.join(timeout=2.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5.0)
        self._receive.close()


def run_load(body: Callable[..., Any], *args: Any, timeout: float = 300.0) -> Any:
    """Run ``body(*args)`` in one load process and return its result."""
    return LoadProcess(body, *args).result(timeout)
