"""A real nats-server for the cluster tests, started and stopped on loopback.

The tests skip, saying why, when the ``nats-server`` binary is missing, except where
``MODEMBRIDGE_REQUIRE_SERVICES=1`` (CI): there a missing service is a failure.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

NATS_BINARY = "nats-server"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago, below the ephemeral range.

    A server restarted on its old port must find it free. Ports the kernel hands
    out to outgoing connections (such as a client retrying that very port, which
    on loopback may even connect to itself) would take it away in between.
    """
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Return once something accepts TCP connections on ``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def require_nats_server() -> str:
    """The path of ``nats-server``, or a skip (a failure in CI) when it is missing."""
    path = shutil.which(NATS_BINARY)
    if path is not None:
        return path
    reason = f"{NATS_BINARY} is not installed (Debian: apt-get install nats-server)"
    if os.environ.get("MODEMBRIDGE_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + "; MODEMBRIDGE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


class NatsServer:
    """One nats-server on a fixed loopback port; it may be stopped and restarted."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._log = workdir / "nats-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it accepts clients."""
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-a", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop the server; its clients see the connection drop."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log(self) -> str:
        """What the server printed, for failure messages."""
        return self._log.read_text(errors="replace")
