"""The AT channel against a scripted module on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from scriptedpeer import ScriptedPeer

from modembridge.atreader import Payload, Urc
from modembridge.channel import ATChannel
from modembridge.errors import CommandRefused, ModemError, ModemTimeout, PortVanished
from modembridge.wirelog import WIRE


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    peer = ScriptedPeer()
    yield peer
    await peer.close()


@pytest.fixture
async def channel(peer: ScriptedPeer) -> AsyncIterator[ATChannel]:
    channel = await ATChannel.open(peer.path)
    yield channel
    await channel.close()


async def test_command_returns_information_lines(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+CSQ", b"\r\n+CSQ: 19,99\r\n\r\nOK\r\n")

    response = await channel.command("AT+CSQ", seconds=2)

    assert response.info == ("+CSQ: 19,99",)
    assert response.value("+CSQ:") == "19,99"
    assert response.final.line == "OK"


async def test_echo_on_and_one_byte_at_a_time_give_the_same_answer(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.echo = True
    peer.byte_at_a_time = True
    peer.on("ATI", b"\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A06M4G\r\n\r\nOK\r\n")

    response = await channel.command("ATI", seconds=5)

    assert response.info == ("Quectel", "EC25", "Revision: EC25EFAR06A06M4G")


async def test_urc_between_command_and_echo_reaches_subscribers(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.echo = False
    urc = b"\r\n+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\n"
    peer.on(
        "AT+CIPRXGET=4,1", urc + b"AT+CIPRXGET=4,1\r\r\n+CIPRXGET: 4,1,0\r\n\r\nOK\r\n"
    )
    seen: list[Urc | Payload] = []
    channel.subscribe(seen.append)

    response = await channel.command("AT+CIPRXGET=4,1", seconds=2)

    assert response.info == ("+CIPRXGET: 4,1,0",)
    assert seen == [Urc("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")]


async def test_cme_error_is_a_refusal_with_code_and_text(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+CPIN?", b"\r\n+CME ERROR: 14\r\n", b"\r\n+CME ERROR: SIM busy\r\n")

    with pytest.raises(CommandRefused) as numeric:
        await channel.command("AT+CPIN?", seconds=2)
    with pytest.raises(CommandRefused) as words:
        await channel.command("AT+CPIN?", seconds=2)

    assert (numeric.value.code, words.value.code) == (14, None)
    assert words.value.text == "SIM busy"


async def test_information_line_then_error_is_a_refusal_carrying_it(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on('AT+CIPOPEN=1,"TCP","10.0.0.1",5', b"\r\n+CIPOPEN: 1,3\r\n\r\nERROR\r\n")

    with pytest.raises(CommandRefused) as refused:
        await channel.command('AT+CIPOPEN=1,"TCP","10.0.0.1",5', seconds=2)

    assert refused.value.info == ("+CIPOPEN: 1,3",)
    assert refused.value.result == "ERROR"


async def test_silence_is_a_timeout_naming_the_command(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+COPS?", b"")

    with pytest.raises(ModemTimeout, match=r"AT\+COPS\?") as timeout:
        await channel.command("AT+COPS?", seconds=0.2)

    assert isinstance(timeout.value, TimeoutError)
    assert timeout.value.command == "AT+COPS?"


async def test_the_channel_works_after_a_timeout(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+COPS?", b"")
    peer.on("AT", b"\r\nOK\r\n")

    with pytest.raises(ModemTimeout):
        await channel.command("AT+COPS?", seconds=0.1)
    response = await channel.command("AT", seconds=2)

    assert response.final.ok


async def test_send_waits_for_the_prompt_then_writes_exactly_the_payload(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+QISEND=0,9", b"\r\n> ")
    peer.after_payload("AT+QISEND=0,9", b"\r\nSEND OK\r\n")

    response = await channel.send_data("AT+QISEND=0,9", b"OK\r\n> x\r\n", seconds=2)

    assert response.final.line == "SEND OK"
    assert peer.payloads == [b"OK\r\n> x\r\n"]


async def test_refusal_before_the_prompt_writes_no_payload(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+CIPSEND=1,4", b"\r\n+CIPERROR: 4\r\n\r\nERROR\r\n")
    peer.on("AT", b"\r\nOK\r\n")

    with pytest.raises(CommandRefused) as refused:
        await channel.send_data("AT+CIPSEND=1,4", b"data", seconds=2)
    await channel.command("AT", seconds=2)

    assert refused.value.info == ("+CIPERROR: 4",)
    assert peer.commands == ["AT+CIPSEND=1,4", "AT"]


async def test_payload_read_by_a_command_is_data_even_if_it_looks_like_protocol(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    data = b"\r\nOK\r\n>\r\nERROR\r\n"
    peer.byte_at_a_time = True
    header = b"\r\n+QIRD: %d\r\n" % len(data)
    peer.on("AT+QIRD=0,1500", header + data + b"\r\n\r\nOK\r\n")

    response = await channel.command("AT+QIRD=0,1500", seconds=5)

    assert [p.data for p in response.payloads] == [data]


async def test_pushed_payload_goes_to_subscribers(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    arrived: asyncio.Queue[Urc | Payload] = asyncio.Queue()
    channel.subscribe(arrived.put_nowait)

    peer.push(b'\r\n+QIURC: "recv",3,4\r\nOK\r\n\r\n')

    event = await asyncio.wait_for(arrived.get(), 2)
    assert event == Payload('+QIURC: "recv",3,4', b"OK\r\n", 3, solicited=False)


async def test_urc_waiter_catches_the_result_printed_after_ok(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+NETOPEN", b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n")

    with channel.urc_waiter(lambda line: line.startswith("+NETOPEN:")) as waiter:
        await channel.command("AT+NETOPEN", seconds=2)
        line = await waiter.wait("AT+NETOPEN", 2, "+NETOPEN")

    assert line == "+NETOPEN: 0"


async def test_vanishing_port_fails_the_pending_and_every_later_call(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+CSQ", b"")
    lost: list[ModemError] = []
    channel.add_lost_callback(lost.append)

    pending = asyncio.create_task(channel.command("AT+CSQ", seconds=10))
    await peer.wait_for(lambda commands: "AT+CSQ" in commands)
    peer.vanish()

    with pytest.raises(PortVanished):
        await pending
    with pytest.raises(PortVanished):
        await channel.command("AT", seconds=1)
    assert channel.vanished
    assert [type(error) for error in lost] == [PortVanished]


async def test_opening_a_missing_port_is_port_vanished(tmp_path: Path) -> None:
    with pytest.raises(PortVanished):
        await ATChannel.open(str(tmp_path / "ttyUSB9"))


async def test_protocol_garbage_fails_the_command_and_the_channel_recovers(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    peer.on("AT+CSQ", b"\r\n+QIRD: 999999999\r\n")
    peer.on("AT", b"\r\nOK\r\n")

    with pytest.raises(ModemError, match="payload too long"):
        await channel.command("AT+CSQ", seconds=2)
    response = await channel.command("AT", seconds=2)

    assert response.final.ok


async def test_every_byte_is_logged_at_wire_level_and_into_the_transcript(
    peer: ScriptedPeer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transcript = tmp_path / "wire.log"
    peer.on("AT+CSQ", b"\r\n+CSQ: 19,99\r\n\r\nOK\r\n")
    caplog.set_level(WIRE)

    channel = await ATChannel.open(peer.path, wire_log=transcript)
    try:
        await channel.command("AT+CSQ", seconds=2)
    finally:
        await channel.close()

    name = f"modem[pts/{Path(peer.path).name}]"
    wire = [r.getMessage() for r in caplog.records if r.levelno == WIRE]
    assert wire[0] == f"{name}: > AT+CSQ\\r"
    assert f"{name}: < +CSQ: 19,99\\r\\n" in wire
    assert logging.getLevelName(WIRE) == "WIRE"
    lines = transcript.read_text().splitlines()
    assert lines[0].endswith(" > AT+CSQ\\r")
    assert lines[-1].endswith(" < OK\\r\\n")


async def test_concurrent_commands_go_out_one_at_a_time(
    peer: ScriptedPeer, channel: ATChannel
) -> None:
    order: list[str] = []

    def answer_signal_later(command: str) -> bytes:
        def answer() -> None:
            order.append("AT+CSQ answered")
            peer.push(b"\r\n+CSQ: 19,99\r\n\r\nOK\r\n")

        asyncio.get_running_loop().call_later(0.05, answer)
        return b""

    def answer_registration(command: str) -> bytes:
        order.append("AT+CREG? received")
        return b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"

    peer.on("AT+CSQ", answer_signal_later)
    peer.on("AT+CREG?", answer_registration)

    signal, registration = await asyncio.gather(
        channel.command("AT+CSQ", seconds=2), channel.command("AT+CREG?", seconds=2)
    )

    assert (signal.info, registration.info) == (("+CSQ: 19,99",), ("+CREG: 0,1",))
    assert order == ["AT+CSQ answered", "AT+CREG? received"]


async def test_a_failing_subscriber_does_not_stop_the_others(
    peer: ScriptedPeer, channel: ATChannel, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Urc | Payload) -> None:
        raise RuntimeError("subscriber bug")

    seen: list[Urc | Payload] = []
    channel.subscribe(broken)
    channel.subscribe(seen.append)
    peer.on("AT", b"\r\nOK\r\n")

    peer.push(b"\r\n+CGREG: 1\r\n")
    await channel.command("AT", seconds=2)

    assert seen == [Urc("+CGREG: 1")]
    assert "URC subscriber failed" in caplog.text
