"""End to end through real processes: relayserver, two simulated modules, two agents.

Card A runs ``attach --listen`` and a local program talks to it over TCP; card B runs
``attach`` on standard input and output. The faults a process can be asked for from
outside are injected here: the relay restarted (killed and started again on its port),
the bearer dropped (SIGUSR1 to the simulator) and the module rebooted (SIGUSR2). A
socket closed by the network needs the simulator's handle, so that fault lives in
``test_e2e_faults.py`` with in-process simulators.
"""

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

FAST_FLAGS = ("--backoff", "0.1", "--backoff-max", "0.5")
HEARTBEAT = "0.5"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def console(name: str) -> list[str]:
    """A console script of this installation, run with this interpreter."""
    return [sys.executable, "-c", f"from {name} import main; main()"]


RELAYSERVER = console("relayserver.cli")
MODEMBRIDGE = console("modembridge.cli")


class Process:
    """A child process whose output lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = asyncio.Event()
        self._readers = [
            asyncio.create_task(self._collect(proc.stdout, self.out)),
            asyncio.create_task(self._collect(proc.stderr, self.err)),
        ]

    @classmethod
    async def start(cls, name: str, *args: str, stdin: bool = False) -> "Process":
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, name)

    async def _collect(
        self, stream: asyncio.StreamReader | None, into: list[str]
    ) -> None:
        assert stream is not None
        while line := await stream.readline():
            into.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()

    async def wait_for(
        self, predicate: Callable[[], bool], what: str, within: float = 20
    ) -> None:
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    if self.proc.returncode is not None:
                        break
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pass
        assert predicate(), f"{self.name}: no {what}; stderr: {self.err[-15:]}"

    def count(self, text: str) -> int:
        return sum(text in line for line in self.err)

    def write(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
        try:
            code = await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code


class Bench:
    """The processes of one scenario, stopped in reverse order at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[Process] = []
        self.relay_port = free_port()

    async def start(self, name: str, *args: str, stdin: bool = False) -> Process:
        process = await Process.start(name, *args, stdin=stdin)
        self.processes.append(process)
        return process

    async def relay(self) -> Process:
        relay = await self.start(
            "relay",
            *RELAYSERVER,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.relay_port),
            "--heartbeat",
            HEARTBEAT,
        )
        await relay.wait_for(lambda: any("listening" in x for x in relay.err), "start")
        return relay

    async def module(self, name: str, model: str) -> tuple[Process, str]:
        link = str(self.tmp_path / f"tty{name}")
        args = ("simulate", "--model", model, "--link", link)
        module = await self.start(f"module {name}", *MODEMBRIDGE, *args)
        await module.wait_for(lambda: bool(module.out), "device path")
        return module, module.out[0]

    async def stop_all(self) -> None:
        for process in reversed(self.processes):
            await process.stop()


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    bench = Bench(tmp_path)
    yield bench
    await bench.stop_all()


async def read_lines(reader: asyncio.StreamReader, into: list[str]) -> None:
    while line := await reader.readline():
        into.append(line.decode().rstrip("\n"))


async def until(predicate: Callable[[], bool], what: str, within: float = 20) -> None:
    """Poll: the predicate reads lines of several processes and sockets at once."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert predicate(), what


async def test_two_cards_through_real_processes_survive_relay_bearer_and_reboot(
    bench: Bench,
) -> None:
    relay = await bench.relay()
    module_a, path_a = await bench.module("A", "sim7600")
    module_b, path_b = await bench.module("B", "ec20")
    listen = free_port()
    server = f"127.0.0.1:{bench.relay_port}"
    a = await bench.start(
        "card A",
        *MODEMBRIDGE,
        "attach",
        path_a,
        "--card",
        "A",
        "--server",
        server,
        "--listen",
        f"127.0.0.1:{listen}",
        *FAST_FLAGS,
    )
    env_b = {**os.environ, "MODEMBRIDGE_SERVER": server, "MODEMBRIDGE_PORT": path_b}
    b_proc = await asyncio.create_subprocess_exec(
        *MODEMBRIDGE,
        "attach",
        "--card",
        "B",
        "--to",
        "A",
        *FAST_FLAGS,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env_b,
    )
    b = Process(b_proc, "card B")
    bench.processes.append(b)
    await a.wait_for(lambda: a.count("online") == 1, "online line")
    await b.wait_for(lambda: b.count("online") == 1, "online line")

    reader, writer = await asyncio.open_connection("127.0.0.1", listen)
    at_a: list[str] = []
    reading = asyncio.create_task(read_lines(reader, at_a))
    sent_by_a: list[str] = []
    sent_by_b: list[str] = []

    def a_sends(text: str) -> None:
        writer.write(f"B: {text}\n".encode())
        sent_by_a.append(f"A: {text}")

    def b_sends(text: str) -> None:
        b.write(text)
        sent_by_b.append(f"B: {text}")

    async def all_arrived() -> None:
        await until(lambda: len(b.out) >= len(sent_by_a), "A's messages at B")
        await until(lambda: len(at_a) >= len(sent_by_b), "B's messages at A")
        await asyncio.sleep(0.3)  # a duplicate would show up now
        assert b.out == sent_by_a
        assert at_a == sent_by_b

    # Messages both ways, through --listen and through stdin.
    for n in range(3):
        a_sends(f"a{n}")
        b_sends(f"b{n}")
    await all_arrived()

    # The relay restarts: both cards come back by themselves.
    assert await relay.stop() == 0
    a_sends("a during relay outage")
    b_sends("b during relay outage")
    await bench.relay()
    await a.wait_for(lambda: a.count("online") == 2, "reconnect after relay restart")
    await b.wait_for(lambda: b.count("online") == 2, "reconnect after relay restart")
    await all_arrived()

    # The network drops A's bearer.
    module_a.signal(signal.SIGUSR1)
    await a.wait_for(lambda: a.count("recovering") >= 2, "recovery")
    a_sends("a after bearer drop")
    b_sends("b while A recovers its bearer")
    await a.wait_for(lambda: a.count("online") == 3, "online after bearer drop")
    await all_arrived()

    # B's module reboots: its port vanishes and comes back.
    module_b.signal(signal.SIGUSR2)
    await b.wait_for(lambda: b.count("waiting for the port") == 1, "port wait")
    b_sends("b during reboot")
    a_sends("a while B reboots")
    await b.wait_for(lambda: b.count("online") == 3, "online after reboot")
    await all_arrived()

    # End of input: B delivers what it holds, closes socket and bearer, exits 0.
    b_sends("b last words")
    assert b.proc.stdin is not None
    b.proc.stdin.close()
    assert await asyncio.wait_for(b.proc.wait(), 15) == 0
    await until(lambda: at_a == sent_by_b, "B's last words")
    assert any("socket and bearer closed" in line for line in b.err)
    assert not any("Traceback" in line for line in a.err + b.err)
    writer.close()
    reading.cancel()
