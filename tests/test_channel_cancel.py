"""A caller that gives up does not free the port before the module is done.

Against the simulated module, which records every command a host writes while
another is still running (``violations``), with its output delayed so that a
command is still running when its caller is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from modembridge.channel import ATChannel
from modembridge.simulator import SimConfig, SimulatedModem

DELAY = 0.3


@pytest.fixture
async def module() -> AsyncIterator[SimulatedModem]:
    module = SimulatedModem(SimConfig(model="sim7600"))
    await module.start()
    yield module
    await module.stop()


@pytest.fixture
async def channel(module: SimulatedModem) -> AsyncIterator[ATChannel]:
    channel = await ATChannel.open(module.path)
    await channel.command("ATE0", seconds=5)
    yield channel
    await channel.close()


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


async def cancel_soon(task: asyncio.Task[object]) -> None:
    """Cancel ``task`` once its command reached the module but not its answer."""
    await asyncio.sleep(DELAY / 3)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def open_link(channel: ATChannel, port: int) -> None:
    """Network up and link 0 open to ``port``, in manual receive mode."""
    await channel.command("AT+CIPRXGET=1", seconds=5)
    with channel.urc_waiter(lambda line: line.startswith("+NETOPEN:")) as netopen:
        await channel.command("AT+NETOPEN", seconds=10)
        assert await netopen.wait("AT+NETOPEN", 10, "+NETOPEN") == "+NETOPEN: 0"
    with channel.urc_waiter(lambda line: line.startswith("+CIPOPEN:")) as cipopen:
        await channel.command(f'AT+CIPOPEN=0,"TCP","127.0.0.1",{port}', seconds=10)
        assert await cipopen.wait("AT+CIPOPEN", 10, "+CIPOPEN") == "+CIPOPEN: 0,0"


async def test_next_command_waits_for_the_answer_to_a_cancelled_one(
    module: SimulatedModem, channel: ATChannel
) -> None:
    module.set_latency(0.0, DELAY)
    slow = asyncio.create_task(channel.command("AT+CGMR", seconds=5))
    await cancel_soon(slow)

    response = await channel.command("AT+CSQ", seconds=5)

    assert response.info == ("+CSQ: 20,99",)
    assert module.violations == []


async def test_send_cancelled_before_the_prompt_still_writes_its_bytes(
    module: SimulatedModem, channel: ATChannel, echo_port: int
) -> None:
    await open_link(channel, echo_port)
    module.set_latency(0.0, DELAY)
    send = asyncio.create_task(channel.send_data("AT+CIPSEND=0,5", b"hello", seconds=5))
    await cancel_soon(send)

    with channel.urc_waiter(lambda line: line.startswith("+CIPRXGET: 1,0")) as ready:
        response = await channel.command("AT+CIPRXGET=4,0", seconds=5)
        if response.info == ("+CIPRXGET: 4,0,0",):
            await ready.wait("AT+CIPRXGET=4,0", 5, "data from the echo peer")
    received = await channel.command("AT+CIPRXGET=2,0,1500", seconds=5)

    assert [p.data for p in received.payloads] == [b"hello"]
    assert module.violations == []


async def test_read_cancelled_midway_keeps_the_close_behind_it(
    module: SimulatedModem, channel: ATChannel, echo_port: int
) -> None:
    await open_link(channel, echo_port)
    with channel.urc_waiter(lambda line: line.startswith("+CIPRXGET: 1,0")) as ready:
        await channel.send_data("AT+CIPSEND=0,3", b"abc", seconds=5)
        await ready.wait("AT+CIPSEND", 5, "data from the echo peer")
    module.set_latency(0.0, DELAY)
    read = asyncio.create_task(channel.command("AT+CIPRXGET=2,0,1500", seconds=5))
    await cancel_soon(read)

    with channel.urc_waiter(lambda line: line.startswith("+CIPCLOSE:")) as closed:
        response = await channel.command("AT+CIPCLOSE=0", seconds=5)
        assert await closed.wait("AT+CIPCLOSE=0", 5, "+CIPCLOSE") == "+CIPCLOSE: 0,0"

    assert response.final.line == "OK"
    assert response.payloads == ()
    assert module.violations == []
