"""The dialects fed the answers real modules gave, taken from the recordings.

A scripted module answers each command with what the recorded module printed after
it, in the recorded order (CR LF framing as the recording shows it); commands the
recording does not contain get the standard script's answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest
from scriptedpeer import OK, ScriptedPeer, script_ec20, script_sim7600
from transcript import TRANSCRIPTS, answers

from modembridge import bringup
from modembridge.bringup import bring_up
from modembridge.channel import ATChannel
from modembridge.ec20 import Ec20
from modembridge.errors import BearerError
from modembridge.modem import EventKind, ModemEvent
from modembridge.sim7600 import Sim7600


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    peer = ScriptedPeer()
    yield peer
    await peer.close()


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bringup, "POLL_SECONDS", 0.02)


def replay_answers(peer: ScriptedPeer, recording: str, commands: Iterable[str]) -> None:
    recorded = answers(next(TRANSCRIPTS.glob(f"{recording}-*.txt")))
    for command in commands:
        peer.on(command, *recorded[command])


async def test_sim7600_bring_up_with_recorded_sim_busy_and_registration(
    peer: ScriptedPeer,
) -> None:
    script_sim7600(peer)
    replay_answers(peer, "sim7600-04", ["AT+CPIN?", "AT+CGREG?", "AT+NETOPEN"])
    peer.on("AT+CREG?", b"\r\n+CREG: 0,2\r\n" + OK)
    peer.on("AT+CEREG?", b"\r\n+CEREG: 0,2\r\n" + OK)
    # The second recorded +CPIN: READY has no OK: that query must time out.
    modem = Sim7600(await ATChannel.open(peer.path), timeouts={"sim": 0.5})

    try:
        report = await bring_up(modem, "internet")
    finally:
        await modem.close()

    assert report.address == "10.23.156.36"
    assert peer.commands.count("AT+CPIN?") == 3
    assert peer.commands.count("AT+CGREG?") == 5


async def test_ec21_reboot_mid_registration_and_qiact_error(
    peer: ScriptedPeer,
) -> None:
    script_ec20(peer)
    recorded = ["AT+CPIN?", "AT+CGREG?", "AT+CREG?", "AT+CEREG?", "AT+QIACT=1"]
    replay_answers(peer, "ec21-06", recorded)
    peer.on('AT+QICSGP=1,1,"soracom.io","sora","sora",3', OK)
    peer.on("AT+QIACT?", OK)
    modem = Ec20(await ATChannel.open(peer.path))
    events: list[ModemEvent] = []
    modem.subscribe(events.append)

    try:
        registration = await modem.registration()
        await modem.configure_apn("soracom.io", "sora", "sora")
        with pytest.raises(BearerError, match="ERROR"):
            await modem.bearer_up()
    finally:
        await modem.close()

    assert registration.registered
    assert EventKind.REBOOTED in [e.kind for e in events]
    assert "ATE0" in peer.commands
