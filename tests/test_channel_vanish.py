"""Writing to a port that vanishes or stops taking bytes: one clear line, no trace.

The simulated module reboots (its pseudo-terminal closes, as a USB reset removes
``/dev/ttyUSB2``) while the host is still writing more than the port buffers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable

import pytest
from scriptedpeer import ScriptedPeer

from modembridge.channel import ATChannel
from modembridge.errors import ModemTimeout, PortVanished
from modembridge.simulator import SimConfig, SimulatedModem


@pytest.fixture
async def module() -> AsyncIterator[SimulatedModem]:
    module = SimulatedModem(SimConfig(model="ec20", latency_in=0.5))
    await module.start()
    yield module
    await module.stop()


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Errors, and tracebacks a user sees at INFO (the library's DEBUG ones aside)."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR or (r.exc_info and r.levelno >= logging.INFO)
    ]


@pytest.mark.parametrize("size", [256 * 1024, 16 * 1024 * 1024])
async def test_reboot_during_a_large_write_is_one_port_vanished_line(
    module: SimulatedModem, caplog: pytest.LogCaptureFixture, size: int
) -> None:
    # 256 KiB is written out before the reboot; 16 MiB is still being written.
    caplog.set_level(logging.DEBUG)
    channel = await ATChannel.open(module.path)
    try:
        await channel.command("ATE0", seconds=5)
        write = asyncio.create_task(
            channel.command("AT+QISEND=0," + "7" * size, seconds=10)
        )
        await asyncio.sleep(0.05)
        await module.reboot(downtime=0.2)

        with pytest.raises(PortVanished):
            await write
    finally:
        await channel.close()

    assert tracebacks(caplog) == []
    vanished = [
        r.getMessage()
        for r in caplog.records
        if r.name == "modembridge.channel" and r.levelno >= logging.INFO
    ]
    assert len(vanished) == 1
    assert vanished[0].startswith(f"{channel.name}: port vanished (")


async def ticks_while(command: Awaitable[object]) -> int:
    """How often a 10 ms timer fired while ``command`` ran (it must time out)."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(ModemTimeout):
            await command
    finally:
        ticker.cancel()
    return ticks


async def test_a_module_that_reads_no_more_times_out_without_stalling_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer = ScriptedPeer()
    peer.stop_reading()
    channel = await ATChannel.open(peer.path)
    command = "AT+QISEND=0," + "7" * 1024 * 1024  # more than the port buffers
    try:
        ticks = await ticks_while(channel.command(command, seconds=0.3))
    finally:
        await channel.close()
        await peer.close()

    assert ticks > 0
    assert tracebacks(caplog) == []
