"""Throughput through two relay nodes and NATS, against one relay.

The throughput workload's shape (pairs of cards, 64-byte messages, a window of
messages in flight per pair, the same pump) run in three layouts:

``one``
    one relay, no NATS: every pair on it (the plain throughput workload);
``cross``
    two nodes sharing a nats-server, every sender on node 1 and its receiver on
    node 2: each message crosses NATS and is acknowledged by node 2;
``split``
    two nodes, half of the pairs on each, sender and receiver on the same node:
    what spreading cards over nodes gives when they talk within a node.

Run it with ``python -m bench.cluster`` (``--help`` for the options). Processes are
not pinned to CPUs here: two relays, the nats-server and the load generator share
the machine, which the figures include.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from bench import cards, meter, servers, throughput
from bench.dialects import dialect_for, payload_of
from bench.loadgen import run_load

LAYOUTS = ("one", "cross", "split")


@dataclass(frozen=True)
class Cluster:
    """The processes of one layout: relay ports and every process id to meter."""

    ports: list[int]
    pids: list[int]


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within 15 s")


@contextlib.contextmanager
def running(layout: str) -> Iterator[Cluster]:
    """The relays (and nats-server) of ``layout``, stopped afterwards."""
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as workdir:
        log = (Path(workdir) / "servers.log").open("wb")

        def start(command: list[str], port: int) -> None:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            processes.append(process)
            _wait_listening(port, process)

        try:
            extra: list[list[str]] = [[]]
            if layout != "one":
                nats_port = servers.free_port()
                nats = shutil.which("nats-server") or "nats-server"
                start([nats, "-a", "127.0.0.1", "-p", str(nats_port)], nats_port)
                url = f"nats://127.0.0.1:{nats_port}"
                extra = [["--nats", url, "--node", f"bench-{i}"] for i in (1, 2)]
            ports = []
            for options in extra:
                port = servers.free_port()
                base = servers.relay_options(port, servers.QUIET_HEARTBEAT)
                start([*servers.relay_command(), *base, *options], port)
                ports.append(port)
            # A node answers on its port before it joined the cluster.
            time.sleep(0.5 if layout != "one" else 0)
            yield Cluster(ports, [process.pid for process in processes])
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()


def _wait_reachable(port: int, names: list[str]) -> None:
    """Watch ``names`` from a version 2 card on ``port`` until all are online."""
    sock = cards.open_socket(port, timeout=15.0)
    stream = sock.makefile("rb")
    sock.sendall(b'{"action":"connect","from":"bench-watch","proto":2}')
    stream.readline()
    sock.sendall(json.dumps({"action": "watch", "names": names, "id": 1}).encode())
    waiting = set(names)
    while waiting:
        line = json.loads(stream.readline())
        waiting -= set(line.get("online", []))
        if line.get("presence") == "online":
            waiting.discard(line["card"])
    stream.close()
    sock.close()


def _load(
    layout: str, ports: list[int], params: throughput.Params, pids: list[int]
) -> tuple[dict[str, float], float, float]:
    """The load process: place the pairs by ``layout``, pump, return figures."""
    dialect = dialect_for("relay")
    payload = payload_of(params.size)
    pairs = []
    for index in range(params.pairs):
        if layout == "cross":
            sender_port, receiver_port = ports[0], ports[-1]
        else:
            sender_port = receiver_port = ports[index % len(ports)]
        receiver = cards.register(receiver_port, dialect, f"B{index}")
        sender = cards.register(sender_port, dialect, f"A{index}")
        stream = dialect.send(f"B{index}", payload) * params.messages
        last = dialect.delivery(f"B{index}", payload)
        pairs.append(throughput.Pair(sender, receiver, stream, last))
    if layout == "cross":
        _wait_reachable(ports[0], [f"B{index}" for index in range(params.pairs)])

    sizes = throughput.Sizes(
        len(dialect.send("B0", payload)),
        len(dialect.delivery("B0", payload)),
        len(dialect.sent()),
    )
    starts = [meter.server_cpu(pid) for pid in pids]
    own_start = meter.own_cpu()
    started = time.monotonic()
    # The throughput workload's own pump, so that every layout is measured alike.
    last_delivery = throughput.Run(pairs, params, sizes).until_done()
    own_end = meter.own_cpu()
    ends = [meter.server_cpu(pid) for pid in pids]

    delivered = sum(pair.delivered_bytes for pair in pairs) // sizes.delivery
    for pair in pairs:
        pair.sender.close()
        pair.receiver.close()
    elapsed = max(last_delivery - started, 1e-9)
    figures = {
        "msgs_per_s": delivered / elapsed,
        "delivered": float(delivered),
        "loss": float(params.pairs * params.messages - delivered),
    }
    server_cpu = sum(
        meter.share_of_core(a, b) for a, b in zip(starts, ends, strict=True)
    )
    return figures, server_cpu, meter.share_of_core(own_start, own_end)


def measure(layout: str, params: throughput.Params) -> dict[str, float]:
    """One run of ``layout``: its figures, and the CPU the servers and load took."""
    with running(layout) as cluster:
        figures, server_cpu, own_cpu = run_load(
            _load, layout, cluster.ports, params, cluster.pids,
            timeout=params.timeout + 30,
        )  # fmt: skip
    return {**figures, "server_cpu": server_cpu, "loadgen_cpu": own_cpu}


@click.command()
@click.option("--pairs", default=8, show_default=True, help="Sender/receiver pairs.")
@click.option("--messages", default=5000, show_default=True, help="Per sender.")
@click.option("--window", default=500, show_default=True, help="In flight per pair.")
@click.option("--layout", "layouts", multiple=True, type=click.Choice(LAYOUTS))
def main(pairs: int, messages: int, window: int, layouts: tuple[str, ...]) -> None:
    """Messages per second through one relay and through two nodes and NATS."""
    params = throughput.Params(pairs=pairs, messages=messages, window=window)
    for layout in layouts or LAYOUTS:
        figures = measure(layout, params)
        shown = ", ".join(f"{name}={value:,.4g}" for name, value in figures.items())
        click.echo(f"cluster [{layout}]: {shown}")


if __name__ == "__main__":
    main()
