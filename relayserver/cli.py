"""The ``relayserver`` command: run the relay until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import click

from relayserver import __version__
from relayserver.auth import load_tokens
from relayserver.codec import DEFAULT_MAX_SIZE
from relayserver.errors import ConfigError
from relayserver.limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_WRITE_HIGH_WATER,
    Limits,
)
from relayserver.server import RelayConfig, RelayServer

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")
NATS_SCHEMES = ("nats", "tls", "ws", "wss")


@click.command()
@click.version_option(__version__, prog_name="relayserver")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to bind.")  # noqa: S104
@click.option("--port", default=8888, show_default=True, help="TCP port (0: any).")
@click.option(
    "--heartbeat",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Seconds between heartbeats to every card.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
)
@click.option(
    "--tokens",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='TOML file of card = "token"; cards must present their token to connect.',
)
@click.option(
    "--max-request-size",
    default=DEFAULT_MAX_SIZE,
    show_default=True,
    type=click.IntRange(min=64),
    help="Bytes; a larger request is answered 'wrong format' and skipped.",
)
@click.option(
    "--max-connections",
    default=DEFAULT_MAX_CONNECTIONS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Connections held at once; more are closed on arrival.",
)
@click.option(
    "--idle-timeout",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Close a card silent for this many heartbeat intervals (0: never).",
)
@click.option(
    "--write-high-water",
    default=DEFAULT_WRITE_HIGH_WATER,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bytes unsent to one card before it is dropped as too slow.",
)
@click.option(
    "--nats",
    metavar="URL",
    help="Join a cluster through this NATS server (several: comma-separated).",
)
@click.option(
    "--node",
    metavar="NAME",
    help="This node's name in the cluster  [default: host name:port]",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    help="Serve Prometheus metrics on http://HOST:PORT/metrics.",
)
def main(
    *,
    host: str,
    port: int,
    heartbeat: float,
    log_level: str,
    tokens: Path | None,
    max_request_size: int,
    max_connections: int,
    idle_timeout: int,
    write_high_water: int,
    nats: str | None,
    node: str | None,
    metrics_port: int | None,
) -> None:
    """Relay messages between 4G cards by name (protocol versions 1 and 2)."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        token_table = None if tokens is None else load_tokens(tokens)
        if nats is not None:
            check_nats_urls(nats)
    except ConfigError as error:
        raise click.UsageError(str(error)) from error
    if node is not None and nats is None:
        raise click.UsageError("--node names a node of a cluster: give --nats too")
    limits = Limits(max_request_size, max_connections, idle_timeout, write_high_water)
    config = RelayConfig(
        host, port, heartbeat, token_table, limits, nats, node, metrics_port
    )
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(config))
    except OSError as error:
        raise click.ClickException(f"cannot start the relay: {error}") from error


async def serve(config: RelayConfig) -> None:
    """Run a relay with ``config`` until SIGINT or SIGTERM, then close it cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = RelayServer(config)
    await server.start()
    _spare_the_collector()
    await stop.wait()
    log.info("relay: stopping, closing %d cards", len(server.cards()))
    await server.close()


def check_nats_urls(urls: str) -> None:
    """Refuse a ``--nats`` value that is not a list of NATS server URLs."""
    for url in urls.split(","):
        parts = urlsplit(url.strip())
        if parts.scheme not in NATS_SCHEMES or not parts.hostname:
            raise ConfigError(
                f"--nats: {url.strip()!r} is not a NATS URL such as "
                "nats://10.0.0.5:4222"
            )


def _spare_the_collector() -> None:
    """Keep the cyclic garbage collector out of the relay's way once it is serving.

    What start-up made lives as long as the process, so it is frozen out of every
    collection. The relay's own objects form no cycles and die by reference counting,
    often a thousand to a read; with a young generation of 700 objects the collector
    would walk them mid-read while they are still alive (7 to 25 % of the relay's
    CPU in the throughput benchmark). A larger generation lets most die first. What
    does survive (the objects of cards registering) moves on after two collections
    instead of ten, so that a collection of the middle generation walks about 30 000
    objects at most, about 10 ms; at ten, 60 ms were seen while 20 000 cards
    registered. Full collections still walk every card's objects, but only after the
    number of long-lived objects grew by a quarter.
    """
    gc.freeze()
    gc.set_threshold(10_000, 2, gc.get_threshold()[2])


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed: the relay is faster on it."""
    try:
        import uvloop  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
