"""Faults injected into a running simulated module, and what the host then sees."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import serial
from simulator_client import EchoServer, RawClient

from modembridge.simulator import SimConfig, SimulatedModem


async def started(**options: Any) -> tuple[SimulatedModem, RawClient]:
    """A running module and a client past its boot URCs, echo off."""
    sim = SimulatedModem(SimConfig(**options))
    await sim.start()
    client = RawClient(sim.path)
    if options.get("boot_time"):
        await client.read_until(b"DONE\r\n")  # a booting module ignores commands
    await client.command("ATE0")
    await client.read_quiet(0.02)
    return sim, client


@pytest.fixture
async def server() -> AsyncIterator[EchoServer]:
    peer = EchoServer()
    await peer.start()
    yield peer
    await peer.stop()


async def test_no_sim_in_each_error_mode() -> None:
    sim, client = await started(model="sim7600", sim_absent=True)
    try:
        assert await client.command("AT+CPIN?", b"\r\n") == b"\r\n"
        assert await client.read_until(b"\r\n") == b"+CME ERROR: SIM not inserted\r\n"
        await client.command("AT+CMEE=1")
        assert await client.command("AT+CIMI", b"10\r\n") == b"\r\n+CME ERROR: 10\r\n"
        await client.command("AT+CMEE=0")
        assert await client.command("AT+CICCID", b"ERROR\r\n") == b"\r\nERROR\r\n"
        assert await client.command("AT+CGREG?") == b"\r\n+CGREG: 0,0\r\n\r\nOK\r\n"
    finally:
        client.close()
        await sim.stop()


async def test_sim_busy_then_ready_with_its_urcs() -> None:
    sim, client = await started(model="ec20", sim_busy_seconds=0.3)
    try:
        assert await client.command("AT+CPIN?", b"14\r\n") == b"\r\n+CME ERROR: 14\r\n"
        urcs = await client.read_until(b"+QIND: PB DONE\r\n")
        assert urcs == (
            b"\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n"
            b"\r\n+QIND: SMS DONE\r\n\r\n+QIND: PB DONE\r\n"
        )
        assert await client.command("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    finally:
        client.close()
        await sim.stop()


async def test_no_signal_means_no_registration_and_no_bearer() -> None:
    sim, client = await started(model="sim7600", no_signal=True)
    try:
        assert await client.command("AT+CSQ") == b"\r\n+CSQ: 99,99\r\n\r\nOK\r\n"
        assert await client.command("AT+CGREG?") == b"\r\n+CGREG: 0,2\r\n\r\nOK\r\n"
        assert await client.command("AT+COPS?") == b"\r\n+COPS: 0\r\n\r\nOK\r\n"
        assert await client.command("AT+NETOPEN", b"ERROR\r\n") == b"\r\nERROR\r\n"
        sim.set_no_signal(False)
        assert await client.command("AT+CGREG?") == b"\r\n+CGREG: 0,1\r\n\r\nOK\r\n"
    finally:
        client.close()
        await sim.stop()


async def test_registration_delay_and_loss_with_urcs() -> None:
    sim, client = await started(model="ec20", registration_delay=0.2)
    try:
        assert await client.command("AT+CEREG=1") == b"\r\nOK\r\n"
        assert await client.command("AT+CEREG?") == b"\r\n+CEREG: 1,2\r\n\r\nOK\r\n"
        assert await client.command("AT+QIACT=1", b"ERROR\r\n") == b"\r\nERROR\r\n"
        assert await client.read_until(b"+CEREG: 1\r\n") == b"\r\n+CEREG: 1\r\n"
        sim.lose_registration(0.1)
        assert await client.read_until(b"+CEREG: 2\r\n") == b"\r\n+CEREG: 2\r\n"
        assert await client.read_until(b"+CEREG: 1\r\n") == b"\r\n+CEREG: 1\r\n"
    finally:
        client.close()
        await sim.stop()


async def test_signal_level_changes() -> None:
    sim, client = await started(model="ec20")
    try:
        sim.set_signal(7)
        assert await client.command("AT+CSQ") == b"\r\n+CSQ: 7,99\r\n\r\nOK\r\n"
    finally:
        client.close()
        await sim.stop()


async def test_sim7600_bearer_drop(server: EchoServer) -> None:
    sim, client = await started(model="sim7600")
    try:
        await client.command("AT+NETOPEN", b"+NETOPEN: 0\r\n")
        line = f'AT+CIPOPEN=0,"TCP","127.0.0.1",{server.port}'
        await client.command(line, b"+CIPOPEN: 0,0\r\n")
        reader, _writer = await server.peer()
        sim.drop_bearer()
        assert await client.read_quiet(0.05) == (
            b"\r\n+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\n"
        )
        assert await reader.read() == b""
        assert await client.command("AT+CIPCLOSE=0", b"ERROR\r\n") == (
            b"\r\n+CIPCLOSE: 0,4\r\n\r\nERROR\r\n"
        )
        assert await client.command("AT+CIPSEND=0,4", b"ERROR\r\n") == (
            b"\r\n+CIPERROR: 4\r\n\r\nERROR\r\n"
        )
        assert await client.command("AT+NETCLOSE", b"ERROR\r\n") == (
            b"\r\n+NETCLOSE: 2\r\n\r\nERROR\r\n"
        )
        assert await client.command("AT+NETOPEN?") == b"\r\n+NETOPEN: 0\r\n\r\nOK\r\n"
    finally:
        client.close()
        await sim.stop()


async def test_ec20_bearer_drop(server: EchoServer) -> None:
    sim, client = await started(model="ec20")
    try:
        await client.command("AT+QIACT=1")
        line = f'AT+QIOPEN=1,0,"TCP","127.0.0.1",{server.port},0,0'
        await client.command(line, b"+QIOPEN: 0,0\r\n")
        reader, _writer = await server.peer()
        sim.drop_bearer()
        assert await client.read_quiet(0.05) == b'\r\n+QIURC: "pdpdeact",1\r\n'
        assert await reader.read() == b""
        assert await client.command("AT+QIACT?") == b"\r\nOK\r\n"
        assert await client.command("AT+QISEND=0,1", b"ERROR\r\n") == b"\r\nERROR\r\n"
        assert await client.command("AT+QIDEACT=1") == b"\r\nOK\r\n"
        assert await client.command("AT+QIACT=1") == b"\r\nOK\r\n"
        await client.command(line, b"+QIOPEN: 0,0\r\n")
    finally:
        client.close()
        await sim.stop()


@pytest.mark.parametrize(
    ("model", "urc"),
    [("sim7600", b"\r\n+IPCLOSE: 0,1\r\n"), ("ec20", b'\r\n+QIURC: "closed",0\r\n')],
)
async def test_socket_closed_by_the_network(
    server: EchoServer, model: str, urc: bytes
) -> None:
    sim, client = await started(model=model)
    try:
        if model == "sim7600":
            await client.command("AT+NETOPEN", b"+NETOPEN: 0\r\n")
            line = f'AT+CIPOPEN=0,"TCP","127.0.0.1",{server.port}'
        else:
            await client.command("AT+QIACT=1")
            line = f'AT+QIOPEN=1,0,"TCP","127.0.0.1",{server.port},0,0'
        await client.command(line, b" 0,0\r\n")
        reader, _writer = await server.peer()
        sim.close_socket(0)
        assert await client.read_quiet(0.05) == urc
        assert await reader.read() == b""
    finally:
        client.close()
        await sim.stop()


async def test_latency_delays_the_reply() -> None:
    sim, client = await started(model="sim7600")
    try:
        sim.set_latency(0.1, 0.15)
        loop = asyncio.get_running_loop()
        begun = loop.time()
        assert await client.command("AT") == b"\r\nOK\r\n"
        assert loop.time() - begun >= 0.25
    finally:
        client.close()
        await sim.stop()


async def test_lowering_the_latency_keeps_the_host_bytes_in_order() -> None:
    sim, client = await started(model="sim7600")
    try:
        sim.set_latency(0.4, 0.0)
        client.write(b"AT")
        await asyncio.sleep(0.05)
        sim.set_latency(0.0, 0.0)
        client.write(b"\r")

        assert await client.read_until(b"OK\r\n") == b"\r\nOK\r\n"
    finally:
        client.close()
        await sim.stop()


async def test_fragments_keep_the_bytes() -> None:
    sim, client = await started(model="sim7600", fragment=4)
    try:
        reads = client.reads
        assert await client.command("ATI") == (
            b"\r\nManufacturer: SIMCOM INCORPORATED\r\nModel: SIMCOM_SIM7600G-H\r\n"
            b"Revision: LE20B04SIM7600M22\r\nIMEI: 868822040061788\r\n"
            b"+GCAP: +CGSM\r\n\r\nOK\r\n"
        )
        assert client.reads - reads > 1
    finally:
        client.close()
        await sim.stop()


async def test_hang_and_resume() -> None:
    sim, client = await started(model="ec20")
    try:
        sim.hang()
        client.write(b"AT\r")
        assert await client.read_quiet(0.15) == b""
        sim.resume()
        assert await client.command("AT") == b"\r\nOK\r\n"
    finally:
        client.close()
        await sim.stop()


def _target(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except FileNotFoundError:
        return None


async def _wait_for(link: Path, present: bool) -> str | None:
    for _ in range(300):
        target = _target(link)
        if (target is not None) == present:
            return target
        await asyncio.sleep(0.01)
    raise AssertionError(f"{link} did not {'appear' if present else 'vanish'}")


async def test_reboot_under_the_same_link(tmp_path: Path, server: EchoServer) -> None:
    link = tmp_path / "ttySIM0"
    sim, client = await started(
        model="sim7600", link=str(link), boot_time=0.05, reboot_downtime=0.2
    )
    try:
        old = _target(link)
        assert old is not None
        assert sim.path == str(link)
        await client.command("AT+NETOPEN", b"+NETOPEN: 0\r\n")
        await client.command(
            f'AT+CIPOPEN=0,"TCP","127.0.0.1",{server.port}', b"+CIPOPEN: 0,0\r\n"
        )
        reader, _writer = await server.peer()

        reboot = asyncio.ensure_future(sim.reboot())
        await _wait_for(link, present=False)
        with pytest.raises(serial.SerialException):
            await client.read_until_vanished()
        assert await reader.read() == b""
        client.close()
        await reboot

        await _wait_for(link, present=True)
        client = RawClient(str(link))
        boot = await client.read_until(b"PB DONE\r\n")
        assert boot.endswith(
            b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n\r\nPB DONE\r\n"
        )
        assert await client.command("AT") == b"AT\r\r\nOK\r\n"
        assert await client.command("AT+NETOPEN?") == (
            b"AT+NETOPEN?\r\r\n+NETOPEN: 0\r\n\r\nOK\r\n"
        )
    finally:
        client.close()
        await sim.stop()
    assert _target(link) is None


async def test_stop_cancels_a_reboot_started_in_the_background(
    tmp_path: Path,
) -> None:
    link = tmp_path / "ttySIM2"
    sim = SimulatedModem(SimConfig(link=str(link), reboot_downtime=0.1))
    await sim.start()
    sim.reboot_soon()
    await asyncio.sleep(0.01)  # the port is down now

    await sim.stop()

    await asyncio.sleep(0.2)  # past the downtime: nothing comes back
    assert not link.exists()
    assert sim.boots == 1


@pytest.mark.parametrize(
    ("model", "line"), [("sim7600", "AT+CRESET"), ("ec20", "AT+CFUN=1,1")]
)
async def test_reset_commands_reboot(model: str, line: str) -> None:
    sim, client = await started(model=model, reboot_downtime=0.1)
    try:
        assert await client.command(line) == b"\r\nOK\r\n"
        with pytest.raises(serial.SerialException):
            await client.read_until_vanished()
        client.close()
        # The freed pts number may be taken by anyone: wait for our module itself.
        await asyncio.wait_for(sim.wait_booted(2), 10)
        client = RawClient(sim.path)
        # Echo is back on; boot URCs may precede the reply.
        assert (await client.command("AT")).endswith(b"AT\r\r\nOK\r\n")
    finally:
        client.close()
        await sim.stop()


async def test_radio_off_and_on() -> None:
    sim, client = await started(model="ec20")
    try:
        assert await client.command("AT+CFUN=0") == b"\r\nOK\r\n"
        assert await client.command("AT+CFUN?") == b"\r\n+CFUN: 0\r\n\r\nOK\r\n"
        assert await client.command("AT+CSQ") == b"\r\n+CSQ: 99,99\r\n\r\nOK\r\n"
        reply = await client.command("AT+CFUN=1", b"+QIND: PB DONE\r\n")
        assert reply == (
            b"\r\nOK\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n"
            b"\r\n+QIND: SMS DONE\r\n\r\n+QIND: PB DONE\r\n"
        )
        assert await client.command("AT+CGREG?") == b"\r\n+CGREG: 0,1\r\n\r\nOK\r\n"
    finally:
        client.close()
        await sim.stop()
