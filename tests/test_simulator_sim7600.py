"""The simulated SIM7600 over its pseudo-terminal, checked byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from simulator_client import EchoServer, RawClient

from modembridge.simulator import SimConfig, SimulatedModem


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedModem]:
    modem = SimulatedModem(SimConfig(model="sim7600"))
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
    """Echo off, manual receive, network open: the usual driver preamble."""
    await client.command("ATE0")
    await client.command("AT+CIPRXGET=1")
    assert await client.command("AT+NETOPEN", b"+NETOPEN: 0\r\n") == (
        b"\r\nOK\r\n\r\n+NETOPEN: 0\r\n"
    )


async def open_link(client: RawClient, server: EchoServer, link: int = 0) -> None:
    reply = await client.command(
        f'AT+CIPOPEN={link},"TCP","127.0.0.1",{server.port}', b",0\r\n"
    )
    assert reply == f"\r\nOK\r\n\r\n+CIPOPEN: {link},0\r\n".encode()


async def test_boot_urcs_then_echoed_commands() -> None:
    sim = SimulatedModem(SimConfig(model="sim7600", boot_time=0.2))
    await sim.start()
    client = RawClient(sim.path)
    try:
        boot = await client.read_until(b"PB DONE\r\n")
        assert boot == b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n\r\nPB DONE\r\n"
        assert await client.command("AT") == b"AT\r\r\nOK\r\n"
        assert await client.command("ATE0") == b"ATE0\r\r\nOK\r\n"
        assert await client.command("AT") == b"\r\nOK\r\n"
    finally:
        client.close()
        await sim.stop()


async def test_identity_and_registration_shapes(client: RawClient) -> None:
    await client.command("ATE0")
    expected = {
        "AT+CGMI": b"\r\nSIMCOM INCORPORATED\r\n\r\nOK\r\n",
        "AT+CGMM": b"\r\nSIMCOM_SIM7600G-H\r\n\r\nOK\r\n",
        "AT+CGMR": b"\r\n+CGMR: LE20B04SIM7600M22\r\n\r\nOK\r\n",
        "AT+CGSN": b"\r\n868822040061788\r\n\r\nOK\r\n",
        "AT+CICCID": b"\r\n+ICCID: 89882280000012345678\r\n\r\nOK\r\n",
        "AT+CIMI": b"\r\n001010123456789\r\n\r\nOK\r\n",
        "AT+CPIN?": b"\r\n+CPIN: READY\r\n\r\nOK\r\n",
        "AT+CSQ": b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n",
        "AT+CREG?": b"\r\n+CREG: 0,1\r\n\r\nOK\r\n",
        "AT+CGREG?": b"\r\n+CGREG: 0,1\r\n\r\nOK\r\n",
        "AT+CEREG?": b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n",
        "AT+COPS?": b'\r\n+COPS: 0,0,"Simulated",7\r\n\r\nOK\r\n',
        "AT+CGATT?": b"\r\n+CGATT: 1\r\n\r\nOK\r\n",
        'AT+CGDCONT=1,"IP","internet"': b"\r\nOK\r\n",
        "AT+CFUN?": b"\r\n+CFUN: 1\r\n\r\nOK\r\n",
        "AT+CMEE=2": b"\r\nOK\r\n",
        "AT+NETOPEN?": b"\r\n+NETOPEN: 0\r\n\r\nOK\r\n",
    }
    for line, reply in expected.items():
        assert await client.command(line) == reply, line
    ati = await client.command("ATI")
    assert ati.startswith(b"\r\nManufacturer: SIMCOM INCORPORATED\r\nModel: ")
    assert ati.endswith(b"\r\n+GCAP: +CGSM\r\n\r\nOK\r\n")
    contexts = await client.command("AT+CGDCONT?")
    assert contexts.startswith(b'\r\n+CGDCONT: 1,"IP","internet","0.0.0.0",0,0,0,0\r\n')


async def test_unknown_command_is_error_with_echo(client: RawClient) -> None:
    reply = await client.command("AT+MODE=2", b"ERROR\r\n")
    assert reply == b"AT+MODE=2\r\r\nERROR\r\n"
    assert await client.command("hello", b"ERROR\r\n") == b"hello\r\r\nERROR\r\n"


async def test_configuration_commands_are_accepted(client: RawClient) -> None:
    await client.command("ATE0")
    for line in (
        "AT+CIPMODE=0",
        "AT+CSOCKSETPN=1",
        'AT+CGSOCKCONT=1,"IP","internet"',
        "AT+CIPCCFG=10,0,0,0,0,0,75000",
        "AT+CIPTIMEOUT=75000,15000,15000",
        "AT+CIPSENDMODE=0",
        "AT+CIPHEAD=1",
        "AT+CIPSRIP=1",
        "AT+CIPRXGET=1",
        "AT+CREG=0",
    ):
        assert await client.command(line) == b"\r\nOK\r\n", line
    assert await client.command("AT+CIPMODE=1", b"ERROR\r\n") == b"\r\nERROR\r\n"


async def test_network_open_close_and_address(client: RawClient) -> None:
    await bring_up(client)
    assert await client.command("AT+NETOPEN?") == b"\r\n+NETOPEN: 1\r\n\r\nOK\r\n"
    assert await client.command("AT+NETOPEN", b"ERROR\r\n") == (
        b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n"
    )
    assert (
        await client.command("AT+IPADDR") == b"\r\n+IPADDR: 10.23.156.36\r\n\r\nOK\r\n"
    )
    assert await client.command("AT+NETCLOSE", b"+NETCLOSE: 0\r\n") == (
        b"\r\nOK\r\n\r\n+NETCLOSE: 0\r\n"
    )
    assert await client.command("AT+NETCLOSE", b"ERROR\r\n") == (
        b"\r\n+NETCLOSE: 2\r\n\r\nERROR\r\n"
    )


async def test_data_both_ways_in_manual_mode(
    client: RawClient, server: EchoServer, sim: SimulatedModem
) -> None:
    await bring_up(client)
    await open_link(client, server)
    reader, writer = await server.peer()

    payload = b"AT\r\nOK\r\n> ERROR\r\n"
    assert await client.command(f"AT+CIPSEND=0,{len(payload)}", b">") == b"\r\n>"
    client.write(payload)
    sent = f"\r\nOK\r\n\r\n+CIPSEND: 0,{len(payload)},{len(payload)}\r\n".encode()
    assert await client.read_exactly(len(sent)) == sent
    assert await reader.readexactly(len(payload)) == payload

    incoming = b"\r\nOK\r\n>+CIPRXGET: 1,0"
    writer.write(incoming)
    await writer.drain()
    assert await client.read_until(b"\r\n+CIPRXGET: 1,0\r\n") == (
        b"\r\n+CIPRXGET: 1,0\r\n"
    )
    assert await client.command("AT+CIPRXGET=4,0") == (
        f"\r\n+CIPRXGET: 4,0,{len(incoming)}\r\n\r\nOK\r\n".encode()
    )
    client.write(b"AT+CIPRXGET=2,0,10\r")
    rest = len(incoming) - 10
    header = f"\r\n+CIPRXGET: 2,0,10,{rest}\r\n".encode()
    assert await client.read_exactly(len(header)) == header
    assert await client.read_exactly(10) == incoming[:10]
    assert await client.read_exactly(8) == b"\r\n\r\nOK\r\n"
    client.write(b"AT+CIPRXGET=2,0,1500\r")
    header = f"\r\n+CIPRXGET: 2,0,{rest},0\r\n".encode()
    assert await client.read_exactly(len(header)) == header
    assert await client.read_exactly(rest) == incoming[10:]
    assert await client.read_exactly(8) == b"\r\n\r\nOK\r\n"
    assert await client.command("AT+CIPRXGET=2,0,10", b"ERROR\r\n") == (
        b"\r\n+IP ERROR: No data\r\n\r\nERROR\r\n"
    )
    assert sim.violations == []


async def test_push_mode_prints_address_and_length(
    client: RawClient, server: EchoServer
) -> None:
    await client.command("ATE0")
    await client.command("AT+NETOPEN", b"+NETOPEN: 0\r\n")
    await open_link(client, server)
    _reader, writer = await server.peer()
    writer.write(b"OK\r\n>")
    await writer.drain()
    head = await client.read_until(b"+IPD5\r\n")
    assert head.startswith(b"\r\nRECV FROM:127.0.0.1:")
    assert head.endswith(f":{server.port}\r\n+IPD5\r\n".encode())
    assert await client.read_exactly(7) == b"OK\r\n>\r\n"


async def test_far_end_close_is_reported_and_data_stays_readable(
    client: RawClient, server: EchoServer
) -> None:
    await bring_up(client)
    await open_link(client, server)
    _reader, writer = await server.peer()
    writer.write(b"bye")
    await writer.drain()
    writer.close()
    assert await client.read_until(b"+IPCLOSE: 0,1\r\n") == (
        b"\r\n+CIPRXGET: 1,0\r\n\r\n+IPCLOSE: 0,1\r\n"
    )
    assert await client.command("AT+CIPCLOSE?") == (
        b"\r\n+CIPCLOSE: 0,0,0,0,0,0,0,0,0,0\r\n\r\nOK\r\n"
    )
    assert await client.command("AT+CIPRXGET=2,0,100") == (
        b"\r\n+CIPRXGET: 2,0,3,0\r\nbye\r\n\r\nOK\r\n"
    )
    assert await client.command("AT+CIPCLOSE=0", b"ERROR\r\n") == (
        b"\r\n+CIPCLOSE: 0,4\r\n\r\nERROR\r\n"
    )
    assert await client.command("AT+CIPSEND=0,3", b"ERROR\r\n") == (
        b"\r\n+CIPERROR: 4\r\n\r\nERROR\r\n"
    )


async def test_refused_and_unresolvable_opens(
    client: RawClient, server: EchoServer
) -> None:
    await bring_up(client)
    closed_port = server.port
    await server.stop()
    reply = await client.command(
        f'AT+CIPOPEN=0,"TCP","127.0.0.1",{closed_port}', b"+CIPOPEN: 0,1\r\n"
    )
    assert reply == b"\r\nOK\r\n\r\n+CIPOPEN: 0,1\r\n"
    reply = await client.command(
        'AT+CIPOPEN=1,"TCP","nx.invalid",80', b"+CIPOPEN: 1,11\r\n"
    )
    assert reply == b"\r\nOK\r\n\r\n+CIPOPEN: 1,11\r\n"
    assert await client.command('AT+CIPOPEN=1,"UDP","127.0.0.1",9', b"ERROR\r\n") == (
        b"\r\n+CIPOPEN: 1,3\r\n\r\nERROR\r\n"
    )


async def test_open_needs_the_network_and_a_free_link(
    client: RawClient, server: EchoServer
) -> None:
    await client.command("ATE0")
    line = f'AT+CIPOPEN=0,"TCP","127.0.0.1",{server.port}'
    assert await client.command(line, b"ERROR\r\n") == (
        b"\r\n+CIPOPEN: 0,2\r\n\r\nERROR\r\n"
    )
    await client.command("AT+NETOPEN", b"+NETOPEN: 0\r\n")
    await open_link(client, server)
    assert await client.command(line, b"ERROR\r\n") == (
        b"\r\n+CIPOPEN: 0,4\r\n\r\nERROR\r\n"
    )


async def test_every_link_up_to_the_socket_count(
    client: RawClient, server: EchoServer
) -> None:
    await bring_up(client)
    for link in range(10):
        await open_link(client, server, link)
    listing = await client.command("AT+CIPOPEN?")
    assert listing.count(b',"TCP","127.0.0.1",') == 10
    assert await client.command("AT+CIPCLOSE?") == (
        b"\r\n+CIPCLOSE: 1,1,1,1,1,1,1,1,1,1\r\n\r\nOK\r\n"
    )
    line = f'AT+CIPOPEN=10,"TCP","127.0.0.1",{server.port}'
    assert await client.command(line, b"ERROR\r\n") == b"\r\nERROR\r\n"

    for link in range(10):
        assert await client.command(f"AT+CIPSEND={link},2", b">") == b"\r\n>"
        client.write(f"{link}!".encode())
        await client.read_until(f"+CIPSEND: {link},2,2\r\n".encode())
    for index in range(10):
        reader, _writer = await server.peer(index)
        assert await reader.readexactly(2) == f"{index}!".encode()


async def test_send_limits(client: RawClient, server: EchoServer) -> None:
    await bring_up(client)
    await open_link(client, server)
    assert await client.command("AT+CIPSEND=0,1501", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert await client.command("AT+CIPSEND=0,1500", b">") == b"\r\n>"
    client.write(bytes(range(256)) * 5 + b"\x00" * 220)
    await client.read_until(b"+CIPSEND: 0,1500,1500\r\n")
    reader, _writer = await server.peer()
    assert len(await reader.readexactly(1500)) == 1500


async def test_name_resolution(client: RawClient) -> None:
    await bring_up(client)
    assert await client.command('AT+CDNSGIP="localhost"') == (
        b'\r\n+CDNSGIP: 1,"localhost","127.0.0.1"\r\n\r\nOK\r\n'
    )
    assert await client.command('AT+CDNSGIP="nx.invalid"', b"ERROR\r\n") == (
        b"\r\n+CDNSGIP: 0,10\r\n\r\nERROR\r\n"
    )


async def test_host_closing_a_link(client: RawClient, server: EchoServer) -> None:
    await bring_up(client)
    await open_link(client, server)
    reader, _writer = await server.peer()
    assert await client.command("AT+CIPCLOSE=0", b"+CIPCLOSE: 0,0\r\n") == (
        b"\r\nOK\r\n\r\n+CIPCLOSE: 0,0\r\n"
    )
    assert await reader.read() == b""


async def test_bulk_push_is_cut_at_the_read_limit(
    client: RawClient, server: EchoServer
) -> None:
    await client.command("ATE0")
    await client.command("AT+CIPSRIP=0")
    await client.command("AT+NETOPEN", b"+NETOPEN: 0\r\n")
    await open_link(client, server)
    _reader, writer = await server.peer()
    data = bytes(range(256)) * 800
    writer.write(data)
    await writer.drain()

    received = bytearray()
    while len(received) < len(data):
        header = await client.read_until(b"\r\n", seconds=5)
        if header == b"\r\n":
            continue
        assert header.startswith(b"+IPD")
        size = int(header[4:-2])
        assert 0 < size <= 1500
        received += await client.read_exactly(size)
        assert await client.read_exactly(2) == b"\r\n"
    assert received == data
