"""The EC20 dialect against a scripted EC25 on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from scriptedpeer import OK, ScriptedPeer, script_ec20

from modembridge.channel import ATChannel
from modembridge.ec20 import Ec20
from modembridge.errors import BearerError, PortVanished, SocketError
from modembridge.modem import EventKind, ModemEvent, SimState


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    peer = ScriptedPeer()
    script_ec20(peer)
    yield peer
    await peer.close()


@pytest.fixture
async def modem(peer: ScriptedPeer) -> AsyncIterator[Ec20]:
    modem = Ec20(await ATChannel.open(peer.path))
    yield modem
    await modem.close()


def events_of(modem: Ec20) -> list[ModemEvent]:
    events: list[ModemEvent] = []
    modem.subscribe(events.append)
    return events


async def test_identity_uses_qccid(modem: Ec20) -> None:
    identity = await modem.identify()

    assert (identity.manufacturer, identity.model) == ("Quectel", "EC25")
    assert identity.firmware == "EC25EFAR06A06M4G"
    assert identity.iccid == "89860318760221345678"


async def test_transient_not_inserted_then_busy_then_ready(
    peer: ScriptedPeer, modem: Ec20
) -> None:
    peer.on(
        "AT+CPIN?",
        b"\r\n+CME ERROR: 10\r\n",
        b"\r\n+CME ERROR: 14\r\n",
        b"\r\n+CPIN: READY\r\n" + OK,
    )

    states = [await modem.sim_state() for _ in range(3)]

    assert states == [SimState.ABSENT, SimState.BUSY, SimState.READY]


async def test_bearer_up_activates_then_reads_the_address(
    peer: ScriptedPeer, modem: Ec20
) -> None:
    await modem.configure_apn("internet")
    address = await modem.bearer_up()

    assert address == "10.1.2.3"
    assert peer.commands[-4:] == [
        'AT+QICSGP=1,1,"internet","","",0',
        "AT+QIACT?",
        "AT+QIACT=1",
        "AT+QIACT?",
    ]


async def test_apn_credentials_ask_for_pap_or_chap(
    peer: ScriptedPeer, modem: Ec20
) -> None:
    peer.on('AT+QICSGP=1,1,"internet","sora","sora",3', OK)

    await modem.configure_apn("internet", "sora", "sora")

    assert peer.commands[-1] == 'AT+QICSGP=1,1,"internet","sora","sora",3'


async def test_bearer_error_carries_the_qigeterror_code(
    peer: ScriptedPeer, modem: Ec20
) -> None:
    peer.on("AT+QIACT=1", b"\r\nERROR\r\n")
    peer.on("AT+QIGETERROR", b"\r\n+QIGETERROR: 561,open PDP context failed\r\n" + OK)

    with pytest.raises(BearerError, match="open PDP context failed") as failed:
        await modem.bearer_up()

    assert failed.value.code == 561


async def test_open_failure_releases_the_socket_number(
    peer: ScriptedPeer, modem: Ec20
) -> None:
    failing = peer.then(OK, 0.02, b"\r\n+QIOPEN: 0,565\r\n")
    peer.on('AT+QIOPEN=1,0,"TCP","127.0.0.1",8888,0,0', failing)

    with pytest.raises(SocketError) as failed:
        await modem.open_socket("127.0.0.1", 8888)

    assert failed.value.code == 565
    assert peer.commands[-1] == "AT+QICLOSE=0"


async def test_send_uses_the_spaced_prompt_and_splits_at_1460(
    peer: ScriptedPeer, modem: Ec20
) -> None:
    peer.on(r"AT\+QISEND=0,\d+", b"\r\n> ", regex=True)
    peer.after_payload(r"AT\+QISEND=0,\d+", b"\r\nSEND OK\r\n", regex=True)
    socket = await modem.open_socket("127.0.0.1", 8888)
    data = b"> OK\r\n" * 500

    await socket.write(data)

    sends = [c for c in peer.commands if c.startswith("AT+QISEND")]
    assert sends == ["AT+QISEND=0,1460", "AT+QISEND=0,1460", "AT+QISEND=0,80"]
    assert b"".join(peer.payloads) == data


async def test_send_fail_is_a_socket_error(peer: ScriptedPeer, modem: Ec20) -> None:
    peer.on("AT+QISEND=0,4", b"\r\n> ")
    peer.after_payload("AT+QISEND=0,4", b"\r\nSEND FAIL\r\n")
    socket = await modem.open_socket("127.0.0.1", 8888)

    with pytest.raises(SocketError, match="SEND FAIL"):
        await socket.write(b"ping")


async def test_receive_reads_until_qird_zero(peer: ScriptedPeer, modem: Ec20) -> None:
    data = b'\r\nOK\r\n+QIURC: "closed",0\r\n'
    peer.on(
        "AT+QIRD=0,1500",
        b"\r\n+QIRD: %d\r\n" % len(data) + data + b"\r\n" + OK,
        b"\r\n+QIRD: 0\r\n" + OK,
    )
    socket = await modem.open_socket("127.0.0.1", 8888)

    peer.push(b'\r\n+QIURC: "recv",0\r\n')

    assert await asyncio.wait_for(socket.read(), 5) == data
    assert peer.commands.count("AT+QIRD=0,1500") == 2


async def test_pushed_data_reaches_the_socket(peer: ScriptedPeer, modem: Ec20) -> None:
    socket = await modem.open_socket("127.0.0.1", 8888)

    peer.push(b'\r\n+QIURC: "recv",0,4\r\ntest\r\n')

    assert await asyncio.wait_for(socket.read(), 5) == b"test"


async def test_closed_by_peer_is_an_event_and_the_host_releases_the_socket(
    peer: ScriptedPeer, modem: Ec20
) -> None:
    events = events_of(modem)
    socket = await modem.open_socket("127.0.0.1", 8888)

    peer.push(b'\r\n+QIURC: "closed",0\r\n')

    assert await asyncio.wait_for(socket.read(), 5) == b""
    assert events == [ModemEvent(EventKind.SOCKET_CLOSED, '+QIURC: "closed",0', 0)]
    assert peer.commands[-1] == "AT+QICLOSE=0"
    await socket.close()
    assert peer.commands.count("AT+QICLOSE=0") == 1


async def test_pdp_deactivation_is_a_bearer_event(
    peer: ScriptedPeer, modem: Ec20
) -> None:
    events = events_of(modem)
    socket = await modem.open_socket("127.0.0.1", 8888)

    peer.push(b'\r\n+QIURC: "pdpdeact",1\r\n')

    assert await asyncio.wait_for(socket.read(), 5) == b""
    assert [e.kind for e in events] == [EventKind.BEARER_LOST]


@pytest.mark.parametrize(
    "urc",
    [
        b"+CGEV: NW PDN DEACT 1",
        b"+CGEV: ME PDN DEACT 1",
        b'+CGEV: NW DEACT "IP","10.64.1.7",1',
        b"+CGEV: NW DETACH",
    ],
)
async def test_packet_domain_deactivation_is_a_bearer_event(
    peer: ScriptedPeer, modem: Ec20, urc: bytes
) -> None:
    events = events_of(modem)
    socket = await modem.open_socket("127.0.0.1", 8888)

    peer.push(b"\r\n" + urc + b"\r\n")

    assert await asyncio.wait_for(socket.read(), 5) == b""
    assert events == [ModemEvent(EventKind.BEARER_LOST, urc.decode())]


async def test_another_context_going_down_leaves_the_bearer(
    peer: ScriptedPeer, modem: Ec20
) -> None:
    events = events_of(modem)
    await modem.open_socket("127.0.0.1", 8888)

    peer.push(b'\r\n+QIURC: "pdpdeact",2\r\n')
    peer.push(b"\r\n+CGEV: NW PDN DEACT 2\r\n")
    peer.push(b"\r\n+CGEV: NW DEACT 1,2,0\r\n")
    peer.push(b"\r\n+CGREG: 1\r\n")
    await peer.drained()
    await modem.signal()

    assert [e.kind for e in events] == [EventKind.REGISTRATION_CHANGED]


async def test_brownout_reboot_mid_command(peer: ScriptedPeer, modem: Ec20) -> None:
    boot = b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n"
    peer.on("AT+CGREG?", boot + b"AT+CGREG?\r\r\n+CGREG: 0,1\r\n" + OK)
    events = events_of(modem)

    registration = await modem.registration()
    await peer.wait_for(lambda commands: commands.count("ATE0") == 1)

    assert registration.registered
    assert [e.kind for e in events] == [EventKind.REBOOTED, EventKind.SIM_CHANGED]


async def test_port_vanishing_fails_a_send(peer: ScriptedPeer, modem: Ec20) -> None:
    peer.on("AT+QISEND=0,4", b"")
    socket = await modem.open_socket("127.0.0.1", 8888)
    sending = asyncio.create_task(socket.write(b"ping"))
    await peer.wait_for(lambda commands: "AT+QISEND=0,4" in commands)

    peer.vanish()

    with pytest.raises(PortVanished):
        await asyncio.wait_for(sending, 5)


async def test_bearer_down_of_an_inactive_context_is_no_error(
    peer: ScriptedPeer, modem: Ec20
) -> None:
    peer.on("AT+QIDEACT=1", b"\r\nERROR\r\n")
    peer.on("AT+QIACT?", OK)

    await modem.bearer_down()

    assert peer.commands == ["AT+QIDEACT=1", "AT+QIACT?"]
