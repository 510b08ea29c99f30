"""The ``relayserver`` command as a user runs it: a real process on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from relayclient_raw import (
    TIMEOUT,
    RawCard,
    open_cards,
    send_until_refused,
    unread_socket,
)

LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+), heartbeat every (\S+) s")


def relayserver_command() -> list[str]:
    script = shutil.which("relayserver")
    if script is not None:
        return [script]
    return [sys.executable, "-c", "from relayserver.cli import main; main()"]


class RelayProcess:
    """A running ``relayserver`` and what it has logged so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.log = b""
        self.port = 0

    async def read_until(self, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
        assert self.process.stderr is not None
        async with asyncio.timeout(TIMEOUT):
            while (match := pattern.search(self.log)) is None:
                line = await self.process.stderr.readline()
                assert line, f"relayserver ended early: {self.log.decode()}"
                self.log += line
        return match

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.stderr is not None
        async with asyncio.timeout(TIMEOUT):
            self.log += await self.process.stderr.read()
            return await self.process.wait()


@contextlib.asynccontextmanager
async def relayserver(*arguments: str) -> AsyncIterator[RelayProcess]:
    process = await asyncio.create_subprocess_exec(
        *relayserver_command(), "--host", "127.0.0.1", "--port", "0", *arguments,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    relay = RelayProcess(process)
    try:
        relay.port = int((await relay.read_until(LISTENING)).group(1))
        yield relay
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_readme_flow_relays_a_message_between_two_raw_clients() -> None:
    async with relayserver() as relay:
        a, b = await open_cards(relay.port, 2)
        await a.request(b"{'action':'connect', 'from': 'A'}", b"connect_success")
        await b.request(b"{'action':'connect', 'from': 'B'}\n", b"connect_success")
        await a.request(
            b"{'action':'send','to':'B','message':'hello B'}\n", b"send_success"
        )
        await b.expect(b"hello B")
        await b.request(
            b"{'action':'send','to':'A','message':'hello A'}\n", b"send_success"
        )
        await a.expect(b"hello A")
        await a.close()
        await b.close()
        assert await relay.stop() == 0


async def test_sigterm_closes_every_card_and_exits_cleanly() -> None:
    async with relayserver("--heartbeat", "5") as relay:
        a, b = await open_cards(relay.port, 2)
        await a.connect("A")
        await b.connect("B")
        await relay.read_until(re.compile(rb"card\[B\]: connected"))
        assert await relay.stop() == 0
        assert await a.closed_by_relay() == b""
        assert await b.closed_by_relay() == b""
        assert b"Traceback" not in relay.log
        await a.close()
        await b.close()


async def test_sigint_stops_it_too() -> None:
    async with relayserver() as relay:
        relay.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(TIMEOUT):
            assert await relay.process.wait() == 0


async def test_info_lines_are_start_connects_and_disconnects_only() -> None:
    async with relayserver("--heartbeat", "0.05") as relay:
        a, b = await open_cards(relay.port, 2)
        await a.connect("A")
        await b.connect("B")
        for _ in range(5):
            await a.request(
                b"{'action':'send','to':'B','message':'x'}", b"send_success"
            )
            await b.expect(b"x")
        await a.request(b"nonsense\n", b"wrong format")
        await a.expect(b"heartbeat")
        await a.close()
        await relay.read_until(re.compile(rb"card\[A\]: disconnected"))
        assert await relay.stop() == 0
        await b.close()
    info = [line for line in relay.log.splitlines() if b" INFO " in line]
    assert len(info) == 6, relay.log.decode()
    assert b"listening on 127.0.0.1:%d, heartbeat every 0.05 s" % relay.port in info[0]
    assert b"authentication off" in info[0]
    assert b"card[A]: connected from 127.0.0.1:" in info[1]
    assert b"card[B]: connected from 127.0.0.1:" in info[2]
    assert b"card[A]: disconnected" in info[3]
    assert b"stopping" in info[4]
    assert b"card[B]: disconnected" in info[5]


async def test_debug_level_shows_the_wrong_format_reason() -> None:
    async with relayserver("--log-level", "debug") as relay:
        (a,) = await open_cards(relay.port, 1)
        await a.request(b"{'action':__import__('os')}", b"wrong format")
        await relay.read_until(re.compile(rb"DEBUG .*wrong format, not a literal"))
        await a.close()
        assert await relay.stop() == 0


async def test_tokens_flag_switches_authentication_on(tmp_path: Path) -> None:
    tokens = tmp_path / "cards.toml"
    tokens.write_text('A = "s3cret"\n')
    async with relayserver("--tokens", str(tokens)) as relay:
        (a,) = await open_cards(relay.port, 1)
        await a.request(b"{'action':'connect','from':'A'}", b"A not authorized")
        await a.request(
            b"{'action':'connect','from':'A','token':'s3cret'}", b"connect_success"
        )
        await a.close()
        assert await relay.stop() == 0
    assert b"authentication on" in relay.log
    assert b"any client may claim" not in relay.log


async def test_an_unusable_token_file_is_a_usage_error(tmp_path: Path) -> None:
    tokens = tmp_path / "cards.toml"
    tokens.write_text("A = 5\n")
    process = await asyncio.create_subprocess_exec(
        *relayserver_command(), "--tokens", str(tokens),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, error = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 2
    assert b"cards.toml" in error


async def test_a_slow_card_is_dropped_by_the_running_relay() -> None:
    arguments = ("--write-high-water", "65536", "--heartbeat", "0.2")
    async with relayserver(*arguments) as relay:
        sleeper = unread_socket(relay.port)
        sleeper.sendall(b"{'action':'connect','from':'B'}")
        await relay.read_until(re.compile(rb"card\[B\]: connected"))
        a = await RawCard.open(relay.port)
        await a.connect_v2("A")
        assert await send_until_refused(a, "B") > 0
        await relay.read_until(re.compile(rb"WARNING .*card\[B\]: dropped"))
        await relay.read_until(re.compile(rb"card\[B\]: disconnected \(too slow"))
        sleeper.close()
        await a.close()
        assert await relay.stop() == 0
