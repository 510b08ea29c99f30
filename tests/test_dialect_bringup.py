"""Model detection and the timed bring-up, against scripted modules on a pty."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from scriptedpeer import OK, ScriptedPeer, script_ec20, script_sim7600

from modembridge import bringup
from modembridge.bringup import bring_up
from modembridge.detect import open_modem
from modembridge.ec20 import Ec20
from modembridge.errors import ModemTimeout, SimNotReady, UnsupportedModem
from modembridge.sim7600 import Sim7600


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    peer = ScriptedPeer()
    yield peer
    await peer.close()


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bringup, "POLL_SECONDS", 0.02)
    monkeypatch.setattr(bringup, "PROGRESS_SECONDS", 0.01)


async def test_detection_picks_sim7600_from_ati(peer: ScriptedPeer) -> None:
    script_sim7600(peer)
    peer.echo = True

    modem = await open_modem(peer.path)
    await modem.close()

    assert isinstance(modem, Sim7600)
    assert peer.commands[:3] == ["AT", "ATE0", "ATI"]


async def test_detection_falls_back_to_cgmm(peer: ScriptedPeer) -> None:
    script_ec20(peer)
    peer.on("ATI", b"\r\nRevision: 0815\r\n" + OK)

    modem = await open_modem(peer.path)
    await modem.close()

    assert isinstance(modem, Ec20)
    assert peer.commands[-1] == "AT+CGMM"


async def test_detection_waits_for_a_booting_module(peer: ScriptedPeer) -> None:
    script_ec20(peer)
    peer.on("AT", b"", OK)

    modem = await open_modem(peer.path)
    await modem.close()

    # The first AT timed out: one AT puts the channel in step, then the probe.
    assert peer.commands[:4] == ["AT", "AT", "AT", "ATE0"]


async def test_an_unknown_module_is_refused(peer: ScriptedPeer) -> None:
    script_ec20(peer)
    peer.on("ATI", b"\r\nu-blox\r\nSARA-R410M\r\n" + OK)
    peer.on("AT+CGMM", b"\r\nSARA-R410M-02B\r\n" + OK)

    with pytest.raises(UnsupportedModem, match="SARA"):
        await open_modem(peer.path)


async def test_sim7600_bring_up_through_sim_busy_and_roaming(
    peer: ScriptedPeer, tmp_path: Path
) -> None:
    script_sim7600(peer)
    busy = b"\r\n+CME ERROR: SIM busy\r\n"
    peer.on("AT+CPIN?", busy, busy, b"\r\n+CPIN: READY\r\n" + OK)
    peer.on("AT+CREG?", b"\r\n+CREG: 0,2\r\n" + OK)
    peer.on("AT+CGREG?", b"\r\n+CGREG: 0,2\r\n" + OK, b"\r\n+CGREG: 0,5\r\n" + OK)
    peer.on("AT+CEREG?", b"\r\n+CEREG: 0,2\r\n" + OK)
    progress: list[tuple[str, float]] = []

    modem = await open_modem(peer.path, wire_log=tmp_path / "wire.log")
    try:
        report = await bring_up(
            modem, "internet", on_progress=lambda s, t: progress.append((s, t))
        )
    finally:
        await modem.close()

    assert report.address == "10.23.156.36"
    assert report.registration.roaming
    assert report.identity.iccid == "89883030000005421166"
    assert [s.stage for s in report.stages] == [
        "prepare",
        "sim",
        "registration",
        "apn",
        "bearer",
    ]
    assert peer.commands.count("AT+CPIN?") == 3
    assert {stage for stage, _ in progress} == {s.stage for s in report.stages}
    assert "> AT+NETOPEN\\r" in (tmp_path / "wire.log").read_text()


async def test_ec20_bring_up(peer: ScriptedPeer) -> None:
    script_ec20(peer)

    modem = await open_modem(peer.path)
    try:
        report = await bring_up(modem, "internet")
    finally:
        await modem.close()

    assert report.address == "10.1.2.3"
    assert report.operator == "Mint"
    assert report.seconds("bearer") >= 0


async def test_a_sim_asking_for_a_pin_fails_at_once(peer: ScriptedPeer) -> None:
    script_ec20(peer)
    peer.on("AT+CPIN?", b"\r\n+CPIN: SIM PIN\r\n" + OK)

    modem = await open_modem(peer.path)
    try:
        with pytest.raises(SimNotReady, match="pin required"):
            await bring_up(modem, "internet")
    finally:
        await modem.close()

    assert peer.commands.count("AT+CPIN?") == 1


async def test_a_sim_that_stays_busy_fails_after_its_time(peer: ScriptedPeer) -> None:
    script_ec20(peer)
    peer.on("AT+CPIN?", b"\r\n+CME ERROR: SIM busy\r\n")

    modem = await open_modem(peer.path)
    try:
        with pytest.raises(SimNotReady, match="busy"):
            await bring_up(modem, "internet", sim_timeout=0.1)
    finally:
        await modem.close()


async def test_no_registration_is_a_timeout_naming_the_queries(
    peer: ScriptedPeer,
) -> None:
    script_ec20(peer)
    for command in ("AT+CREG?", "AT+CGREG?", "AT+CEREG?"):
        peer.on(command, b"\r\n%s: 0,2\r\n" % command[2:-1].encode() + OK)

    modem = await open_modem(peer.path)
    try:
        with pytest.raises(ModemTimeout, match="CEREG"):
            await bring_up(modem, "internet", registration_timeout=0.1)
    finally:
        await modem.close()


async def test_a_bearer_that_never_comes_up_is_a_timeout(peer: ScriptedPeer) -> None:
    script_sim7600(peer)
    peer.on("AT+NETOPEN", OK)

    modem = await open_modem(peer.path)
    try:
        with pytest.raises(ModemTimeout, match="bearer"):
            await bring_up(modem, "internet", bearer_timeout=0.2)
    finally:
        await modem.close()
