"""Real processes for the cluster tests: a nats-server and relay nodes, on loopback.

The tests skip, saying why, when the ``nats-server`` binary is missing, except where
``MODEMBRIDGE_REQUIRE_SERVICES=1`` (CI): there a missing service is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

NATS_BINARY = "nats-server"

# How long a test waits for something that should happen promptly.
PROMPT = 10.0


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


def wait_for_port(
    port: int, process: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    """Return once something accepts TCP connections on ``port``."""
    deadline = time.monotonic() + PROMPT
    while True:
        if process is not None and process.poll() is not None:
            output = log.read_text(errors="replace") if log is not None else ""
            raise RuntimeError(f"exited with {process.returncode}:\n{output[-3000:]}")
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


def _stop(process: subprocess.Popen[bytes]) -> None:
    _terminate(process)
    _reap(process)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)


def _reap(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class NatsServer:
    """One nats-server on a fixed loopback port; it may be stopped and restarted."""

    def __init__(self, binary: str, workdir: Path, *options: str) -> None:
        self.binary = binary
        self.options = options
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._log = workdir / "nats-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it accepts clients."""
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-a", "127.0.0.1", "-p", str(self.port), *self.options],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self._process, self._log)

    def stop(self) -> None:
        """Stop the server; its clients see the connection drop."""
        process, self._process = self._process, None
        if process is not None:
            _stop(process)


class RelayNode:
    """One ``relayserver`` process, a node of a cluster when given a NATS URL.

    ``preamble`` is Python run in the process before the relay's command starts.
    """

    def __init__(self, workdir: Path, *options: str, preamble: str = "") -> None:
        self.port = free_port()
        self.options = options
        self.preamble = preamble
        self.log_path = workdir / f"relay-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the relay and wait until it accepts cards."""
        self.launch()
        self.wait_started()

    def launch(self) -> None:
        """Start the relay process, without waiting for it."""
        code = f"{self.preamble}\nfrom relayserver.cli import main; main()"
        command = [
            *(sys.executable, "-c", code),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--heartbeat", "3600", "--log-level", "debug"),
            *self.options,
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_started(self) -> None:
        """Wait until the launched relay accepts cards."""
        wait_for_port(self.port, self._process, self.log_path)
        # Bound is not started: a node joins its cluster (or gives up for now) first.
        self.wait_logged("relay: listening on")

    def wait_logged(self, text: str) -> None:
        """Wait until the relay logged ``text``."""
        deadline = time.monotonic() + PROMPT
        while text not in self.log():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the relay did not log {text!r}:\n{self.log()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the relay as an operator would (SIGTERM)."""
        process, self._process = self._process, None
        if process is not None:
            _stop(process)

    def terminate(self) -> None:
        """Ask the relay to stop (SIGTERM) without waiting for it; see :meth:`stop`."""
        if self._process is not None:
            _terminate(self._process)

    def kill(self) -> None:
        """Kill the relay outright, as a crash or an OOM killer would."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def freeze(self) -> None:
        """Stop the relay in its tracks (SIGSTOP), as a stalled machine would."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen relay run on (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        """What the relay logged, for assertions and failure messages."""
        return self.log_path.read_text(errors="replace")


def start_nodes(nodes: list[RelayNode]) -> None:
    """Start relay nodes side by side and wait until each accepts cards."""
    for node in nodes:
        node.launch()
    for node in nodes:
        node.wait_started()


def stop_nodes(nodes: list[RelayNode]) -> None:
    """Stop relay nodes side by side, as an operator would (SIGTERM)."""
    for node in nodes:
        node.terminate()
    for node in nodes:
        node.stop()


class Card:
    """A card on a TCP connection to a relay: version 1 text or version 2 lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, name: str, proto: int = 1) -> Card:
        """Open a connection and claim ``name``."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        card = cls(reader, writer)
        if proto == 1:
            await card.request(f"{{'action':'connect','from':'{name}'}}")
            await card.expect(b"connect_success")
        else:
            await card.request({"action": "connect", "from": name, "proto": 2})
            reply = await card.line()
            assert reply.get("ok") == "connect", reply
        return card

    async def request(self, request: str | dict[str, Any]) -> None:
        """Write one request, a literal as cards type it or a dict sent as JSON."""
        text = request if isinstance(request, str) else json.dumps(request)
        self.writer.write(text.encode())
        await self.writer.drain()

    async def expect(self, data: bytes) -> None:
        """Read exactly ``len(data)`` bytes and check they are ``data``."""
        async with asyncio.timeout(PROMPT):
            got = await self.reader.readexactly(len(data))
        assert got == data

    async def line(self, within: float = PROMPT) -> dict[str, Any]:
        """The next version 2 line, heartbeats skipped, within ``within`` seconds."""
        async with asyncio.timeout(within):
            while True:
                line = await self.reader.readline()
                assert line.endswith(b"\n"), f"connection ended: {line!r}"
                reply: dict[str, Any] = json.loads(line)
                if reply.keys() != {"heartbeat"}:
                    return reply

    async def closed(self) -> bool:
        """Whether the relay closed this connection (waits for the end of stream)."""
        async with asyncio.timeout(PROMPT):
            while await self.reader.read(4096):
                pass
        return True

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class SocketCard:
    """A version 1 card on a plain socket that the event loop never reads.

    Bytes the relay wrote to it stay in the kernel until the test takes them, so
    the test can tell which had arrived at a given moment: :meth:`arrived`. (On
    loopback, what a process wrote is in the receiver's queue once the write
    returned.)
    """

    def __init__(self, port: int, name: str) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=PROMPT)
        self.socket.sendall(f"{{'action':'connect','from':'{name}'}}".encode())
        assert self._read(len(b"connect_success")) == b"connect_success"
        self.socket.settimeout(0)  # from now on, reads never wait

    def arrived(self) -> bytes:
        """Every byte that reached the card by now, without waiting for more."""
        chunks = []
        while True:
            try:
                chunk = self.socket.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Close the connection."""
        self.socket.close()

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.socket.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return data
