"""The attach agent over loopback modules and the real relay: endpoints, no loss."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from test_relayclient_session import V1Relay
from test_supervisor import FAST, LogWatch, LoopbackModem, PortOnly

from modembridge.agent import (
    MAX_LINE,
    Agent,
    AgentConfig,
    format_delivery,
    parse_line,
)
from modembridge.modem import Modem
from modembridge.simulator import SimConfig, SimulatedModem
from relayserver.server import RelayConfig, RelayServer


class Screen:
    """Collects what the agent prints, line by line, and lets a test wait for it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = ""
        self._changed = asyncio.Event()

    def write(self, text: str) -> int:
        self._partial += text
        *whole, self._partial = self._partial.split("\n")
        self.lines += whole
        self._changed.set()
        return len(text)

    def flush(self) -> None:
        pass

    def say(self, text: str) -> None:
        self.write(text + "\n")

    async def wait_for(
        self, predicate: Callable[[list[str]], object], within: float = 5
    ) -> list[str]:
        async with asyncio.timeout(within):
            while not predicate(self.lines):
                self._changed.clear()
                await self._changed.wait()
        return self.lines


class Card:
    """One agent on one loopback module, fed from a test-controlled stdin."""

    def __init__(
        self, tmp_path: Path, relay: RelayServer | PortOnly, name: str, **config: Any
    ) -> None:
        self.path = tmp_path / f"tty-{name}"
        self.path.touch()
        self.log: list[str] = []
        self.modems: list[LoopbackModem] = []
        self.stdin = asyncio.StreamReader()
        self.stdout = Screen()
        self.status = Screen()
        settings = {"policy": FAST, "drain_timeout": 2.0, **config}
        self.agent = Agent(
            AgentConfig(str(self.path), name, ("127.0.0.1", relay.port), **settings),
            open_modem=self.open_modem,
            bring_up=self.bring_up,
            stdin=self.stdin,
            # The agent asks for a TextIO but only writes and flushes.
            stdout=self.stdout,  # type: ignore[arg-type]
            status=self.status.say,
        )
        self.task: asyncio.Task[None] | None = None

    async def open_modem(self, port: str) -> Modem:
        modem = LoopbackModem(Path(port), self.log)
        self.modems.append(modem)
        return modem

    async def bring_up(self, modem: Modem) -> object:
        return await modem.bearer_up()

    async def start(self) -> "Card":
        self.task = asyncio.create_task(self.agent.run())
        await self.status.wait_for(lambda lines: any("online" in x for x in lines))
        return self

    def type(self, *lines: str) -> None:
        for line in lines:
            self.stdin.feed_data(line.encode() + b"\n")

    async def stop(self, *, at_once: bool = False) -> None:
        """Stop the agent (at once: without delivering what it holds) and wait."""
        if at_once:
            self.agent.interrupt()
        else:
            self.agent.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)

    async def finish(self) -> None:
        self.stdin.feed_eof()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def relay() -> AsyncIterator[RelayServer]:
    server = RelayServer(RelayConfig(host="127.0.0.1", port=0, heartbeat=0.2))
    await server.start()
    yield server
    await server.close()


def test_lines_name_their_target_by_prefix_unless_to_is_given() -> None:
    assert parse_line("B: hello: world", None) == ("B", "hello: world")
    assert parse_line("B: hello", "C") == ("C", "B: hello")
    with pytest.raises(ValueError, match="no target"):
        parse_line("hello", None)


def test_deliveries_print_their_sender_or_json() -> None:
    assert format_delivery("A", b"hi\n", json_output=False) == "A: hi"
    assert format_delivery(None, b"hi", json_output=False) == "hi"
    assert json.loads(format_delivery("A", b"\xff", json_output=True)) == {
        "from": "A",
        "message_b64": "/w==",
    }


async def test_stdin_lines_go_both_ways_with_their_sender(
    tmp_path: Path, relay: RelayServer
) -> None:
    a = await Card(tmp_path, relay, "A").start()
    b = await Card(tmp_path, relay, "B", to="A").start()

    a.type("B: hello B", "B: second")
    b.type("hello A")

    assert await b.stdout.wait_for(lambda x: len(x) == 2) == [
        "A: hello B",
        "A: second",
    ]
    assert await a.stdout.wait_for(lambda x: len(x) == 1) == ["B: hello A"]
    await a.finish()
    await b.finish()
    assert a.log[-2:] == ["bearer_down", "close"]
    assert any("offline" in line for line in a.status.lines)


async def test_listen_bridges_local_programs(
    tmp_path: Path, relay: RelayServer
) -> None:
    a = await Card(tmp_path, relay, "A", listen=("127.0.0.1", 0)).start()
    b = await Card(tmp_path, relay, "B").start()
    assert a.agent.listening is not None
    reader, writer = await asyncio.open_connection(*a.agent.listening)

    writer.write(b"B: from a program\n")
    b.type("A: back to the program")

    assert await b.stdout.wait_for(lambda x: x) == ["A: from a program"]
    line = await asyncio.wait_for(reader.readline(), 5)
    assert line == b"B: back to the program\n"
    writer.close()
    await a.stop()
    await b.finish()


async def test_an_overlong_line_is_skipped_whole_with_a_warning(
    tmp_path: Path, relay: RelayServer, caplog: pytest.LogCaptureFixture
) -> None:
    listen = ("127.0.0.1", 0)
    a = await Card(tmp_path, relay, "A", listen=listen, to="B").start()
    b = await Card(tmp_path, relay, "B").start()
    assert a.agent.listening is not None
    _, writer = await asyncio.open_connection(*a.agent.listening)

    for _ in range(12):  # in pieces, as a slow program would write it
        writer.write(b"x" * (MAX_LINE // 4))
        await writer.drain()
        await asyncio.sleep(0.01)
    writer.write(b" tail of the long line\n" + b"y" * (MAX_LINE + 1) + b"\n")
    writer.write(b"the next line\n")

    assert await b.stdout.wait_for(lambda x: x) == ["A: the next line"]
    skipped = [r for r in caplog.records if "line longer than" in r.getMessage()]
    assert [r.getMessage()[:8] for r in skipped] == ["card[A]:"] * 2
    writer.close()
    await a.stop()
    await b.finish()
    assert b.stdout.lines == ["A: the next line"]


async def test_deliveries_wait_for_the_first_local_program(
    tmp_path: Path, relay: RelayServer
) -> None:
    a = await Card(tmp_path, relay, "A", listen=("127.0.0.1", 0)).start()
    b = await Card(tmp_path, relay, "B").start()
    b.type("A: early 1", "A: early 2")
    async with asyncio.timeout(5):
        while len(a.agent._held_for_clients) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert a.agent.listening is not None

    reader, writer = await asyncio.open_connection(*a.agent.listening)

    lines = [await asyncio.wait_for(reader.readline(), 5) for _ in range(2)]
    assert lines == [b"B: early 1\n", b"B: early 2\n"]
    writer.close()
    await a.stop()
    await b.finish()


async def test_deliveries_beyond_what_is_held_drop_the_oldest_and_say_so(
    tmp_path: Path, relay: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("modembridge.agent.HELD_LINES", 3)
    a = await Card(tmp_path, relay, "A", listen=("127.0.0.1", 0)).start()
    b = await Card(tmp_path, relay, "B").start()

    with LogWatch("older dropped", "modembridge.agent") as watch:
        b.type(*(f"A: {n}" for n in range(6)))
        await watch.until(3)
    assert a.agent.listening is not None
    reader, writer = await asyncio.open_connection(*a.agent.listening)
    held = [await asyncio.wait_for(reader.readline(), 5) for _ in range(3)]

    assert held == [b"B: 3\n", b"B: 4\n", b"B: 5\n"]
    assert [r.levelname for r in watch.records] == ["WARNING", "DEBUG", "DEBUG"]
    assert watch.records[0].getMessage().startswith("card[A]: ")
    writer.close()
    await a.stop()
    await b.finish()


async def test_raw_bridging_carries_a_devices_own_bytes(
    tmp_path: Path, relay: RelayServer
) -> None:
    raw = {"listen": ("127.0.0.1", 0), "raw": True}
    a = await Card(tmp_path, relay, "A", to="B", **raw).start()
    b = await Card(tmp_path, relay, "B", to="A", **raw).start()
    assert a.agent.listening is not None
    assert b.agent.listening is not None
    device_reader, device = await asyncio.open_connection(*a.agent.listening)
    master_reader, master = await asyncio.open_connection(*b.agent.listening)
    request = bytes.fromhex("01 03 00 00 00 01 84 0a")
    response = bytes.fromhex("01 03 02 00 2a 39 9b")

    master.write(request)
    assert await asyncio.wait_for(device_reader.readexactly(8), 5) == request
    device.write(response)
    assert await asyncio.wait_for(master_reader.readexactly(7), 5) == response

    device.close()
    master.close()
    for card in (a, b):
        card.agent.stop()
        assert card.task is not None
        await asyncio.wait_for(card.task, 10)


def test_raw_bridging_without_both_ends_is_refused() -> None:
    with pytest.raises(ValueError, match="--listen and --to"):
        AgentConfig("/dev/ttyUSB2", "A", ("127.0.0.1", 8888), raw=True, to="B")


async def test_undeliverable_messages_are_reported_to_whoever_handed_them(
    tmp_path: Path, relay: RelayServer
) -> None:
    a = await Card(tmp_path, relay, "A", listen=("127.0.0.1", 0), patience=0.3).start()
    assert a.agent.listening is not None
    reader, writer = await asyncio.open_connection(*a.agent.listening)

    writer.write(b"Z: nobody home\nno target here\n")

    first = await asyncio.wait_for(reader.readline(), 5)
    second = await asyncio.wait_for(reader.readline(), 5)
    assert first.startswith(b"! not sent: no target")
    assert second.startswith(b"! not delivered to Z: 'nobody home'")
    assert any("not delivered to Z" in line for line in a.status.lines)
    writer.close()
    await a.stop()


async def test_messages_handed_over_while_the_link_is_down_arrive_once_in_order(
    tmp_path: Path, relay: RelayServer
) -> None:
    a = await Card(tmp_path, relay, "A").start()
    b = await Card(tmp_path, relay, "B").start()
    a.type("B: before")
    await b.stdout.wait_for(lambda x: x == ["A: before"])

    a.modems[-1].failing_opens = 2
    await a.modems[-1].drop_bearer()
    a.type(*(f"B: during {n}" for n in range(5)))
    await a.status.wait_for(lambda x: sum("online" in line for line in x) == 2)
    a.type("B: after")

    expected = ["A: before", *(f"A: during {n}" for n in range(5)), "A: after"]
    assert await b.stdout.wait_for(lambda x: len(x) >= 7) == expected
    await a.finish()
    await b.finish()
    assert b.stdout.lines == expected


async def test_missing_heartbeats_count_as_a_dead_socket(tmp_path: Path) -> None:
    quiet = RelayServer(RelayConfig(host="127.0.0.1", port=0, heartbeat=30))
    await quiet.start()
    a = await Card(tmp_path, quiet, "A", silence_limit=0.3).start()

    await a.status.wait_for(lambda x: any("heartbeats missing" in y for y in x))
    await a.status.wait_for(lambda x: sum("online" in y for y in x) >= 2)

    await a.stop(at_once=True)
    await quiet.close()


async def test_end_of_input_delivers_what_is_held_then_exits(
    tmp_path: Path, relay: RelayServer
) -> None:
    b = await Card(tmp_path, relay, "B").start()
    a = Card(tmp_path, relay, "A")
    a.type(*(f"B: {n}" for n in range(20)))
    a.stdin.feed_eof()

    await asyncio.wait_for(a.agent.run(), 10)

    assert await b.stdout.wait_for(lambda x: len(x) == 20) == [
        f"A: {n}" for n in range(20)
    ]
    await b.finish()


async def test_a_version_1_relay_gets_version_1_by_itself(tmp_path: Path) -> None:
    relay = V1Relay()
    port = PortOnly(await relay.start())
    a = await Card(tmp_path, port, "A", to="B").start()
    b = await Card(tmp_path, port, "B").start()

    a.type("plain text for a deployed card")

    await b.stdout.wait_for(lambda x: "".join(x) == "plain text for a deployed card")
    assert a.agent.version == 1
    assert "(protocol 1" in a.status.lines[-1]
    await a.finish()
    await b.finish()
    await relay.close()


async def test_garbage_from_the_relay_is_skipped_with_one_warning(
    tmp_path: Path,
) -> None:
    async def garbled(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read(100)
        writer.write(b'{"ok":"connect","proto":2,"heartbeat":30}\n')
        writer.write(b'\xff\xfe garbage\n[1]\n{"from":"Z","message":"still here"}\n')
        await writer.drain()
        await reader.read(100)

    server = await asyncio.start_server(garbled, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    with LogWatch("card[A]: relay line", "modembridge.agent") as watch:
        a = await Card(tmp_path, PortOnly(port), "A").start()
        assert await a.stdout.wait_for(lambda x: x) == ["Z: still here"]

    assert [(r.levelname, r.getMessage()) for r in watch.records] == [
        ("WARNING", "card[A]: relay line is not JSON (1 this session)"),
        ("DEBUG", "card[A]: relay line is not a JSON object (2 this session)"),
    ]
    await a.stop(at_once=True)
    server.close()


async def test_a_relay_that_stops_acknowledging_counts_as_a_dead_socket(
    tmp_path: Path,
) -> None:
    requests: list[bytes] = []
    heard = asyncio.Event()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(200)  # the connect request, which has no line end
        writer.write(b'{"ok":"connect","proto":2,"heartbeat":30}\n')
        while line := await reader.readline():
            requests.append(line)
            heard.set()
        writer.close()

    server = await asyncio.start_server(deaf, "127.0.0.1", 0)
    port = PortOnly(server.sockets[0].getsockname()[1])
    a = await Card(tmp_path, port, "A", ack_timeout=0.2).start()

    a.type("B: are you there?")
    await a.status.wait_for(lambda x: sum("online" in y for y in x) == 2)
    async with asyncio.timeout(5):
        while len(requests) < 2:
            heard.clear()
            await heard.wait()

    assert any(
        "no acknowledgement from the relay in 0.2 s" in y for y in a.status.lines
    )
    assert requests[0] == requests[1]  # sent again on the new socket
    await a.stop(at_once=True)
    server.close()


async def test_waiting_messages_share_module_sends(tmp_path: Path) -> None:
    relay = RelayServer(RelayConfig(host="127.0.0.1", port=0, heartbeat=30))
    await relay.start()
    module = SimulatedModem(SimConfig(model="sim7600", link=str(tmp_path / "ttyA")))
    await module.start()
    b = await Card(tmp_path, relay, "B").start()
    wire = tmp_path / "wire.log"
    config = AgentConfig(
        module.path, "A", ("127.0.0.1", relay.port), to="B", window=20, wire_log=wire
    )
    stdin, status = asyncio.StreamReader(), Screen()
    # The agent asks for a TextIO but only writes and flushes.
    a = Agent(config, stdin=stdin, stdout=Screen(), status=status.say)  # type: ignore[arg-type]
    task = asyncio.create_task(a.run())
    await status.wait_for(lambda x: any("online" in y for y in x), within=20)

    stdin.feed_data(b"".join(f"message {n}\n".encode() for n in range(20)))
    stdin.feed_eof()
    await asyncio.wait_for(task, 20)

    assert b.stdout.lines == [f"A: message {n}" for n in range(20)]
    # One send registers the card; the twenty messages waited together.
    assert wire.read_text().count("AT+CIPSEND=") <= 3
    await b.finish()
    await module.stop()
    await relay.close()
