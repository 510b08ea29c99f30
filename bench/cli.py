"""``python -m bench``: one command per workload, and ``compare``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bench import (
    at_path,
    compare,
    connections,
    decoder,
    heartbeat,
    latency,
    profile,
    throughput,
)
from bench.result import Result

SERVER = click.option(
    "--server",
    "kind",
    type=click.Choice([*compare.KINDS, "relay-v2"]),
    default="relay",
    show_default=True,
    help="Which server to measure (relay-v2: the relay in protocol version 2).",
)
SMOKE = click.option(
    "--smoke", is_flag=True, help="A tiny run that checks the workload works."
)
JSON_OUT = click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the results to this file as JSON.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Benchmark the relay and the AT path; compare the relay with Mosquitto."""


def report(results: list[Result], json_path: Path | None) -> None:
    """Print results with their notes, and write them as JSON if asked."""
    for result in results:
        click.echo(result.line())
        for note in result.notes:
            click.echo(f"  note: {note}")
    if json_path is not None:
        report_json(results, json_path)


@main.command("throughput")
@SERVER
@SMOKE
@JSON_OUT
@click.option("--messages", type=int, help="Messages per sender.")
@click.option("--window", type=int, help="Messages in flight per pair.")
def throughput_command(
    kind: str,
    smoke: bool,
    json_path: Path | None,
    messages: int | None,
    window: int | None,
) -> None:
    """Pairs pushing 64-byte messages: delivered msgs/s and loss."""
    params = throughput.SMOKE if smoke else throughput.FULL
    params = _with(params, messages=messages, window=window)
    report([throughput.measure(kind, params)], json_path)


@main.command("latency")
@SERVER
@SMOKE
@JSON_OUT
def latency_command(kind: str, smoke: bool, json_path: Path | None) -> None:
    """One pair ping-pong: round trip p50/p99 in microseconds."""
    params = latency.SMOKE if smoke else latency.FULL
    report([latency.measure(kind, params)], json_path)


@main.command("connections")
@SERVER
@SMOKE
@JSON_OUT
@click.option("--cards", type=int, multiple=True, help="Idle cards (repeatable).")
def connections_command(
    kind: str, smoke: bool, json_path: Path | None, cards: tuple[int, ...]
) -> None:
    """Idle registered cards: register time, RSS per card, routing to the last."""
    sizes = _connection_sizes(smoke, cards)
    report([connections.measure(kind, params) for params in sizes], json_path)


@main.command("heartbeat")
@SMOKE
@JSON_OUT
@click.option("--cards", type=int, help="Idle cards receiving heartbeats.")
@click.option("--interval", type=int, help="Heartbeat interval given to the relay.")
def heartbeat_command(
    smoke: bool, json_path: Path | None, cards: int | None, interval: int | None
) -> None:
    """Relay only: time per heartbeat round and its effect on a busy pair."""
    params = heartbeat.SMOKE if smoke else heartbeat.FULL
    params = _with(params, cards=cards, interval=interval)
    report([heartbeat.measure(params)], json_path)


@main.command("at_path")
@SMOKE
@JSON_OUT
@click.option("--messages", type=int, help="Messages each way.")
@click.option("--size", type=int, help="Bytes per message.")
def at_path_command(
    smoke: bool, json_path: Path | None, messages: int | None, size: int | None
) -> None:
    """A simulated module, the attach agent and a relay: bytes/s end to end."""
    params = at_path.SMOKE if smoke else at_path.FULL
    report(at_path.measure(_with(params, messages=messages, size=size)), json_path)


@main.command("decoder")
@SMOKE
@JSON_OUT
def decoder_command(smoke: bool, json_path: Path | None) -> None:
    """The relay's request decoder alone: ns per request of common shapes."""
    report([decoder.measure(0.05 if smoke else 1.0)], json_path)


@main.command("profile")
@click.option(
    "--messages", default=200_000, show_default=True, help="Messages per sender."
)
@click.option("--native", is_flag=True, help="Also sample C frames (slows the relay).")
@click.option("--top", default=25, show_default=True, help="Functions to list.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench/results/relay-throughput.txt"),
    show_default=True,
    help="Where py-spy writes the collapsed stacks.",
)
def profile_command(messages: int, native: bool, top: int, output: Path) -> None:
    """Profile the relay with py-spy under the throughput workload."""
    if not profile.py_spy_available():
        raise click.ClickException("py-spy is not installed: pip install py-spy")
    found = profile.profile_throughput(messages, output, native=native)
    for line in found.lines(top):
        click.echo(line)


@main.command("compare")
@SMOKE
@JSON_OUT
@click.option("--rounds", default=3, show_default=True, help="Runs per server.")
@click.option(
    "--workload",
    "workloads",
    type=click.Choice(["throughput", "latency", "connections"]),
    multiple=True,
    help="Workloads to compare (default: all three).",
)
def compare_command(
    smoke: bool, json_path: Path | None, rounds: int, workloads: tuple[str, ...]
) -> None:
    """Relay and Mosquitto alternately, fresh servers: medians and ratios."""
    everything: list[Result] = []
    for name, measure in _comparisons(
        smoke, workloads or ("throughput", "latency", "connections")
    ):
        click.echo(f"== {name}: {rounds} rounds, relay and mosquitto alternately")
        click.echo(f"   load average before: {_load_average()}")
        results = compare.alternate(measure, rounds, click.echo)
        for line in compare.table(results):
            click.echo(line)
        everything += results["relay"] + results["mosquitto"]
    if json_path is not None:
        report_json(everything, json_path)


def _load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages: how shared it was."""
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def report_json(results: list[Result], json_path: Path) -> None:
    """Write results as JSON."""
    rows = [dataclasses.asdict(result) for result in results]
    json_path.write_text(json.dumps(rows, indent=2) + "\n")


def _comparisons(
    smoke: bool, workloads: tuple[str, ...]
) -> list[tuple[str, Callable[[str], Result]]]:
    """(title, measure by server kind) for each workload asked for."""
    chosen: list[tuple[str, Callable[[str], Result]]] = []
    if "throughput" in workloads:
        params = throughput.SMOKE if smoke else throughput.FULL
        chosen.append(("throughput", lambda kind: throughput.measure(kind, params)))
    if "latency" in workloads:
        lat = latency.SMOKE if smoke else latency.FULL
        chosen.append(("latency", lambda kind: latency.measure(kind, lat)))
    if "connections" in workloads:
        chosen += [
            (f"connections {size.cards}", _connections_measure(size))
            for size in _connection_sizes(smoke, ())
        ]
    return chosen


def _connections_measure(params: connections.Params) -> Callable[[str], Result]:
    """A measure of one connections size, by server kind."""
    return lambda kind: connections.measure(kind, params)


def _connection_sizes(smoke: bool, cards: tuple[int, ...]) -> list[connections.Params]:
    """The connections sizes to run."""
    if cards:
        return [connections.Params(cards=count) for count in cards]
    if smoke:
        return [connections.SMOKE]
    return [connections.SMALL, connections.LARGE]


def _with(params: Any, **changes: int | None) -> Any:
    """``params`` with the options the user gave replaced."""
    given = {name: value for name, value in changes.items() if value is not None}
    return dataclasses.replace(params, **given)
