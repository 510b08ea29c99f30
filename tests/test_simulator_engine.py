"""How the simulated module reads its host: line endings, split bytes, discipline."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simulator_client import EchoServer, RawClient

from modembridge.simulator import SimConfig, SimulatedModem, ViolationKind
from modembridge.simulator.command import Command, Form, parse_line


@pytest.fixture(params=["sim7600", "ec20"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[SimulatedModem]:
    modem = SimulatedModem(SimConfig(model=request.param))
    await modem.start()
    yield modem
    await modem.stop()


@pytest.fixture
async def client(sim: SimulatedModem) -> AsyncIterator[RawClient]:
    raw = RawClient(sim.path)
    await raw.command("AT")
    await raw.read_quiet(0.02)
    yield raw
    raw.close()


@pytest.fixture
async def server() -> AsyncIterator[EchoServer]:
    peer = EchoServer()
    await peer.start()
    yield peer
    await peer.stop()


async def open_socket(sim: SimulatedModem, client: RawClient, port: int) -> str:
    """Bring up the bearer and socket 0; return the send command's name."""
    await client.command("ATE0")
    if sim.config.model == "sim7600":
        await client.command("AT+NETOPEN", b"+NETOPEN: 0\r\n")
        await client.command(f'AT+CIPOPEN=0,"TCP","127.0.0.1",{port}', b" 0,0\r\n")
        return "AT+CIPSEND"
    await client.command("AT+QIACT=1")
    await client.command(f'AT+QIOPEN=1,0,"TCP","127.0.0.1",{port},0,0', b" 0,0\r\n")
    return "AT+QISEND"


def test_command_line_parsing() -> None:
    assert parse_line("AT") == []
    assert parse_line("at+cpin?") == [Command("+CPIN", Form.READ)]
    assert parse_line("ATE0") == [Command("E", Form.SET, ("0",))]
    assert parse_line('AT+QIOPEN=1,0,"TCP","a,b;c",80,,1') == [
        Command("+QIOPEN", Form.SET, ("1", "0", "TCP", "a,b;c", "80", "", "1"))
    ]
    assert parse_line("ATI;+CSQ;&D2") == [
        Command("I"),
        Command("+CSQ"),
        Command("&D", Form.SET, ("2",)),
    ]
    assert parse_line("AT+CGDCONT=?") == [Command("+CGDCONT", Form.TEST)]
    assert parse_line("ATS0=1") == [Command("S0", Form.SET, ("1",))]
    assert parse_line('AT+X="open') is None
    assert parse_line("hello") is None


@given(st.text(max_size=80))
def test_any_line_parses_or_is_refused(line: str) -> None:
    result = parse_line(line)
    assert result is None or all(isinstance(c, Command) for c in result)


async def test_crlf_and_one_byte_at_a_time(
    sim: SimulatedModem, client: RawClient
) -> None:
    assert await client.command("ATE0") == b"ATE0\r\r\nOK\r\n"
    client.write(b"AT+CSQ\r\n")
    assert await client.read_until(b"OK\r\n") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    for byte in b"AT+CGATT?\r\n":
        client.write(bytes([byte]))
        await asyncio.sleep(0.003)
    assert await client.read_until(b"OK\r\n") == b"\r\n+CGATT: 1\r\n\r\nOK\r\n"
    assert await client.read_quiet(0.05) == b""
    assert sim.violations == []


async def test_echo_is_typed_back_with_backspace(client: RawClient) -> None:
    client.write(b"AT+CX\x08SQ")
    assert await client.read_until(b"SQ") == b"AT+CX\x08SQ"
    client.write(b"\r")
    assert await client.read_until(b"OK\r\n") == b"\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


async def test_blank_lines_and_stray_ctrl_z_are_ignored(
    sim: SimulatedModem, client: RawClient
) -> None:
    await client.command("ATE0")
    client.write(b"\r\r\x1aAT\r")
    assert await client.read_until(b"OK\r\n") == b"\r\nOK\r\n"
    assert await client.read_quiet(0.05) == b""


async def test_overlong_line_is_refused(client: RawClient) -> None:
    await client.command("ATE0")
    assert await client.command("AT+" + "X" * 5000, b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert await client.command("AT") == b"\r\nOK\r\n"


async def test_a_host_typing_without_reading_gets_bounded_echo(
    client: RawClient,
) -> None:
    typed = 0
    while typed < 800_000:
        try:
            typed += os.write(client.port.fd, b"A" * 4096)
        except BlockingIOError:
            await asyncio.sleep(0.001)

    echoed = await client.read_quiet(0.2)

    assert len(echoed) < 300_000
    assert await client.command("", b"ERROR\r\n") == b"\r\r\nERROR\r\n"
    assert (await client.command("AT")).endswith(b"\r\nOK\r\n")


async def test_a_clean_session_has_no_violations(
    sim: SimulatedModem, client: RawClient, server: EchoServer
) -> None:
    send = await open_socket(sim, client, server.port)
    prompt = sim.facts.prompt
    assert await client.command(f"{send}=0,3", prompt) == prompt
    client.write(b"abc")
    await client.read_until(b"OK\r\n")
    await client.command("AT")
    assert sim.violations == []


async def test_command_while_another_runs(
    sim: SimulatedModem, client: RawClient
) -> None:
    await client.command("ATE0")
    client.write(b"AT+CSQ\rAT+CPIN?\r")
    assert await client.read_until(b"READY\r\n\r\nOK\r\n") == (
        b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n\r\n+CPIN: READY\r\n\r\nOK\r\n"
    )
    assert [v.kind for v in sim.violations] == [ViolationKind.COMMAND_WHILE_BUSY]
    assert sim.violations[0].command == "AT+CSQ"
    assert sim.violations[0].data == b"AT+CPIN?\r"


async def test_payload_before_the_prompt(
    sim: SimulatedModem, client: RawClient, server: EchoServer
) -> None:
    send = await open_socket(sim, client, server.port)
    client.write(f"{send}=0,5\r".encode() + b"early")
    await client.read_until(b"OK\r\n")
    reader, _writer = await server.peer()
    assert await reader.readexactly(5) == b"early"
    assert [v.kind for v in sim.violations] == [ViolationKind.SEND_BEFORE_PROMPT]


async def test_payload_longer_than_announced(
    sim: SimulatedModem, client: RawClient, server: EchoServer
) -> None:
    send = await open_socket(sim, client, server.port)
    prompt = sim.facts.prompt
    assert await client.command(f"{send}=0,3", prompt) == prompt
    client.write(b"abcAT\r")
    await client.read_until(b"OK\r\n")
    reader, _writer = await server.peer()
    assert await reader.readexactly(3) == b"abc"
    assert [v.kind for v in sim.violations] == [ViolationKind.PAYLOAD_TOO_LONG]
    assert sim.violations[0].data == b"AT\r"
    # The extra bytes were read as the next command line, as on hardware.
    assert (await client.read_quiet(0.1)).endswith(b"\r\nOK\r\n")


async def test_garbage_lines_always_get_a_final_result(
    sim: SimulatedModem, client: RawClient
) -> None:
    await client.command("ATE0")
    names = [
        n for n in sim.personality.handlers if not n.startswith(("+CIPSEND", "+QISEND"))
    ]
    names = [
        n
        for n in names
        if n not in ("+CRESET", "+QPOWD", "+CFUN", "+QIDEACT", "+NETCLOSE")
    ]
    rng = random.Random(4)
    alphabet = '0123456789,"?=;+-.ABCxyz \x7f\x00\xff'
    for _ in range(150):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        name = rng.choice(names)
        line = f"AT{name}{tail}" if name.startswith("+") else f"AT{tail}"
        client.write(line.encode("latin-1") + b"\r")
        reply = await client.read_until(b"\r\n", seconds=5)
        while not reply.endswith((b"OK\r\n", b"ERROR\r\n")) and b"ERROR:" not in reply:
            reply += await client.read_until(b"\r\n", seconds=5)
        await client.read_quiet(0.005)
    assert await client.command("AT") == b"\r\nOK\r\n"


async def test_random_bytes_never_break_the_module(
    client: RawClient, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(7)
    for _ in range(60):
        chunk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
        if b"CFUN" in chunk.upper():
            continue  # a reset would take the port away

        client.write(chunk + b"\rAT\r")

        await client.read_until(b"OK\r\n", seconds=5)
        await client.read_quiet(0.01)
    assert (await client.command("AT")).endswith(b"\r\nOK\r\n")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_host_closing_and_reopening_the_port(
    sim: SimulatedModem, client: RawClient
) -> None:
    await client.command("ATE0")
    client.close()
    await asyncio.sleep(0.02)
    again = RawClient(sim.path)
    try:
        assert await again.command("AT") == b"\r\nOK\r\n"
    finally:
        again.close()


async def test_unknown_commands_are_logged(
    client: RawClient, caplog: pytest.LogCaptureFixture
) -> None:
    await client.command("ATE0")
    assert await client.command("AT+NOSUCH=1", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert any("unknown command +NOSUCH=1" in r.getMessage() for r in caplog.records)
