"""The SIM7600 dialect against a scripted SIM7600 on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from scriptedpeer import OK, ScriptedPeer, script_sim7600

from modembridge.channel import ATChannel
from modembridge.errors import (
    BearerError,
    ModemTimeout,
    PortVanished,
    SocketError,
)
from modembridge.modem import EventKind, ModemEvent, RegStat, SimState
from modembridge.sim7600 import Sim7600


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    peer = ScriptedPeer()
    script_sim7600(peer)
    yield peer
    await peer.close()


@pytest.fixture
async def modem(peer: ScriptedPeer) -> AsyncIterator[Sim7600]:
    modem = Sim7600(await ATChannel.open(peer.path))
    yield modem
    await modem.close()


def events_of(modem: Sim7600) -> list[ModemEvent]:
    events: list[ModemEvent] = []
    modem.subscribe(events.append)
    return events


async def test_identity_strips_prefixes_and_reads_the_iccid(modem: Sim7600) -> None:
    identity = await modem.identify()

    assert identity.manufacturer == "SIMCOM INCORPORATED"
    assert identity.model == "SIMCOM_SIM7600G-H"
    assert identity.firmware == "LE20B04SIM7600M22"
    assert identity.imei == "868822040061788"
    assert identity.iccid == "89883030000005421166"


async def test_sim_busy_then_ready(peer: ScriptedPeer, modem: Sim7600) -> None:
    busy = b"\r\n+CME ERROR: SIM busy\r\n"
    peer.on("AT+CPIN?", busy, b"\r\n+CPIN: READY\r\n" + OK)

    assert await modem.sim_state() is SimState.BUSY
    assert await modem.sim_state() is SimState.READY


async def test_missing_sim_reads_as_absent(peer: ScriptedPeer, modem: Sim7600) -> None:
    peer.on("AT+CPIN?", b"\r\n+CME ERROR: 10\r\n")

    assert await modem.sim_state() is SimState.ABSENT


async def test_roaming_counts_as_registered(peer: ScriptedPeer, modem: Sim7600) -> None:
    peer.on("AT+CREG?", b"\r\n+CREG: 0,2\r\n" + OK)
    peer.on("AT+CGREG?", b"\r\n+CGREG: 0,5\r\n" + OK)
    peer.on("AT+CEREG?", b"\r\nERROR\r\n")

    registration = await modem.registration()

    assert registration.cgreg is RegStat.ROAMING
    assert registration.cereg is None
    assert registration.registered
    assert registration.roaming


async def test_unregistered_values_are_understood(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    peer.on("AT+CSQ", b"\r\n+CSQ: 99,99\r\n" + OK)
    peer.on("AT+COPS?", b"\r\n+COPS: 0\r\n" + OK)

    assert (await modem.signal()).dbm is None
    assert await modem.operator() is None


async def test_signal_and_operator(modem: Sim7600) -> None:
    assert (await modem.signal()).dbm == -73
    assert await modem.operator() == "Mint"


async def test_bearer_success_is_the_later_urc(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    await modem.configure_apn("internet")
    address = await modem.bearer_up()

    assert address == "10.23.156.36"
    assert peer.commands[-5:] == [
        "AT+CSOCKSETPN=1",
        "AT+NETOPEN?",
        "AT+CIPMODE=0",
        "AT+NETOPEN",
        "AT+IPADDR",
    ]


async def test_bearer_failure_in_the_later_urc(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    peer.on("AT+NETOPEN", peer.then(OK, 0.02, b"\r\n+NETOPEN: 1\r\n"))

    with pytest.raises(BearerError) as failed:
        await modem.bearer_up()

    assert failed.value.code == 1


async def test_bare_error_to_netopen_is_a_bearer_error(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    peer.on("AT+NETOPEN", b"\r\nERROR\r\n")

    with pytest.raises(BearerError, match="ERROR"):
        await modem.bearer_up()


async def test_network_already_open_counts_as_up(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    already = b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n"
    peer.on("AT+NETOPEN", already)

    assert await modem.bearer_up() == "10.23.156.36"


async def test_bearer_down_tolerates_a_closed_network(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    peer.on("AT+NETCLOSE", b"\r\n+NETCLOSE: 2\r\n\r\nERROR\r\n")

    await modem.bearer_down()


async def test_open_refused_at_once_carries_the_module_code(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    refused = b"\r\n+CIPOPEN: 1,3\r\n\r\nERROR\r\n"
    peer.on('AT+CIPOPEN=1,"TCP","127.0.0.1",8888', refused)
    first = await modem.open_socket("127.0.0.1", 8888)

    with pytest.raises(SocketError) as failed:
        await modem.open_socket("127.0.0.1", 8888)

    assert failed.value.code == 3
    assert first.link == 0
    assert modem.free_link() == 1


async def test_open_failing_later_carries_the_module_code(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    later = peer.then(OK, 0.02, b"\r\n+CIPOPEN: 0,10\r\n")
    peer.on('AT+CIPOPEN=0,"TCP","127.0.0.1",8888', later)

    with pytest.raises(SocketError) as failed:
        await modem.open_socket("127.0.0.1", 8888)

    assert failed.value.code == 10


async def test_host_with_a_quote_is_refused_before_sending(modem: Sim7600) -> None:
    with pytest.raises(ValueError, match="host"):
        await modem.open_socket('evil",80\rAT+CRESET', 80)


async def test_send_is_split_at_the_module_limit(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    peer.on(r"AT\+CIPSEND=0,\d+", b"\r\n>", regex=True)
    peer.after_payload(r"AT\+CIPSEND=0,\d+", send_result, regex=True)
    socket = await modem.open_socket("127.0.0.1", 8888)
    data = bytes(range(256)) * 16

    await socket.write(data)

    sends = [c for c in peer.commands if c.startswith("AT+CIPSEND")]
    assert sends == ["AT+CIPSEND=0,1500", "AT+CIPSEND=0,1500", "AT+CIPSEND=0,1096"]
    assert b"".join(peer.payloads) == data


def send_result(command: str) -> bytes:
    length = command.rpartition(",")[2]
    return b"\r\nOK\r\n\r\n+CIPSEND: 0,%s,%s\r\n" % (length.encode(), length.encode())


async def test_send_refused_after_the_command(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    peer.on("AT+CIPSEND=0,4", b"\r\n+CIPERROR: 4\r\n\r\nERROR\r\n")
    socket = await modem.open_socket("127.0.0.1", 8888)

    with pytest.raises(SocketError, match="CIPERROR: 4"):
        await socket.write(b"ping")
    assert peer.payloads == []


async def test_send_on_a_broken_link_reports_the_confirmed_count(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    peer.on("AT+CIPSEND=0,4", b"\r\n>")
    peer.after_payload("AT+CIPSEND=0,4", b"\r\nOK\r\n\r\n+CIPSEND: 0,4,-1\r\n")
    socket = await modem.open_socket("127.0.0.1", 8888)

    with pytest.raises(SocketError) as failed:
        await socket.write(b"ping")

    assert failed.value.code == -1


async def test_receive_drains_the_buffer_and_keeps_protocol_bytes_as_data(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    first, second = b"hello\r\nOK\r\n", b"> ERROR\r\n+CIPRXGET: 1,0\r\n"
    peer.on(
        "AT+CIPRXGET=2,0,1500",
        read_answer(first, rest=len(second)),
        read_answer(second, rest=0),
        read_answer(b"", rest=0),
    )
    socket = await modem.open_socket("127.0.0.1", 8888)

    peer.push(b"\r\n+CIPRXGET: 1,0\r\n")
    data = await asyncio.wait_for(socket.read(), 5)

    assert data == first + second
    reads = [c for c in peer.commands if c.startswith("AT+CIPRXGET=2")]
    assert len(reads) == 3


def read_answer(data: bytes, rest: int) -> bytes:
    header = b"\r\n+CIPRXGET: 2,0,%d,%d\r\n" % (len(data), rest)
    return header + data + b"\r\n" + OK


async def test_peer_close_is_an_event_and_the_end_of_the_stream(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    events = events_of(modem)
    socket = await modem.open_socket("127.0.0.1", 8888)

    peer.push(b"\r\n+IPCLOSE: 0,1\r\n")

    assert await asyncio.wait_for(socket.read(), 5) == b""
    assert events == [ModemEvent(EventKind.SOCKET_CLOSED, "+IPCLOSE: 0,1", 0)]
    with pytest.raises(SocketError):
        await socket.write(b"late")
    await socket.close()
    assert "AT+CIPCLOSE=0" not in peer.commands


async def test_network_loss_is_a_bearer_event_and_ends_every_socket(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    events = events_of(modem)
    socket = await modem.open_socket("127.0.0.1", 8888)

    peer.push(b"\r\n+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\n")

    assert await asyncio.wait_for(socket.read(), 5) == b""
    assert [e.kind for e in events] == [EventKind.BEARER_LOST]


async def test_packet_domain_deactivation_is_a_bearer_event(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    events = events_of(modem)

    peer.push(b"\r\n+CGEV: NW PDN DEACT 1\r\n")
    peer.push(b"\r\n+CGREG: 2\r\n")
    await peer.drained()
    await modem.signal()

    kinds = [e.kind for e in events]
    assert kinds == [EventKind.BEARER_LOST, EventKind.REGISTRATION_CHANGED]


async def test_close_waits_for_the_module_result(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    socket = await modem.open_socket("127.0.0.1", 8888)

    await socket.close()
    await socket.close()

    assert peer.commands.count("AT+CIPCLOSE=0") == 1
    assert await socket.read() == b""


async def test_pushed_data_reaches_the_socket(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    socket = await modem.open_socket("127.0.0.1", 8888)

    peer.push(b"\r\nRECV FROM:127.0.0.1:8888\r\n+IPD6\r\nOK\r\n>!\r\n")
    first = await asyncio.wait_for(socket.read(), 5)
    peer.push(b"\r\n+RECEIVE,0,3\r\nabc\r\n")
    second = await asyncio.wait_for(socket.read(), 5)

    assert (first, second) == (b"OK\r\n>!", b"abc")


async def test_reboot_is_an_event_and_echo_goes_off_again(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    events = events_of(modem)

    peer.push(b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n")
    await peer.wait_for(lambda commands: "ATE0" in commands)

    kinds = [e.kind for e in events]
    assert kinds == [EventKind.REBOOTED, EventKind.SIM_CHANGED]


async def test_timeout_names_the_command(peer: ScriptedPeer) -> None:
    peer.on("AT+CSQ", b"")
    modem = Sim7600(await ATChannel.open(peer.path), timeouts={"signal": 0.2})
    try:
        with pytest.raises(ModemTimeout, match=re.escape("'AT+CSQ'")):
            await modem.signal()
    finally:
        await modem.close()


async def test_port_vanishing_ends_a_waiting_read_and_every_later_call(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    socket = await modem.open_socket("127.0.0.1", 8888)
    reading = asyncio.create_task(socket.read())
    await asyncio.sleep(0.01)

    peer.vanish()

    with pytest.raises(PortVanished):
        await asyncio.wait_for(reading, 5)
    with pytest.raises(PortVanished):
        await modem.signal()
    with pytest.raises(PortVanished):
        await socket.write(b"x")


async def test_results_printed_before_ok_are_understood(
    peer: ScriptedPeer, modem: Sim7600
) -> None:
    peer.on("AT+NETOPEN", b"\r\n+NETOPEN: 0\r\n" + OK)
    peer.on("AT+CIPSEND=0,4", b"\r\n>")
    peer.after_payload("AT+CIPSEND=0,4", b"\r\n+CIPSEND: 0,4,4\r\n" + OK)
    peer.on("AT+CIPCLOSE=0", b"\r\n+CIPCLOSE: 0,0\r\n" + OK)

    await modem.bearer_up()
    socket = await modem.open_socket("127.0.0.1", 8888)
    await socket.write(b"ping")
    await socket.close()

    assert peer.payloads == [b"ping"]
