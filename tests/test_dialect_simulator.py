"""Both dialects against the simulated modules, with a real TCP echo peer behind them.

The simulator is built from the reference, not from this driver, so these tests
check the two against each other: bring-up, bytes both ways, the network closing a
socket or the bearer, and the module rebooting under the driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from transcript import replay

from modembridge.bringup import bring_up
from modembridge.detect import open_modem
from modembridge.errors import ModemTimeout, PortVanished
from modembridge.modem import EventKind, Modem, ModemEvent
from modembridge.simulator import SimConfig, SimulatedModem

MODELS = ["sim7600", "ec20"]


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture(params=MODELS)
async def module(request: pytest.FixtureRequest) -> AsyncIterator[SimulatedModem]:
    module = SimulatedModem(SimConfig(model=request.param))
    await module.start()
    yield module
    await module.stop()
    # Whatever a test did to the module, the driver kept the AT discipline.
    assert module.violations == []


@pytest.fixture
async def modem(module: SimulatedModem) -> AsyncIterator[Modem]:
    modem = await open_modem(module.path)
    await bring_up(modem, "internet")
    yield modem
    await modem.close()


async def test_bytes_go_both_ways_split_at_the_module_limit(
    module: SimulatedModem, modem: Modem, echo_port: int
) -> None:
    socket = await modem.open_socket("127.0.0.1", echo_port)
    data = bytes(range(256)) * 20 + b"\r\nOK\r\n> "

    await socket.write(data)
    received = b""
    while len(received) < len(data):
        received += await asyncio.wait_for(socket.read(), 10)
    await socket.close()

    assert received == data
    assert module.violations == []


async def test_network_closing_the_socket_ends_the_stream(
    module: SimulatedModem, modem: Modem, echo_port: int
) -> None:
    events: list[ModemEvent] = []
    modem.subscribe(events.append)
    socket = await modem.open_socket("127.0.0.1", echo_port)

    module.close_socket(socket.link)

    assert await asyncio.wait_for(socket.read(), 10) == b""
    assert [e.kind for e in events] == [EventKind.SOCKET_CLOSED]
    await socket.close()
    again = await modem.open_socket("127.0.0.1", echo_port)
    assert again.link == socket.link
    assert module.violations == []


async def test_losing_the_bearer_is_an_event_and_ends_the_socket(
    module: SimulatedModem, modem: Modem, echo_port: int
) -> None:
    events: list[ModemEvent] = []
    modem.subscribe(events.append)
    socket = await modem.open_socket("127.0.0.1", echo_port)

    module.drop_bearer()

    assert await asyncio.wait_for(socket.read(), 10) == b""
    assert EventKind.BEARER_LOST in [e.kind for e in events]
    assert not await modem.bearer_active()


async def test_a_reboot_makes_the_port_vanish(
    module: SimulatedModem, modem: Modem, echo_port: int
) -> None:
    socket = await modem.open_socket("127.0.0.1", echo_port)
    reading = asyncio.create_task(socket.read())

    rebooting = asyncio.create_task(module.reboot(downtime=0.2))

    with pytest.raises(PortVanished):
        await asyncio.wait_for(reading, 10)
    with pytest.raises(PortVanished):
        await modem.signal()
    await rebooting


async def test_the_module_answers_every_command_the_driver_sends(
    module: SimulatedModem,
    modem: Modem,
    echo_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await modem.identify()
    await modem.sim_state()
    await modem.signal()
    await modem.registration()
    await modem.operator()
    assert await modem.bearer_active()
    socket = await modem.open_socket("127.0.0.1", echo_port)
    await socket.write(b"x")
    assert await asyncio.wait_for(socket.read(), 10) == b"x"
    await socket.close()
    await modem.bearer_down()
    await modem.bearer_down()
    assert not await modem.bearer_active()
    await modem.radio_off()
    await modem.radio_on()
    await modem.reset()

    refused = [r.getMessage() for r in caplog.records if "command" in r.getMessage()]
    assert [m for m in refused if "unknown" in m or "not a command" in m] == []


async def test_a_module_that_stops_answering_times_out_naming_the_command(
    module: SimulatedModem,
) -> None:
    modem = await open_modem(module.path, timeouts={"signal": 0.3})
    try:
        module.hang()
        with pytest.raises(ModemTimeout, match=r"AT\+CSQ") as raised:
            await modem.signal()
        module.resume()
        assert isinstance(raised.value, TimeoutError)
        assert raised.value.command == "AT+CSQ"
    finally:
        await modem.close()


@pytest.mark.parametrize("model", MODELS)
async def test_a_wire_log_capture_replays_like_a_recording(
    model: str, echo_port: int, tmp_path: Path
) -> None:
    capture = tmp_path / "capture.txt"
    data = b"one\r\nOK\r\n> two"
    module = SimulatedModem(SimConfig(model=model, fragment=5))
    await module.start()
    modem = await open_modem(module.path, wire_log=capture)
    try:
        await bring_up(modem, "internet")
        socket = await modem.open_socket("127.0.0.1", echo_port)
        await socket.write(data)
        received = b""
        while len(received) < len(data):
            received += await asyncio.wait_for(socket.read(), 10)
    finally:
        await modem.close()
        await module.stop()

    events = replay(capture, bytewise=False)
    assert replay(capture, bytewise=True) == events
    payloads = [e for e in events if e.startswith("payload ")]
    assert payloads[-1].endswith(repr(data))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fragment", range(1, 8))
async def test_fragmented_slow_output_breaks_no_host_rule(
    model: str, fragment: int, echo_port: int
) -> None:
    config = SimConfig(
        model=model, fragment=fragment, latency_in=0.002, latency_out=0.003
    )
    module = SimulatedModem(config)
    await module.start()
    modem = await open_modem(module.path)
    try:
        await bring_up(modem, "internet")
        socket = await modem.open_socket("127.0.0.1", echo_port)
        await socket.write(b"ping\r\nOK\r\n")
        received = b""
        while len(received) < 10:
            received += await asyncio.wait_for(socket.read(), 10)
        await socket.close()
    finally:
        await modem.close()
        await module.stop()

    assert received == b"ping\r\nOK\r\n"
    assert module.violations == []
