"""AT path: a simulated module, the attach agent and a relay, bulk data both ways.

Processes: the relay, ``modembridge simulate`` (the module: a pseudo-terminal whose
sockets are real TCP connections to the relay), ``modembridge attach --listen`` (the
agent, card A) and a load process holding card B (a version 1 socket on the relay)
and the local program connected to the agent's listening port. The relay and the
agent share CPU 0; the simulated module, which stands for hardware, shares CPU 1 with
the load.

Uplink: the local program writes lines, the agent sends each through the module, B
counts the bytes. Downlink: B sends, the module announces the data, the agent reads
it over AT and writes lines to the local program, which counts them. Then both at
once (the downlink from a third card, C). Each side keeps a bounded number of
messages in flight. The agent's CPU time per KiB carried comes
from /proc. The AT reader's own rate is measured in process, on recorded-shape
traffic, without any I/O.
"""

from __future__ import annotations

import contextlib
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from bench import cards, meter, servers
from bench.dialects import RelayV1, payload_of
from bench.loadgen import run_load
from bench.result import Result

MODEMBRIDGE = [sys.executable, "-c", "from modembridge.cli import main; main()"]

# The longest line the agent writes (its own bound on a line).
MAX_LINE = 64 * 1024

# What the version 1 relay answers a send to a card it does not hold.
NOT_CONNECTED = b"A not connect"


@dataclass(frozen=True)
class Params:
    """Shape of one AT path run."""

    messages: int = 2000
    size: int = 1000
    window: int = 32
    reader_megabytes: int = 20
    timeout: float = 120.0


FULL = Params()
SMOKE = Params(messages=20, window=4, reader_megabytes=1, timeout=60.0)


@dataclass(frozen=True)
class Wiring:
    """Where the pieces are: the relay and the agent, by port and pid."""

    relay_port: int
    relay_pid: int
    agent_port: int
    agent_pid: int
    module_pid: int


def measure(params: Params = FULL) -> list[Result]:
    """The end-to-end run and the AT reader on its own."""
    return [measure_end_to_end(params), measure_reader(params)]


def measure_end_to_end(params: Params) -> Result:
    """Bulk data up and down through module, agent and relay."""
    with servers.running("relay") as relay, _module() as (device, module_pid):
        agent_port = servers.free_port()
        with _agent(device, relay.port, agent_port) as agent_pid:
            wiring = Wiring(relay.port, relay.pid, agent_port, agent_pid, module_pid)
            figures = run_load(_load, wiring, params, timeout=params.timeout + 60)
    result = Result("at_path", "relay", figures, span=figures["up_seconds"])
    result.server_cpu = figures.pop("relay_cpu")
    result.loadgen_cpu = figures.pop("load_cpu")
    return result


@contextlib.contextmanager
def _module() -> Iterator[tuple[str, int]]:
    """A simulated SIM7600 on a pseudo-terminal; yields its device path and pid."""
    process = subprocess.Popen(
        [*MODEMBRIDGE, "simulate", "--model", "sim7600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: servers.pin_to(servers.LOADGEN_CPU),  # noqa: PLW1509
    )
    try:
        assert process.stdout is not None
        device = process.stdout.readline().decode().strip()
        if not device:
            raise RuntimeError("the simulator printed no device path")
        yield device, process.pid
    finally:
        _stop(process)


@contextlib.contextmanager
def _agent(device: str, relay_port: int, agent_port: int) -> Iterator[int]:
    """``attach --listen`` for card A, bridging to card B; yields its pid."""
    command = [
        *MODEMBRIDGE,
        "attach",
        device,
        *("--card", "A", "--to", "B", "--window", "8"),
        *("--server", f"127.0.0.1:{relay_port}"),
        *("--listen", f"127.0.0.1:{agent_port}"),
    ]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=lambda: servers.pin_to(servers.SERVER_CPU),  # noqa: PLW1509
        )
        try:
            yield process.pid
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read()[-3000:].decode(errors="replace"))
            raise
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a helper process, killing it if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _load(wiring: Wiring, params: Params) -> dict[str, float]:
    """The load process: wait for card A, then push data up, then down."""
    card_b = cards.register(wiring.relay_port, RelayV1(), "B")
    card_c = cards.register(wiring.relay_port, RelayV1(), "C")
    local = _connect_local(wiring.agent_port, params.timeout)
    prefix = _wait_for_card_a(card_b, local, params.timeout)

    payload = payload_of(params.size)
    figures: dict[str, float] = {}
    own_start = meter.own_cpu()
    relay_start = meter.server_cpu(wiring.relay_pid)
    up = Transfer(local, payload + b"\n", card_b, len(payload))
    figures |= _direction("up", up, wiring, params)
    down = Transfer(
        card_b, RelayV1().send("A", payload), local, prefix + len(payload) + 1
    )
    figures |= _direction("down", down, wiring, params, acks=card_b)
    from_c = Transfer(card_c, down.unit, local, down.arrives)
    figures |= _both_ways(up, from_c, card_c, wiring, params)
    relay_end = meter.server_cpu(wiring.relay_pid)
    figures["relay_cpu"] = meter.share_of_core(relay_start, relay_end)
    figures["load_cpu"] = meter.share_of_core(own_start, meter.own_cpu())
    cards.close_all([card_b, card_c, local])
    return figures


def _connect_local(port: int, timeout: float) -> socket.socket:
    """Connect to the agent's local port once it listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return cards.open_socket(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _wait_for_card_a(
    card_b: socket.socket, local: socket.socket, timeout: float
) -> int:
    """Probe from B until the relay holds card A and the line reached the program;
    the length of what the agent puts before a delivered text (``B: `` on v2)."""
    dialect = RelayV1()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        card_b.sendall(dialect.send("A", b"probe"))
        reply = cards.recv_exact(card_b, len(dialect.sent()))
        if reply == dialect.sent():
            break
        cards.recv_exact(card_b, len(NOT_CONNECTED) - len(reply))
        time.sleep(0.2)
    else:
        raise TimeoutError("card A never registered at the relay")
    return len(_read_line(local, timeout)) - len(b"probe\n")


def _read_line(sock: socket.socket, timeout: float) -> bytes:
    """One line from the agent (the probe), byte by byte so nothing more is taken."""
    sock.settimeout(timeout)
    line = b""
    while not line.endswith(b"\n"):
        if len(line) > MAX_LINE:
            raise cards.CardError(f"no line end in {MAX_LINE} bytes from the agent")
        byte = sock.recv(1)
        if not byte:
            raise cards.CardError("the agent closed the local connection")
        line += byte
    return line


@dataclass(frozen=True)
class Transfer:
    """One direction: ``unit`` written into ``source``, ``arrives`` bytes at ``sink``
    for each message."""

    source: socket.socket
    unit: bytes
    sink: socket.socket
    arrives: int


def _direction(
    name: str,
    transfer: Transfer,
    wiring: Wiring,
    params: Params,
    acks: socket.socket | None = None,
) -> dict[str, float]:
    """Carry ``messages`` messages one way; rate, and agent and module CPU per KiB."""
    total = params.messages * params.size
    agent_start = meter.server_cpu(wiring.agent_pid)
    module_start = meter.server_cpu(wiring.module_pid)
    started = time.monotonic()
    [received] = _pump([transfer], params, [] if acks is None else [acks])
    elapsed = time.monotonic() - started
    agent = meter.server_cpu(wiring.agent_pid).cpu - agent_start.cpu
    module = meter.server_cpu(wiring.module_pid).cpu - module_start.cpu
    if received != params.messages * transfer.arrives:
        wanted = params.messages * transfer.arrives
        raise cards.CardError(f"{name}: {received} of {wanted} bytes arrived")
    return {
        f"{name}_bytes_per_s": total / elapsed,
        f"{name}_seconds": elapsed,
        f"{name}_agent_cpu_ms_per_kib": agent * 1000 / (total / 1024),
        f"{name}_agent_cpu": agent / elapsed,
        f"{name}_module_cpu": module / elapsed,
    }


def _both_ways(
    up: Transfer, down: Transfer, card_c: socket.socket, wiring: Wiring, params: Params
) -> dict[str, float]:
    """Uplink and downlink at the same time; the combined rate. The downlink comes
    from card C, so that B's bytes are the uplink's alone (version 1 has no
    delimiters)."""
    total = 2 * params.messages * params.size
    agent_start = meter.server_cpu(wiring.agent_pid)
    started = time.monotonic()
    received = _pump([up, down], params, [card_c])
    elapsed = time.monotonic() - started
    agent = meter.server_cpu(wiring.agent_pid).cpu - agent_start.cpu
    wanted = [params.messages * up.arrives, params.messages * down.arrives]
    if received != wanted:
        raise cards.CardError(f"both ways: {received} of {wanted} bytes arrived")
    return {
        "both_bytes_per_s": total / elapsed,
        "both_seconds": elapsed,
        "both_agent_cpu_ms_per_kib": agent * 1000 / (total / 1024),
    }


def _pump(
    transfers: list[Transfer], params: Params, acks: list[socket.socket]
) -> list[int]:
    """Write each transfer's unit ``messages`` times, at most ``window`` messages in
    flight each, all at once; return the bytes that arrived at each sink."""
    selector = selectors.DefaultSelector()
    for index, transfer in enumerate(transfers):
        selector.register(transfer.sink, selectors.EVENT_READ, index)
        transfer.sink.settimeout(0)
    received = [0] * len(transfers)
    sent = [0] * len(transfers)
    deadline = time.monotonic() + params.timeout
    try:
        while any(
            got < params.messages * transfer.arrives
            for got, transfer in zip(received, transfers, strict=True)
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{received} bytes arrived in {params.timeout:g} s")
            for index, transfer in enumerate(transfers):
                sent[index] += _top_up(transfer, sent[index], received[index], params)
            for key, _events in selector.select(timeout=0.5):
                chunk = transfers[key.data].sink.recv(1 << 16)
                if not chunk:
                    raise cards.CardError("connection closed during the transfer")
                received[key.data] += len(chunk)
            for sock in acks:
                _drain(sock)
    finally:
        selector.close()
        for transfer in transfers:
            transfer.sink.settimeout(5.0)
    return received


def _top_up(transfer: Transfer, sent: int, received: int, params: Params) -> int:
    """Write as many messages as the window allows; how many were written."""
    in_flight = sent - received // transfer.arrives
    if sent >= params.messages or in_flight >= params.window:
        return 0
    count = min(params.window - in_flight, params.messages - sent)
    transfer.source.sendall(transfer.unit * count)
    return count


def _drain(sock: socket.socket) -> None:
    """Discard what has arrived on ``sock`` (acknowledgements) without waiting."""
    sock.settimeout(0)
    with contextlib.suppress(BlockingIOError):
        for _ in range(64):
            if not sock.recv(1 << 16):
                break
    sock.settimeout(5.0)


def measure_reader(params: Params) -> Result:
    """The AT reader alone: MB/s on pushed payloads and on buffered reads."""
    figures = run_load(_reader_rates, params.reader_megabytes, timeout=params.timeout)
    return Result("at_reader", "in-process", figures, span=1.0)


def _reader_rates(megabytes: int) -> dict[str, float]:
    """MB/s of the reader fed the two shapes of received data, in 512-byte reads."""
    from modembridge.atreader import ATReader, Payload  # noqa: PLC0415

    data = payload_of(1460)
    pushed = b"\r\n+IPD1460\r\n" + data
    command = "AT+CIPRXGET=2,0,1460"
    header = b"\r\r\n+CIPRXGET: 2,0,1460,0\r\n"
    buffered = command.encode() + header + data + b"\r\n\r\nOK\r\n"
    count = megabytes * (1 << 20) // len(data)
    figures = {}
    for name, unit, pending in (
        ("push", pushed, None),
        ("buffered", buffered, command),
    ):
        reader = ATReader()
        own_start = meter.own_cpu()
        started = time.perf_counter()
        carried = 0
        for _ in range(count):
            if pending is not None:
                reader.command_sent(pending)
            for offset in range(0, len(unit), 512):
                for event in reader.feed(unit[offset : offset + 512]):
                    if isinstance(event, Payload):
                        carried += len(event.data)
        elapsed = time.perf_counter() - started
        if carried != count * len(data):
            raise RuntimeError(f"reader yielded {carried} of {count * len(data)} bytes")
        figures[f"{name}_mb_per_s"] = carried / elapsed / 1e6
        figures[f"{name}_cpu"] = meter.share_of_core(own_start, meter.own_cpu())
    return figures
