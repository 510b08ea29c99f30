"""The simulated EC20 over its pseudo-terminal, checked byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import serial
from simulator_client import EchoServer, RawClient

from modembridge.simulator import SimConfig, SimulatedModem


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedModem]:
    modem = SimulatedModem(SimConfig(model="ec20"))
    await modem.start()
    yield modem
    await modem.stop()


@pytest.fixture
async def client(sim: SimulatedModem) -> AsyncIterator[RawClient]:
    raw = RawClient(sim.path)
    await raw.command("AT")  # past the boot URCs
    yield raw
    raw.close()


@pytest.fixture
async def server() -> AsyncIterator[EchoServer]:
    peer = EchoServer()
    await peer.start()
    yield peer
    await peer.stop()


async def bring_up(client: RawClient) -> None:
    """Echo off, context defined and active."""
    await client.command("ATE0")
    assert await client.command('AT+QICSGP=1,1,"internet","","",1') == b"\r\nOK\r\n"
    assert await client.command("AT+QIACT=1") == b"\r\nOK\r\n"


async def open_socket(
    client: RawClient, server: EchoServer, connect_id: int = 0, mode: int = 0
) -> None:
    line = f'AT+QIOPEN=1,{connect_id},"TCP","127.0.0.1",{server.port},0,{mode}'
    reply = await client.command(line, b"+QIOPEN: %d,0\r\n" % connect_id)
    assert reply == b"\r\nOK\r\n\r\n+QIOPEN: %d,0\r\n" % connect_id


async def counters_reach(client: RawClient, expected: bytes) -> bool:
    """Poll ``AT+QIRD=0,0`` until it answers ``expected`` (the bytes arrived)."""
    for _ in range(200):
        if await client.command("AT+QIRD=0,0") == expected:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_boot_urcs_then_echoed_commands() -> None:
    sim = SimulatedModem(SimConfig(model="ec20", boot_time=0.2))
    await sim.start()
    client = RawClient(sim.path)
    try:
        boot = await client.read_until(b"+QIND: PB DONE\r\n")
        assert boot == (
            b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n"
            b"\r\n+QIND: SMS DONE\r\n\r\n+QIND: PB DONE\r\n"
        )
        assert await client.command("AT") == b"AT\r\r\nOK\r\n"
        assert (
            await client.command("AT+CSQ") == b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
        )
        assert await client.command("ATE0") == b"ATE0\r\r\nOK\r\n"
    finally:
        client.close()
        await sim.stop()


async def test_identity_shapes(client: RawClient) -> None:
    await client.command("ATE0")
    expected = {
        "ATI": b"\r\nQuectel\r\nEC20F\r\nRevision: EC20CEFDR02A09M4G\r\n\r\nOK\r\n",
        "AT+CGMI": b"\r\nQuectel\r\n\r\nOK\r\n",
        "AT+CGMM": b"\r\nEC20F\r\n\r\nOK\r\n",
        "AT+CGMR": b"\r\nEC20CEFDR02A09M4G\r\n\r\nOK\r\n",
        "AT+GSN": b"\r\n867698041234567\r\n\r\nOK\r\n",
        "AT+QCCID": b"\r\n+QCCID: 89882280000012345678\r\n\r\nOK\r\n",
        'AT+QURCCFG="urcport","usbat"': b"\r\nOK\r\n",
        'AT+QURCCFG="urcport"': b'\r\n+QURCCFG: "urcport","usbat"\r\n\r\nOK\r\n',
        "AT+QIACT?": b"\r\nOK\r\n",
        "AT+QISTATE?": b"\r\nOK\r\n",
    }
    for line, reply in expected.items():
        assert await client.command(line) == reply, line


async def test_compound_line_has_one_final_result(client: RawClient) -> None:
    reply = await client.command("ATI;+CSUB;+CSQ;+CPIN?;+COPS?;+CGREG?;&D2")
    assert reply == (
        b"ATI;+CSUB;+CSQ;+CPIN?;+COPS?;+CGREG?;&D2\r"
        b"\r\nQuectel\r\nEC20F\r\nRevision: EC20CEFDR02A09M4G\r\n"
        b"\r\nSubEdition: V04\r\n\r\n+CSQ: 20,99\r\n\r\n+CPIN: READY\r\n"
        b'\r\n+COPS: 0,0,"Simulated",7\r\n\r\n+CGREG: 0,1\r\n\r\nOK\r\n'
    )


async def test_bearer_activation_and_query(client: RawClient) -> None:
    await bring_up(client)
    assert await client.command("AT+QIACT?") == (
        b'\r\n+QIACT: 1,1,1,"10.23.156.36"\r\n\r\nOK\r\n'
    )
    assert await client.command("AT+QIACT=1", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert await client.command("AT+QIDEACT=1") == b"\r\nOK\r\n"
    assert await client.command("AT+QIACT?") == b"\r\nOK\r\n"


async def test_buffer_mode_both_ways(client: RawClient, server: EchoServer) -> None:
    await bring_up(client)
    await open_socket(client, server)
    reader, writer = await server.peer()

    payload = b"OK\r\n> SEND OK\r\n"
    assert await client.command(f"AT+QISEND=0,{len(payload)}", b"> ") == b"\r\n> "
    client.write(payload)
    assert await client.read_until(b"SEND OK\r\n") == b"\r\nSEND OK\r\n"
    assert await reader.readexactly(len(payload)) == payload
    assert await client.command("AT+QISEND=0,0") == (
        f"\r\n+QISEND: {len(payload)},{len(payload)},0\r\n\r\nOK\r\n".encode()
    )

    writer.write(b"+QIRD: 9\r\nOK")
    await writer.drain()
    assert await client.read_until(b'"recv",0\r\n') == b'\r\n+QIURC: "recv",0\r\n'
    writer.write(b"!")
    await writer.drain()
    assert await counters_reach(client, b"\r\n+QIRD: 13,0,13\r\n\r\nOK\r\n")
    assert await client.command("AT+QIRD=0,4") == b"\r\n+QIRD: 4\r\n+QIR\r\n\r\nOK\r\n"
    assert await client.command("AT+QIRD=0,1500") == (
        b"\r\n+QIRD: 9\r\nD: 9\r\nOK!\r\n\r\nOK\r\n"
    )
    # Drained but not yet read to zero: new data gets no URC.
    writer.write(b"x")
    await writer.drain()
    assert await counters_reach(client, b"\r\n+QIRD: 14,13,1\r\n\r\nOK\r\n")
    assert await client.command("AT+QIRD=0") == b"\r\n+QIRD: 1\r\nx\r\n\r\nOK\r\n"
    assert await client.command("AT+QIRD=0") == b"\r\n+QIRD: 0\r\n\r\nOK\r\n"
    writer.write(b"y")
    await writer.drain()
    assert await client.read_until(b'"recv",0\r\n') == b'\r\n+QIURC: "recv",0\r\n'
    assert await client.read_quiet(0.05) == b""


async def test_push_mode(client: RawClient, server: EchoServer) -> None:
    await bring_up(client)
    await open_socket(client, server, connect_id=3, mode=1)
    _reader, writer = await server.peer()
    writer.write(b"te\r\n")
    await writer.drain()
    assert await client.read_until(b'"recv",3,4\r\n') == b'\r\n+QIURC: "recv",3,4\r\n'
    assert await client.read_exactly(6) == b"te\r\n\r\n"
    assert await client.command("AT+QIRD=3,100", b"ERROR\r\n") == b"\r\nERROR\r\n"


async def test_far_end_close_keeps_the_id_until_qiclose(
    client: RawClient, server: EchoServer
) -> None:
    await bring_up(client)
    await open_socket(client, server)
    _reader, writer = await server.peer()
    writer.close()
    assert await client.read_until(b'"closed",0\r\n') == b'\r\n+QIURC: "closed",0\r\n'
    state = await client.command("AT+QISTATE=1,0")
    assert state.startswith(b'\r\n+QISTATE: 0,"TCP","127.0.0.1",')
    assert state.endswith(b',4,1,0,0,"usbat"\r\n\r\nOK\r\n')
    line = f'AT+QIOPEN=1,0,"TCP","127.0.0.1",{server.port},0,0'
    assert await client.command(line, b"+QIOPEN: 0,563\r\n") == (
        b"\r\nOK\r\n\r\n+QIOPEN: 0,563\r\n"
    )
    assert await client.command("AT+QIGETERROR") == (
        b"\r\n+QIGETERROR: 563,socket identity has been used\r\n\r\nOK\r\n"
    )
    assert await client.command("AT+QISEND=0,1", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert await client.command("AT+QICLOSE=0") == b"\r\nOK\r\n"
    assert await client.command("AT+QISTATE=1,0") == b"\r\nOK\r\n"
    assert await client.command("AT+QIRD=0,0", b"ERROR\r\n") == b"\r\nERROR\r\n"
    await open_socket(client, server)


async def test_refused_unresolvable_and_inactive_context(
    client: RawClient, server: EchoServer
) -> None:
    await client.command("ATE0")
    line = f'AT+QIOPEN=1,0,"TCP","127.0.0.1",{server.port},0,0'
    assert await client.command(line, b"+QIOPEN: 0,561\r\n") == (
        b"\r\nOK\r\n\r\n+QIOPEN: 0,561\r\n"
    )
    await client.command("AT+QIACT=1")
    closed_port = server.port
    await server.stop()
    line = f'AT+QIOPEN=1,0,"TCP","127.0.0.1",{closed_port},0,0'
    assert await client.command(line, b"+QIOPEN: 0,566\r\n") == (
        b"\r\nOK\r\n\r\n+QIOPEN: 0,566\r\n"
    )
    line = 'AT+QIOPEN=1,1,"TCP","nx.invalid",80,0,0'
    assert await client.command(line, b"+QIOPEN: 1,565\r\n") == (
        b"\r\nOK\r\n\r\n+QIOPEN: 1,565\r\n"
    )
    assert await client.command("AT+QIGETERROR") == (
        b"\r\n+QIGETERROR: 565,DNS parse failed\r\n\r\nOK\r\n"
    )
    assert await client.command("AT+QISTATE?") == b"\r\nOK\r\n"


async def test_every_socket_up_to_the_count(
    client: RawClient, server: EchoServer
) -> None:
    await bring_up(client)
    for connect_id in range(12):
        await open_socket(client, server, connect_id)
    listing = await client.command("AT+QISTATE?")
    assert listing.count(b"+QISTATE: ") == 12
    line = f'AT+QIOPEN=1,12,"TCP","127.0.0.1",{server.port},0,0'
    assert await client.command(line, b"ERROR\r\n") == b"\r\nERROR\r\n"
    for index in range(12):
        _reader, writer = await server.peer(index)
        writer.write(b"%d" % index)
        await writer.drain()
    announced = set()
    for _ in range(12):
        await client.read_until(b'+QIURC: "recv",')
        announced.add(int(await client.read_until(b"\r\n")))
    assert announced == set(range(12))
    for connect_id in range(12):
        reply = await client.command(f"AT+QIRD={connect_id},10")
        assert reply == b"\r\n+QIRD: %d\r\n%d\r\n\r\nOK\r\n" % (
            len(str(connect_id)),
            connect_id,
        )


async def test_send_limit(client: RawClient, server: EchoServer) -> None:
    await bring_up(client)
    await open_socket(client, server)
    assert await client.command("AT+QISEND=0,1461", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert await client.command("AT+QISEND=0,1460", b"> ") == b"\r\n> "
    client.write(b"\xff" * 1460)
    assert await client.read_until(b"SEND OK\r\n") == b"\r\nSEND OK\r\n"


async def test_name_resolution(client: RawClient) -> None:
    await bring_up(client)
    reply = await client.command('AT+QIDNSGIP=1,"localhost"', b'"127.0.0.1"\r\n')
    assert reply == (
        b'\r\nOK\r\n\r\n+QIURC: "dnsgip",0,1,600\r\n'
        b'\r\n+QIURC: "dnsgip","127.0.0.1"\r\n'
    )


async def test_power_down_removes_the_port(
    sim: SimulatedModem, client: RawClient
) -> None:
    reply = await client.command("AT+QPOWD=1", b"POWERED DOWN\r\n")
    assert reply == b"AT+QPOWD=1\r\r\nOK\r\n\r\nPOWERED DOWN\r\n"

    # Reading the port fails once its device is gone (its name may be reused).
    with pytest.raises(serial.SerialException):
        await client.read_until_vanished()


async def test_bulk_receive_through_a_full_buffer(
    client: RawClient, server: EchoServer
) -> None:
    await bring_up(client)
    await open_socket(client, server)
    _reader, writer = await server.peer()
    data = bytes(range(256)) * 800
    writer.write(data)
    await client.read_until(b'+QIURC: "recv",0\r\n')

    received = bytearray()
    while len(received) < len(data):
        client.write(b"AT+QIRD=0,1500\r")
        header = await client.read_until(b"\r\n", seconds=5)
        header += await client.read_until(b"\r\n", seconds=5)
        size = int(header.split(b": ")[1])
        if size == 0:  # the network is slower than the reads
            assert await client.read_exactly(6) == b"\r\nOK\r\n"
            await asyncio.sleep(0.01)
            continue
        received += await client.read_exactly(size)
        assert await client.read_exactly(8) == b"\r\n\r\nOK\r\n"
    await writer.drain()
    assert received == data
