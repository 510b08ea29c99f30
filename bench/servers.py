"""Start a fresh server under test: our relay or Mosquitto, on loopback.

Each run gets a new process on a free port, pinned to CPU 0 (the load generator
takes CPU 1), with a file-descriptor limit high enough for the connections
workloads. The server is stopped and reaped when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_CPU = 0
LOADGEN_CPU = 1

# Enough descriptors for 20 000 cards on each side, with room to spare.
FILE_LIMIT = 65_536

MOSQUITTO = "/usr/sbin/mosquitto"

# Mosquitto accepts any number of connections by default; the relay caps them.
RELAY_MAX_CONNECTIONS = 1_000_000

# Heartbeat interval given to the relay in workloads that must not see one.
QUIET_HEARTBEAT = 3600.0


@dataclass(frozen=True)
class Server:
    """A running server: what it is, where it listens, and its process id."""

    kind: str
    port: int
    pid: int


def free_port() -> int:
    """A loopback TCP port nobody listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def raise_file_limit(wanted: int = FILE_LIMIT) -> None:
    """Lift RLIMIT_NOFILE to ``wanted`` (as far as the hard limit or root allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pin_to(cpu: int) -> None:
    """Keep this process on one CPU, when the machine has it."""
    if cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def _prepare_server_process() -> None:
    """Runs in the server's child process before exec."""
    raise_file_limit()
    pin_to(SERVER_CPU)


def relay_command() -> list[str]:
    """How to start the relay: ``$MODEMBRIDGE_BENCH_RELAY``, or this installation's.

    The variable holds a command prefix (for instance another relay build to
    compare); by default the relay's console entry point runs under this very
    interpreter, so a virtual environment measures its own relay.
    """
    override = os.environ.get("MODEMBRIDGE_BENCH_RELAY")
    if override:
        return shlex.split(override)
    return [sys.executable, "-c", "from relayserver.cli import main; main()"]


def relay_options(port: int, heartbeat: float) -> list[str]:
    """Options matching the Mosquitto configuration: quiet, no connection cap."""
    return [
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--heartbeat", f"{heartbeat:g}", "--log-level", "warning"),
        *("--max-connections", str(RELAY_MAX_CONNECTIONS)),
    ]


def mosquitto_available() -> bool:
    """Whether Mosquitto is installed where Debian puts it (or on PATH)."""
    return Path(MOSQUITTO).exists() or shutil.which("mosquitto") is not None


def _mosquitto_binary() -> str:
    """The Mosquitto executable."""
    if Path(MOSQUITTO).exists():
        return MOSQUITTO
    found = shutil.which("mosquitto")
    if found is None:
        raise FileNotFoundError("mosquitto is not installed")
    return found


def mosquitto_config(port: int) -> str:
    """A configuration: one loopback listener, anonymous, no persistence, quiet."""
    return "\n".join(
        [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "connection_messages false",
            "",
        ]
    )


@contextlib.contextmanager
def running(kind: str, heartbeat: float = QUIET_HEARTBEAT) -> Iterator[Server]:
    """A fresh server of ``kind``, stopped afterwards: ``relay``, ``mosquitto``, or
    ``relay-v2`` (the relay, to be spoken to in protocol version 2)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        command = _command(kind, port, heartbeat, Path(workdir))
        log = (Path(workdir) / "server.log").open("wb")
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_prepare_server_process,  # noqa: PLW1509 (no threads here)
        )
        try:
            _wait_listening(port, process, Path(workdir) / "server.log")
            yield Server(kind, port, process.pid)
        finally:
            _stop(process)
            log.close()


def _command(kind: str, port: int, heartbeat: float, workdir: Path) -> list[str]:
    """The command line that starts a server of ``kind`` on ``port``."""
    if kind in ("relay", "relay-v2"):
        return [*relay_command(), *relay_options(port, heartbeat)]
    if kind == "mosquitto":
        config = workdir / "mosquitto.conf"
        config.write_text(mosquitto_config(port))

        # Mosquitto started as root drops to its own user and must still read this.
        workdir.chmod(0o755)
        config.chmod(0o644)
        return [_mosquitto_binary(), "-c", str(config)]
    raise ValueError(f"unknown server kind {kind!r}")


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once the server accepts connections; raise if it dies or stalls."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"server exited with {process.returncode}: {output}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.02)
    raise TimeoutError(f"server did not listen on port {port} within 10 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ask the server to stop, and kill it if it does not within two seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5.0)
