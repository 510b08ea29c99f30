"""A late answer after a timeout is never taken for the next command's answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from scriptedpeer import OK, ScriptedPeer

from modembridge.channel import ATChannel
from modembridge.errors import ModemTimeout

CSQ = b"\r\n+CSQ: 19,99\r\n" + OK
CGSN = b"\r\n868822040061788\r\n" + OK


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    peer = ScriptedPeer()
    peer.on("AT", OK)
    peer.on("AT+CGSN", CGSN)
    yield peer
    await peer.close()


@pytest.fixture
async def channel(peer: ScriptedPeer) -> AsyncIterator[ATChannel]:
    channel = await ATChannel.open(peer.path)
    yield channel
    await channel.close()


async def test_late_answer_within_the_grace_is_dropped(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+CSQ", peer.then(b"", 0.3, CSQ))

    with pytest.raises(ModemTimeout, match="AT\\+CSQ"):
        await channel.command("AT+CSQ", seconds=0.2)
    response = await channel.command("AT+CGSN", seconds=2)

    assert response.info == ("868822040061788",)
    assert peer.commands == ["AT+CSQ", "AT", "AT+CGSN"]


async def test_late_answer_overtaking_the_ok_to_at_is_not_taken_for_it(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    # The answer to AT+CSQ comes after the channel stopped waiting for it, and
    # before the OK to the AT that follows: the first OK is not the one to AT.
    peer.on("AT+CSQ", peer.then(b"", 0.35, CSQ))
    peer.on("AT", peer.then(b"", 0.1, OK))

    with pytest.raises(ModemTimeout):
        await channel.command("AT+CSQ", seconds=0.1)
    response = await channel.command("AT+CGSN", seconds=2)

    assert response.info == ("868822040061788",)
    assert peer.commands == ["AT+CSQ", "AT", "AT+CGSN"]


async def test_late_refusal_is_not_the_next_command_refused(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+CIPCLOSE=0", peer.then(b"", 0.15, b"\r\n+CME ERROR: 4\r\n"))
    peer.on("AT+CGSN", peer.then(b"", 0.1, CGSN))

    with pytest.raises(ModemTimeout):
        await channel.command("AT+CIPCLOSE=0", seconds=0.1)
    response = await channel.command("AT+CGSN", seconds=2)

    assert response.info == ("868822040061788",)


async def test_late_refusal_after_the_ok_to_at_means_another_at(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+CIPCLOSE=0", peer.then(b"", 0.25, b"\r\n+CME ERROR: 4\r\n"))

    with pytest.raises(ModemTimeout):
        await channel.command("AT+CIPCLOSE=0", seconds=0.05)
    response = await channel.command("AT+CGSN", seconds=2)

    assert response.info == ("868822040061788",)
    assert peer.commands == ["AT+CIPCLOSE=0", "AT", "AT", "AT+CGSN"]


async def test_a_silent_module_times_out_the_next_command_until_it_answers(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+CSQ", b"")
    peer.on("AT", b"", OK)
    channel.sync_seconds = 0.2

    with pytest.raises(ModemTimeout):
        await channel.command("AT+CSQ", seconds=0.05)
    with pytest.raises(ModemTimeout, match=r"AT\+CGSN.*OK to AT"):
        await channel.command("AT+CGSN", seconds=2)
    response = await channel.command("AT+CGSN", seconds=2)

    assert response.info == ("868822040061788",)
    assert peer.commands == ["AT+CSQ", "AT", "AT", "AT+CGSN"]


async def test_late_payload_stays_with_the_command_that_timed_out(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    late = b"\r\n+CIPRXGET: 2,0,6,0\r\nOK\r\n>\r\n" + OK
    peer.on("AT+CIPRXGET=2,0,1500", peer.then(b"", 0.15, late))
    peer.on("AT+CGSN", peer.then(b"", 0.1, CGSN))
    pushed: list[object] = []
    channel.subscribe(pushed.append)

    with pytest.raises(ModemTimeout):
        await channel.command("AT+CIPRXGET=2,0,1500", seconds=0.1)
    response = await channel.command("AT+CGSN", seconds=2)

    assert response.info == ("868822040061788",)
    assert pushed == []


async def test_a_prompt_after_its_limit_gets_the_announced_bytes(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    # Left without its bytes, the module would take every later command as data.
    peer.on("AT+CIPSEND=0,5", peer.then(b"", 0.15, b"\r\n>"))
    peer.after_payload("AT+CIPSEND=0,5", OK + b"\r\n+CIPSEND: 0,5,5\r\n")

    with pytest.raises(ModemTimeout, match="prompt"):
        await channel.send_data(
            "AT+CIPSEND=0,5", b"hello", seconds=2, prompt_seconds=0.1
        )
    response = await channel.command("AT+CGSN", seconds=2)

    assert response.info == ("868822040061788",)
    assert peer.payloads == [b"hello"]
    assert peer.commands == ["AT+CIPSEND=0,5", "AT", "AT+CGSN"]
