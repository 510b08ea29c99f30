"""The relay client against the real relay on loopback, and against a version 1 peer."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from modembridge.errors import RelayRefused
from modembridge.pipe import BytePipe, TcpPipe
from modembridge.relayclient import (
    Ack,
    Delivery,
    Heartbeat,
    Pong,
    Refusal,
    RelayClient,
    RelayClosed,
    RelayEvent,
    RelayProtocolError,
)
from relayserver.server import RelayConfig, RelayServer


@pytest.fixture
async def relay() -> AsyncIterator[RelayServer]:
    server = RelayServer(RelayConfig(host="127.0.0.1", port=0, heartbeat=0.2))
    await server.start()
    yield server
    await server.close()


async def card(port: int, name: str, token: str | None = None) -> RelayClient:
    client = RelayClient(await TcpPipe.connect("127.0.0.1", port), name, token=token)
    await client.connect(reply_within=5)
    return client


async def next_not_heartbeat(client: RelayClient) -> RelayEvent:
    while isinstance(
        event := await asyncio.wait_for(client.next_event(), 5), Heartbeat
    ):
        pass
    return event


async def test_v2_send_is_acked_by_id_and_delivered_with_its_sender(
    relay: RelayServer,
) -> None:
    a = await card(relay.port, "A")
    b = await card(relay.port, "B")

    first = await a.send("B", b"hello B")
    second = await a.send("B", b"\x00\xffbinary")

    assert (a.version, a.heartbeat_interval) == (2, 0.2)
    assert await next_not_heartbeat(a) == Ack(first)
    assert await next_not_heartbeat(a) == Ack(second)
    assert await next_not_heartbeat(b) == Delivery("A", b"hello B")
    assert await next_not_heartbeat(b) == Delivery("A", b"\x00\xffbinary")
    await a.close()
    await b.close()


async def test_v2_send_to_an_absent_card_is_refused_by_id(relay: RelayServer) -> None:
    a = await card(relay.port, "A")

    request_id = await a.send("Nobody", b"hi")

    assert await next_not_heartbeat(a) == Refusal(request_id, "not connected", "Nobody")
    await a.close()


async def test_heartbeats_and_pongs_arrive(relay: RelayServer) -> None:
    a = await card(relay.port, "A")

    await a.ping()

    assert await next_not_heartbeat(a) == Pong()
    heartbeat = await asyncio.wait_for(a.next_event(), 5)
    assert isinstance(heartbeat, Heartbeat)
    assert heartbeat.sent_at is not None
    await a.close()


async def test_wrong_token_is_refused() -> None:
    config = RelayConfig(host="127.0.0.1", port=0, tokens={"T": "secret"})
    relay = RelayServer(config)
    await relay.start()

    with pytest.raises(RelayRefused, match="not authorized"):
        await card(relay.port, "T", token="guess")
    good = await card(relay.port, "T", token="secret")

    assert good.version == 2
    await good.close()
    await relay.close()


async def test_closed_connection_ends_the_session(relay: RelayServer) -> None:
    a = await card(relay.port, "A")

    await card(relay.port, "A")  # takes the name over: the relay closes the first

    with pytest.raises(RelayClosed):
        await drain_events(a)


async def v1_text(client: RelayClient, size: int) -> bytes:
    """Version 1 cannot frame: a message may arrive in several deliveries."""
    data = b""
    while len(data) < size:
        event = await asyncio.wait_for(client.next_event(), 5)
        assert isinstance(event, Delivery)
        assert event.sender is None
        data += event.data
    return data


async def drain_events(client: RelayClient) -> None:
    while True:
        await asyncio.wait_for(client.next_event(), 5)


class V1Relay:
    """What deployed relays speak: bare words, raw deliveries, no sender."""

    def __init__(self) -> None:
        self.cards: dict[str, asyncio.StreamWriter] = {}
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        buffer = b""
        while data := await reader.read(4096):
            buffer += data
            while b"}" in buffer:
                request, buffer = buffer.split(b"}", 1)
                self.answer(request.decode(), writer)
        writer.close()

    def answer(self, request: str, writer: asyncio.StreamWriter) -> None:
        fields = dict(
            part.split(":", 1)
            for part in request.strip("{ ").replace('"', "").split(",")
        )
        if fields["action"] == "connect":
            self.cards[fields["from"]] = writer
            writer.write(b"connect_success")
        elif fields["to"] in self.cards:
            self.cards[fields["to"]].write(fields["message"].encode())
            writer.write(b"send_success")
        else:
            writer.write(fields["to"].encode() + b" not connect")

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.cards.values():
            writer.close()
        await self.server.wait_closed()


async def test_falls_back_to_v1_by_itself() -> None:
    relay = V1Relay()
    port = await relay.start()
    a = await card(port, "A")
    b = await card(port, "B")

    ok = await a.send("B", b"plain words")
    absent = await a.send("C", b"lost")

    assert (a.version, b.version) == (1, 1)
    assert await a.next_event() == Ack(ok)
    assert await a.next_event() == Refusal(absent, "not connected", "C")
    assert await v1_text(b, len(b"plain words")) == b"plain words"
    await a.close()
    await b.close()
    await relay.close()


async def test_a_version_1_refusal_split_across_reads_is_reported_whole() -> None:
    async def refuse(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read(100)
        for piece in (b"A", b" not auth", b"orized"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    with pytest.raises(RelayRefused, match="'A not authorized'"):
        await card(port, "A")
    server.close()
    await server.wait_closed()


class OneByteAtATime(BytePipe):
    """A link that hands over what arrived one byte per read."""

    def __init__(self, pipe: TcpPipe) -> None:
        self.pipe = pipe
        self.pending = b""

    async def write(self, data: bytes) -> None:
        await self.pipe.write(data)

    async def read(self) -> bytes:
        if not self.pending:
            self.pending = await self.pipe.read()
        byte, self.pending = self.pending[:1], self.pending[1:]
        return byte

    async def close(self) -> None:
        await self.pipe.close()


async def test_a_link_that_delivers_one_byte_at_a_time(relay: RelayServer) -> None:
    pipe = OneByteAtATime(await TcpPipe.connect("127.0.0.1", relay.port))
    a = RelayClient(pipe, "A")
    await a.connect(reply_within=5)
    b = await card(relay.port, "B")

    request_id = await a.send("B", "ünïcode and \x00 bytes".encode())
    await b.send("A", b"\xffback")

    assert a.version == 2
    events = [await next_not_heartbeat(a) for _ in range(2)]
    assert Ack(request_id) in events
    assert Delivery("B", b"\xffback") in events
    await a.close()
    await b.close()


async def test_a_hostile_relay_yields_our_protocol_error_not_a_crash() -> None:
    async def hostile(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read(100)
        writer.write(b'{"ok":"connect","proto":2}\n{"from": [1, 2]}\n' + b"x" * 300_000)
        await writer.drain()

    server = await asyncio.start_server(hostile, "127.0.0.1", 0)
    a = await card(server.sockets[0].getsockname()[1], "A")

    with pytest.raises(RelayProtocolError, match="a delivery without a 'message'"):
        await a.next_event()
    with pytest.raises(RelayProtocolError, match="longer than"):
        await a.next_event()
    await a.close()
    server.close()
    await server.wait_closed()


class PiecewisePipe(BytePipe):
    """Writes in pieces of a few bytes with a pause between, as a module sends."""

    def __init__(self) -> None:
        self.written = b""

    async def write(self, data: bytes) -> None:
        for start in range(0, len(data), 8):
            self.written += data[start : start + 8]
            await asyncio.sleep(0)

    async def read(self) -> bytes:
        await asyncio.Event().wait()
        return b""

    async def close(self) -> None:
        pass


async def test_requests_written_at_once_do_not_interleave() -> None:
    pipe = PiecewisePipe()
    client = RelayClient(pipe, "A")
    client.version = 2

    await asyncio.gather(
        client.send("B", b"a message long enough for several pieces"),
        client.ping(),
        client.send("C", b"another one, as long"),
    )

    assert pipe.written.split(b"\n") == [
        b'{"action":"send","to":"B","message":"a message long enough for several '
        b'pieces","id":1}',
        b'{"action":"ping"}',
        b'{"action":"send","to":"C","message":"another one, as long","id":2}',
        b"",
    ]


async def connect_to_reply(reply: bytes) -> RelayClient:
    """A client connected to a peer that answers the connect request with ``reply``."""

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read(200)
        writer.write(reply)
        await writer.drain()
        await reader.read(200)
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RelayClient(await TcpPipe.connect("127.0.0.1", port), "A")
    try:
        await client.connect(reply_within=5)
    finally:
        server.close()
    return client


@pytest.mark.parametrize(
    ("announced", "kept"),
    [("30", 30.0), ("0", None), ("1e-9", None), ("1e300", 3600.0), ('"x"', None)],
)
async def test_an_announced_heartbeat_is_kept_within_bounds(
    announced: str, kept: float | None
) -> None:
    reply = f'{{"ok":"connect","proto":2,"heartbeat":{announced}}}\n'.encode()

    client = await connect_to_reply(reply)

    assert (client.version, client.heartbeat_interval) == (2, kept)
    await client.close()


async def test_a_connect_reply_nested_too_deep_is_our_protocol_error() -> None:
    with pytest.raises(RelayProtocolError, match="nests too deep"):
        await connect_to_reply(b'{"ok":' + b"[" * 100_000 + b"\n")
