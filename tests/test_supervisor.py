"""The supervisor's recovery ladder, over a loopback module and the real relay.

``LoopbackModem`` implements the modem interface with plain TCP sockets from this host,
and lets a test break what a real module breaks: the socket, the bearer, the port. It
stands in for a module the way the simulator does, one layer higher, so that every rung
of the ladder can be reached in a few milliseconds.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from modembridge.errors import (
    BearerError,
    ModemError,
    PortVanished,
    RelayRefused,
    SocketError,
)
from modembridge.models import SIM7600
from modembridge.modem import (
    EventCallback,
    EventKind,
    Identity,
    Modem,
    ModemEvent,
    ModemSocket,
    Registration,
    RegStat,
    Signal,
    SimState,
)
from modembridge.pipe import BytePipe, TcpPipe
from modembridge.relayclient import RelayClient, RelayClosed
from modembridge.supervisor import (
    Cause,
    LinkLost,
    LinkState,
    RecoveryPolicy,
    Supervisor,
    device_of,
    stable_path,
)
from relayserver.server import RelayConfig, RelayServer

NETWORK_FAILURE = 1
"""SIM7600 ``+CIPOPEN: <link>,1``: the connect was refused, or the network failed."""

REACTIVATION = ["bearer_down", "prepare", "apn cmnet", "bearer_up", "open_socket"]
"""What the bench's module is asked when its bearer is reactivated."""

FAST = RecoveryPolicy(attempts_per_remedy=2, backoff_base=0.01, backoff_max=0.05)


class LoopbackSocket(ModemSocket):
    def __init__(self, pipe: TcpPipe, link: int) -> None:
        self.pipe = pipe
        self.link = link

    async def write(self, data: bytes) -> None:
        await self.pipe.write(data)

    async def read(self) -> bytes:
        return await self.pipe.read()

    async def close(self) -> None:
        await self.pipe.close()


class LoopbackModem(Modem):
    """A module whose socket is a TCP socket of this host; its faults are scripted."""

    def __init__(self, port: Path, log: list[str]) -> None:
        self.facts = SIM7600
        self.port = str(port)
        self.path = port
        self.log = log
        self.bearer = False
        self.failing_opens = 0
        self.failing_bearers = 0
        self.sockets: list[LoopbackSocket] = []
        self.callbacks: list[EventCallback] = []

    async def prepare(self) -> None:
        self.alive()
        self.log.append("prepare")

    async def identify(self) -> Identity:
        return Identity("SIMCOM", "SIM7600G-H", "LE20B04", "860000000000001", None)

    async def sim_state(self) -> SimState:
        return SimState.READY

    async def signal(self) -> Signal:
        return Signal(20, 99)

    async def registration(self) -> Registration:
        return Registration(cereg=RegStat.HOME)

    async def operator(self) -> str | None:
        return "Loopback"

    async def configure_apn(self, apn: str, user: str = "", password: str = "") -> None:
        self.log.append(f"apn {apn}")

    async def bearer_up(self) -> str:
        self.alive()
        self.log.append("bearer_up")
        if self.failing_bearers:
            self.failing_bearers -= 1
            raise BearerError("activation failed")
        self.bearer = True
        return "10.0.0.2"

    async def bearer_down(self) -> None:
        self.log.append("bearer_down")
        self.bearer = False

    async def bearer_active(self) -> bool:
        return self.bearer

    async def open_socket(self, host: str, port: int) -> ModemSocket:
        self.alive()
        self.log.append("open_socket")
        if not self.bearer:
            # A SIM7600 reports a lost bearer and a refused connect alike.
            raise SocketError("+CIPOPEN: 0,1", code=NETWORK_FAILURE)
        if self.failing_opens:
            self.failing_opens -= 1
            raise SocketError("+CIPOPEN: 0,4")
        try:
            pipe = await TcpPipe.connect(host, port)
        except OSError as exc:
            raise SocketError("+CIPOPEN: 0,1", code=NETWORK_FAILURE) from exc
        socket = LoopbackSocket(pipe, len(self.sockets))
        self.sockets.append(socket)
        return socket

    async def radio_off(self) -> None:
        self.log.append("radio_off")
        self.bearer = False

    async def radio_on(self) -> None:
        self.log.append("radio_on")

    async def reset(self) -> None:
        self.log.append("reset")
        self.path.unlink()
        asyncio.get_running_loop().call_later(0.05, self.path.touch)

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    async def close(self) -> None:
        self.log.append("close")

    def alive(self) -> None:
        if not self.path.exists():
            raise PortVanished(self.port)

    async def drop_bearer(self) -> None:
        self.bearer = False
        for callback in list(self.callbacks):
            callback(ModemEvent(EventKind.BEARER_LOST, "+CIPEVENT: NETWORK CLOSED"))


@pytest.fixture
async def relay() -> AsyncIterator[RelayServer]:
    server = RelayServer(RelayConfig(host="127.0.0.1", port=0, heartbeat=30))
    await server.start()
    yield server
    await server.close()


class PortOnly:
    """Stands in for a relay object where only the port matters."""

    def __init__(self, port: int) -> None:
        self.port = port


class Bench:
    """A supervisor over loopback modules, with a session that counts its runs."""

    def __init__(self, tmp_path: Path, relay: RelayServer | PortOnly) -> None:
        self.log: list[str] = []
        self.path = tmp_path / "ttyUSB2"
        self.path.touch()
        self.modems: list[LoopbackModem] = []
        self.states: list[LinkState] = []
        self.online = asyncio.Event()
        self.sessions = 0
        self.reply_within = 5.0
        self.supervisor = Supervisor(
            str(self.path),
            ("127.0.0.1", relay.port),
            open_modem=self.open_modem,
            bring_up=self.bring_up,
            policy=FAST,
            card="A",
            on_state=lambda state, detail: self.states.append(state),
        )

    async def open_modem(self, port: str) -> Modem:
        modem = LoopbackModem(Path(port), self.log)
        modem.alive()
        self.log.append("open")
        self.modems.append(modem)
        return modem

    async def bring_up(self, modem: Modem) -> object:
        await modem.configure_apn("cmnet")
        return await modem.bearer_up()

    async def session(self, pipe: BytePipe) -> None:
        self.sessions += 1
        client = RelayClient(pipe, "A")
        await client.connect(reply_within=self.reply_within)
        self.supervisor.online()
        self.online.set()
        try:
            while True:
                await client.next_event()
        except RelayClosed as exc:
            raise LinkLost(Cause.SOCKET, str(exc)) from exc

    async def until_online(self) -> None:
        await asyncio.wait_for(self.online.wait(), 5)
        self.online.clear()

    @property
    def modem(self) -> LoopbackModem:
        return self.modems[-1]


async def run_bench(
    tmp_path: Path, relay: RelayServer
) -> tuple[Bench, asyncio.Task[None]]:
    bench = Bench(tmp_path, relay)
    await bench.supervisor.start()
    task = asyncio.create_task(bench.supervisor.run(bench.session))
    await bench.until_online()
    bench.log.clear()
    return bench, task


async def stop(bench: Bench, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bench.supervisor.shutdown()


async def test_a_socket_closed_by_the_network_is_reopened(
    tmp_path: Path, relay: RelayServer
) -> None:
    bench, task = await run_bench(tmp_path, relay)

    await bench.modem.sockets[-1].pipe.close()
    await bench.until_online()

    assert bench.log == ["open_socket"]
    assert bench.supervisor.failures == 0
    assert relay.cards() == ["A"]
    await stop(bench, task)


async def test_a_dropped_bearer_is_reactivated(
    tmp_path: Path, relay: RelayServer
) -> None:
    bench, task = await run_bench(tmp_path, relay)

    await bench.modem.drop_bearer()
    await bench.until_online()

    assert bench.log == REACTIVATION
    await stop(bench, task)


async def test_repeated_failures_climb_the_ladder_up_to_a_reset(
    tmp_path: Path, relay: RelayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "modembridge.supervisor")
    bench, task = await run_bench(tmp_path, relay)
    bench.modem.failing_opens = 6

    await bench.modem.sockets[-1].pipe.close()
    await bench.until_online()

    remedies = [e for e in bench.log if e in ("bearer_down", "radio_off", "reset")]
    assert remedies == ["bearer_down", "bearer_down", "radio_off", "radio_off", "reset"]
    assert bench.log.count("open") == 1  # the port came back and was opened again
    failures = [r for r in caplog.records if "link failed" in r.getMessage()]
    assert [r.levelname for r in failures] == ["WARNING"] + ["DEBUG"] * 6
    assert "card[A]" in failures[0].getMessage()
    await stop(bench, task)


class LogWatch(logging.Handler):
    """Counts a logger's records that contain a text, and wakes waiters."""

    def __init__(self, text: str, logger: str = "modembridge.supervisor") -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.count = 0
        self.changed = asyncio.Event()
        self.logger = logging.getLogger(logger)
        self.records: list[logging.LogRecord] = []

    def __enter__(self) -> "LogWatch":
        self.level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count += 1
            self.records.append(record)
            self.changed.set()

    async def until(self, count: int, within: float = 5) -> None:
        async with asyncio.timeout(within):
            while self.count < count:
                self.changed.clear()
                await self.changed.wait()


async def test_a_relay_that_is_down_is_retried_at_the_socket_only(
    tmp_path: Path, relay: RelayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "modembridge.supervisor")
    bench, task = await run_bench(tmp_path, relay)
    port = relay.port

    with LogWatch("unreachable") as watch:
        await relay.close()
        await watch.until(6)
    back = RelayServer(RelayConfig(host="127.0.0.1", port=port, heartbeat=30))
    await back.start()
    await bench.until_online()

    assert set(bench.log) == {"open_socket"}  # no bearer, radio or reset remedy
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert [r.levelname for r in down[:3]] == ["WARNING", "DEBUG", "DEBUG"]
    assert "card[A]: relay 127.0.0.1:" in down[0].getMessage()
    assert "only the socket is retried" in down[0].getMessage()
    await stop(bench, task)
    await back.close()


@pytest.mark.parametrize("reply", [b"", b"{not json}\n", None])
async def test_a_relay_that_fails_before_registering_is_retried_at_the_socket(
    tmp_path: Path, reply: bytes | None
) -> None:
    """It hangs up, answers garbage, or says nothing (None) to the connect."""

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if reply is None:
            await reader.read()
        writer.write(reply or b"")
        writer.close()

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    bench = Bench(tmp_path, PortOnly(server.sockets[0].getsockname()[1]))
    bench.reply_within = 0.05
    await bench.supervisor.start()
    bench.log.clear()

    with LogWatch("unreachable") as watch:
        task = asyncio.create_task(bench.supervisor.run(bench.session))
        await watch.until(5)

    assert set(bench.log) == {"open_socket"}
    assert [r.levelname for r in watch.records[:2]] == ["WARNING", "DEBUG"]
    await stop(bench, task)
    server.close()


async def test_a_refused_open_without_a_bearer_reactivates_it_at_once(
    tmp_path: Path, relay: RelayServer
) -> None:
    bench, task = await run_bench(tmp_path, relay)

    bench.modem.bearer = False  # lost without a word from the module
    await bench.modem.sockets[-1].pipe.close()
    await bench.until_online()

    assert bench.log == ["open_socket", *REACTIVATION]
    await stop(bench, task)


async def test_a_vanished_port_is_waited_for_and_reopened(
    tmp_path: Path, relay: RelayServer
) -> None:
    bench, task = await run_bench(tmp_path, relay)
    old = bench.modem

    bench.path.unlink()
    await old.sockets[-1].pipe.close()
    await asyncio.sleep(0.1)
    assert LinkState.WAITING_FOR_PORT in bench.states
    bench.path.touch()
    await bench.until_online()

    assert bench.modem is not old
    assert bench.log[-4:] == ["open", "apn cmnet", "bearer_up", "open_socket"]
    await stop(bench, task)


async def test_shutdown_closes_the_bearer_and_the_port(
    tmp_path: Path, relay: RelayServer
) -> None:
    bench, task = await run_bench(tmp_path, relay)

    await stop(bench, task)

    assert bench.log[-2:] == ["bearer_down", "close"]
    assert bench.supervisor.state is LinkState.STOPPED


async def test_a_relay_that_refuses_the_card_ends_the_run(
    tmp_path: Path, relay: RelayServer
) -> None:
    bench = Bench(tmp_path, relay)
    await bench.supervisor.start()

    async def refused(pipe: BytePipe) -> None:
        raise RelayRefused("relay refused card A: not authorized")

    with pytest.raises(RelayRefused):
        await asyncio.wait_for(bench.supervisor.run(refused), 5)
    await bench.supervisor.shutdown()


def test_backoff_doubles_up_to_its_bound() -> None:
    policy = RecoveryPolicy(backoff_base=1, backoff_max=5)

    assert [policy.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


async def test_errors_of_the_start_are_the_callers(tmp_path: Path) -> None:
    async def no_module(port: str) -> Modem:
        raise ModemError(f"{port}: no answer to AT")

    supervisor = Supervisor(
        str(tmp_path / "ttyUSB9"),
        ("127.0.0.1", 1),
        open_modem=no_module,
        bring_up=lambda modem: asyncio.sleep(0),
    )

    with pytest.raises(ModemError, match="no answer"):
        await supervisor.start()


def test_a_linked_port_is_watched_under_its_own_name(tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB3"
    device.touch()
    link = tmp_path / "at"
    link.symlink_to(device)

    assert stable_path(str(link)) == str(link)
    assert stable_path(str(device)) == str(device)  # no udev rules on this host
    assert device_of(str(link)) == str(link)
