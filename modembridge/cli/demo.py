"""``modembridge demo``: the main job on an embedded bench, with no hardware.

It starts a relay and two simulated modules (a SIM7600 and an EC20) in this process,
attaches them as cards A and B exactly as ``modembridge attach`` would (AT commands
over pseudo-terminals, the modules' own TCP sockets to the relay), sends a few
messages both ways and prints what happened. It exits 0 when every message arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time

import click

from modembridge.agent import Agent, AgentConfig
from modembridge.cli.options import configure_logging, run, verbose_option
from modembridge.simulator import SimConfig, SimulatedModem
from relayserver.server import RelayConfig, RelayServer

MESSAGES = (
    ("A", "B", "hello B, this is A on a SIM7600"),
    ("B", "A", "hello A, B here on an EC20"),
    ("A", "B", "how is the signal?"),
    ("B", "A", "rssi 20, registered home"),
)
WAIT_SECONDS = 20.0


class _Received(io.StringIO):
    """What one card printed: kept, and echoed as it arrives."""

    def __init__(self, card: str) -> None:
        super().__init__()
        self.card = card
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    def write(self, text: str) -> int:
        """Keep and echo each delivered line."""
        for line in text.splitlines():
            self.lines.append(line)
            click.echo(f"  card {self.card} received  {line}")
        self.changed.set()
        return len(text)

    async def wait_for(self, lines: list[str]) -> None:
        """Wait until exactly these lines arrived."""
        while self.lines != lines:
            self.changed.clear()
            await self.changed.wait()


@click.command("demo", short_help="A relay and two simulated cards, no hardware.")
@verbose_option
def demo(*, verbose: int) -> None:
    """Relay + two simulated modules as cards A and B, messages both ways."""
    configure_logging(verbose)
    if not verbose:
        # An in-process relay on loopback needs no tokens; its warning would mislead.
        logging.getLogger("relayserver").setLevel(logging.ERROR)
    delivered, took = run(_demo())
    click.echo(f"{delivered} of {len(MESSAGES)} messages delivered in {took:.1f} s")
    if delivered < len(MESSAGES):
        raise click.ClickException(f"only {delivered} of {len(MESSAGES)} arrived")


async def _demo() -> tuple[int, float]:
    relay = RelayServer(RelayConfig(host="127.0.0.1", port=0, heartbeat=5))
    await relay.start()
    click.echo(f"relay listening on 127.0.0.1:{relay.port}")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(relay.close)
        agents = {}
        for card, model in (("A", "sim7600"), ("B", "ec20")):
            module = SimulatedModem(SimConfig(model=model))
            await module.start()
            stack.push_async_callback(module.stop)
            click.echo(f"simulated {model} on {module.path} -> card {card}")
            agents[card] = await _attached(stack, card, module.path, relay.port)
        return await _exchange(agents)


async def _attached(
    stack: contextlib.AsyncExitStack, card: str, path: str, port: int
) -> tuple[Agent, _Received]:
    received = _Received(card)
    config = AgentConfig(port=path, card=card, server=("127.0.0.1", port))
    agent = Agent(config, stdout=received, status=lambda text: click.echo(f"  {text}"))
    task = asyncio.create_task(agent.run())

    async def stop() -> None:
        agent.stop()
        await task

    stack.push_async_callback(stop)
    async with asyncio.timeout(WAIT_SECONDS):
        await agent.online.wait()
    return agent, received


async def _exchange(agents: dict[str, tuple[Agent, _Received]]) -> tuple[int, float]:
    started = time.monotonic()
    for sender, target, text in MESSAGES:
        click.echo(f"  card {sender} sends to {target}: {text}")
        agents[sender][0].hand_over(f"{target}: {text}")
        await asyncio.sleep(0.2)

    expected = {
        card: [f"{s}: {t}" for s, c, t in MESSAGES if c == card] for card in agents
    }
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_SECONDS):
            for card, (_, received) in agents.items():
                await received.wait_for(expected[card])
    delivered = sum(len(set(agents[c][1].lines) & set(expected[c])) for c in agents)
    return delivered, time.monotonic() - started
