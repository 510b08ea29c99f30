"""info, at, doctor, attach and demo as a user runs them, against a simulated module.

The module runs in the test's event loop and the command in a child process, so the
test can read what the command printed while the module answers it.
"""

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modembridge.simulator import SimConfig, SimulatedModem
from relayserver.server import RelayConfig, RelayServer

MODEMBRIDGE = [sys.executable, "-c", "from modembridge.cli import main; main()"]


async def modembridge(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *MODEMBRIDGE,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await finish(proc, stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def finish(
    proc: asyncio.subprocess.Process, stdin: bytes | None = None
) -> tuple[bytes, bytes]:
    """Wait for the process to exit; kill it if it does not, so no test leaks one."""
    try:
        return await asyncio.wait_for(proc.communicate(stdin), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def module(tmp_path: Path) -> AsyncIterator[SimulatedModem]:
    sim = SimulatedModem(SimConfig(model="ec20", link=str(tmp_path / "ttyUSB2")))
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def relay() -> AsyncIterator[RelayServer]:
    server = RelayServer(RelayConfig(host="127.0.0.1", port=0, tokens={"A": "s3"}))
    await server.start()
    yield server
    await server.close()


async def test_info_prints_what_the_module_is(module: SimulatedModem) -> None:
    code, out, _ = await modembridge("info", module.path)

    assert code == 0
    assert f"IMEI          {module.identity.imei}" in out
    assert "registration  registered" in out


async def test_info_json_from_the_port_in_the_environment(
    module: SimulatedModem, tmp_path: Path
) -> None:
    wire = tmp_path / "wire.log"

    code, out, _ = await modembridge(
        "info", "--json", "--wire-log", str(wire), env={"MODEMBRIDGE_PORT": module.path}
    )

    facts = json.loads(out)
    assert code == 0
    assert facts["imei"] == module.identity.imei
    assert facts["sim"] == "ready"
    assert facts["signal"]["dbm"] == -73
    dialogue = wire.read_text()
    assert "> AT+CSQ" in dialogue
    assert "< +CSQ: 20,99" in dialogue


async def test_at_sends_one_command_and_reports_a_refusal(
    module: SimulatedModem,
) -> None:
    ok = await modembridge("at", module.path, "AT+CSQ")
    refused = await modembridge("at", module.path, "AT+NOSUCH")

    assert ok[:2] == (0, "+CSQ: 20,99\nOK\n")
    assert refused[0] == 1
    assert "ERROR" in refused[1]


async def test_at_prompt_reads_commands_until_end_of_input(
    module: SimulatedModem,
) -> None:
    code, out, _ = await modembridge("at", module.path, stdin=b"AT+CPIN?\nAT\n")

    assert code == 0
    assert out.splitlines() == ["+CPIN: READY", "OK", "OK"]


async def test_doctor_finds_every_link_holds(
    module: SimulatedModem, relay: RelayServer
) -> None:
    server = f"127.0.0.1:{relay.port}"

    code, out, _ = await modembridge("doctor", module.path, "--server", server)

    assert code == 0
    assert out.splitlines()[-1] == "every link holds"
    assert "[ok  ] relay" in out


async def test_doctor_names_the_broken_link_and_what_to_try(tmp_path: Path) -> None:
    sim = SimulatedModem(SimConfig(model="sim7600", sim_absent=True))
    await sim.start()
    try:
        code, out, _ = await modembridge("doctor", sim.path, "--json")
    finally:
        await sim.stop()

    checks = {c["name"]: c for c in json.loads(out)}
    assert code == 1
    assert checks["module"]["verdict"] == "ok"
    assert checks["sim"]["verdict"] == "broken"
    assert "SIM" in checks["sim"]["hint"]
    assert checks["relay"]["verdict"] == "skipped"


async def test_doctor_leaves_the_bearer_as_it_found_it(
    module: SimulatedModem, relay: RelayServer
) -> None:
    await modembridge("doctor", module.path, "--server", f"127.0.0.1:{relay.port}")

    code, out, _ = await modembridge("doctor", module.path, "--server", "127.0.0.1:1")

    assert code == 1
    assert "[ok  ] bearer        up, address" in out
    assert "broken link: relay" in out


async def test_attach_to_a_relay_that_refuses_the_card(
    module: SimulatedModem, relay: RelayServer
) -> None:
    args = ("attach", module.path, "--card", "A", "--server", f"127.0.0.1:{relay.port}")

    code, _, err = await modembridge(*args, "--token", "wrong")

    assert code == 1
    assert err.splitlines()[-1] == "Error: relay refused card A: not authorized"
    assert "Traceback" not in err


async def test_attach_with_the_right_token_delivers_and_exits_cleanly(
    module: SimulatedModem, relay: RelayServer
) -> None:
    code, out, err = await modembridge(
        "attach",
        module.path,
        "--card",
        "A",
        "--to",
        "A",
        "--json",
        env={
            "MODEMBRIDGE_SERVER": f"127.0.0.1:{relay.port}",
            "MODEMBRIDGE_TOKEN": "s3",
        },
        stdin="A: ignored prefix\nhé\n".encode(),
    )

    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"from": "A", "message": "A: ignored prefix"},
        {"from": "A", "message": "hé"},
    ]
    assert "card A: online via" in err
    assert err.splitlines()[-1] == "card A: offline, socket and bearer closed"


async def test_attach_exits_non_zero_when_a_message_was_not_delivered(
    module: SimulatedModem, relay: RelayServer
) -> None:
    code, _, err = await modembridge(
        "attach",
        module.path,
        "--card",
        "A",
        "--patience",
        "0.5",
        env={
            "MODEMBRIDGE_SERVER": f"127.0.0.1:{relay.port}",
            "MODEMBRIDGE_TOKEN": "s3",
        },
        stdin=b"no target here\nNOBODY: still waiting for a card\nA: to myself\n",
    )

    assert code == 1
    lines = err.splitlines()
    assert "not sent: no target" in err
    assert "not delivered to NOBODY: 'still waiting for a card'" in err
    assert lines[-1] == "Error: 2 messages not sent"
    assert "Traceback" not in err


async def test_attach_with_input_from_dev_null_exits_cleanly(
    module: SimulatedModem, relay: RelayServer
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *MODEMBRIDGE,
        "attach",
        module.path,
        "--card",
        "A",
        "--token",
        "s3",
        "--server",
        f"127.0.0.1:{relay.port}",
        stdin=asyncio.subprocess.DEVNULL,  # a character device the loop cannot watch
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await finish(proc)

    assert proc.returncode == 0
    assert "Traceback" not in err.decode()
    assert err.decode().splitlines()[-1] == "card A: offline, socket and bearer closed"


async def test_demo_runs_the_main_job_with_no_hardware() -> None:
    code, out, _ = await modembridge("demo")

    assert code == 0
    assert "card B received  A: hello B, this is A on a SIM7600" in out
    assert out.splitlines()[-1].startswith("4 of 4 messages delivered")


async def test_attach_shows_what_it_waits_for_and_for_how_long(
    relay: RelayServer, tmp_path: Path
) -> None:
    slow = SimulatedModem(
        SimConfig(model="sim7600", sim_busy_seconds=1.5, registration_delay=1.5)
    )
    await slow.start()
    try:
        code, _, err = await modembridge(
            "attach",
            slow.path,
            "--card",
            "A",
            "--token",
            "s3",
            "--server",
            f"127.0.0.1:{relay.port}",
            "--to",
            "A",
            stdin=b"",
        )
    finally:
        await slow.stop()

    lines = err.splitlines()
    assert code == 0
    assert "card A: waiting for the SIM (1 s)" in lines
    assert "card A: waiting for network registration (1 s)" in lines
    assert lines.index("card A: waiting for the SIM (1 s)") < next(
        n for n, line in enumerate(lines) if line.startswith("card A: online via")
    )


@pytest.mark.slow
async def test_attach_without_a_sim_says_so_in_one_line(relay: RelayServer) -> None:
    """Slow: right after boot a SIM may read as absent, so bring-up waits 20 s."""
    no_sim = SimulatedModem(SimConfig(model="ec20", sim_absent=True))
    await no_sim.start()
    try:
        code, _, err = await modembridge(
            "attach", no_sim.path, "--card", "A", "--server", f"127.0.0.1:{relay.port}"
        )
    finally:
        await no_sim.stop()

    assert code == 1
    lines = err.splitlines()
    assert lines[-1] == f"Error: {no_sim.path}: SIM not ready: not inserted after 20 s"
    waits = [line for line in lines if line.startswith("card A: waiting for the SIM")]
    assert 3 <= len(waits) <= 5  # after 1 s, then every 5 s
    assert "Traceback" not in err


async def test_at_prompt_shows_what_the_module_says_on_its_own(
    module: SimulatedModem,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *MODEMBRIDGE,
        "at",
        module.path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(b"AT+CREG=2\n")
    assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"OK\n"

    module.lose_registration(0.3)
    first = await asyncio.wait_for(proc.stdout.readline(), 10)
    second = await asyncio.wait_for(proc.stdout.readline(), 10)
    proc.stdin.close()

    assert first == b"[urc] +CREG: 2\n"
    assert second.startswith(b"[urc] +CREG: 1,")
    assert await asyncio.wait_for(proc.wait(), 10) == 0
