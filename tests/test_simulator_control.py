"""The control socket: faults for a running simulated module, one line each."""

from __future__ import annotations

import asyncio
from pathlib import Path

from simulator_client import RawClient

from modembridge.simulator import SimConfig, SimulatedModem
from modembridge.simulator.control import ControlSocket


async def ask(path: Path, *lines: str) -> list[str]:
    """Send control lines and return every reply line."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    replies: list[str] = []
    try:
        for line in lines:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            while True:
                reply = (await reader.readline()).decode().rstrip("\n")
                replies.append(reply)
                if reply == "ok" or reply.startswith("error:"):
                    break
    finally:
        writer.close()
    return replies


async def test_faults_and_refusals_over_the_socket(tmp_path: Path) -> None:
    sim = SimulatedModem(SimConfig(model="ec20"))
    await sim.start()
    path = tmp_path / "sim.ctl"
    control = ControlSocket(sim, str(path))
    await control.start()
    client = RawClient(sim.path)
    try:
        await client.command("ATE0")
        assert await ask(
            path, "signal 9", "no-signal maybe", "bogus 1", "latency 1"
        ) == [
            "ok",
            "error: 'maybe' is not on or off",
            "error: unknown command 'bogus'",
            "error: latency needs 2 argument(s)",
        ]
        assert await client.command("AT+CSQ") == b"\r\n+CSQ: 9,99\r\n\r\nOK\r\n"
        assert await ask(path, "signal 40") == [
            "error: 40 is not an RSSI (0-31, or 99)"
        ]

        await client.command("AT+QIACT=1")
        assert await ask(path, "drop-bearer") == ["ok"]
        assert await client.read_until(b'"pdpdeact",1\r\n') == (
            b'\r\n+QIURC: "pdpdeact",1\r\n'
        )
        client.write(b"AT\rAT\r")
        await client.read_until(b"OK\r\n\r\nOK\r\n")
        replies = await ask(path, "violations")
        assert replies[-1] == "ok"
        assert replies[0].startswith("command while another runs during 'AT'")
    finally:
        client.close()
        await control.stop()
        await sim.stop()
    assert not path.exists()
