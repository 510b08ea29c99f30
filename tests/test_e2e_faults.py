"""Faults that need the simulator's handle: agents are processes, modules in-process.

``modembridge simulate`` takes signals for a dropped bearer and a reboot, but nothing
for a socket the network closes; so here the two simulated modules run in the test's
own event loop, where ``close_socket`` can be called, and the two ``attach`` agents
are real processes on their pseudo-terminals.
"""

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_e2e_processes import FAST_FLAGS, MODEMBRIDGE, Process, free_port, until

from modembridge.simulator import SimConfig, SimulatedModem
from relayserver.server import RelayConfig, RelayServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
async def modules(tmp_path: Path) -> AsyncIterator[dict[str, SimulatedModem]]:
    modules = {
        "A": SimulatedModem(SimConfig(model="ec20", link=str(tmp_path / "ttyA"))),
        "B": SimulatedModem(SimConfig(model="sim7600", link=str(tmp_path / "ttyB"))),
    }
    for module in modules.values():
        await module.start()
    yield modules
    for module in modules.values():
        await module.stop()


def close_every_socket(module: SimulatedModem) -> None:
    for link in range(module.facts.socket_count):
        module.close_socket(link)


async def test_sockets_closed_by_the_network_and_a_relay_restart(
    modules: dict[str, SimulatedModem],
) -> None:
    port = free_port()
    relay = RelayServer(RelayConfig(host="127.0.0.1", port=port, heartbeat=0.5))
    await relay.start()
    cards: dict[str, Process] = {}
    for name, other in (("A", "B"), ("B", "A")):
        cards[name] = await Process.start(
            f"card {name}",
            *MODEMBRIDGE,
            "attach",
            modules[name].path,
            "--card",
            name,
            "--to",
            other,
            "--server",
            f"127.0.0.1:{port}",
            *FAST_FLAGS,
            stdin=True,
        )
    a, b = cards["A"], cards["B"]
    sent: dict[str, list[str]] = {"A": [], "B": []}

    def send(card: str, text: str) -> None:
        cards[card].write(text)
        sent[card].append(f"{card}: {text}")

    async def all_arrived() -> None:
        await until(lambda: len(b.out) >= len(sent["A"]), "A's messages at B")
        await until(lambda: len(a.out) >= len(sent["B"]), "B's messages at A")
        await asyncio.sleep(0.3)  # a duplicate would show up now
        assert b.out == sent["A"]
        assert a.out == sent["B"]

    try:
        await a.wait_for(lambda: a.count("online") == 1, "online line")
        await b.wait_for(lambda: b.count("online") == 1, "online line")
        send("A", "first from A")
        send("B", "first from B")
        await all_arrived()

        # The network closes A's socket: A opens a new one, nothing else.
        close_every_socket(modules["A"])
        send("A", "after A's socket closed")
        await a.wait_for(lambda: a.count("online") == 2, "reopened socket")
        await all_arrived()

        # Both sockets at once, with messages handed over on both sides.
        close_every_socket(modules["A"])
        close_every_socket(modules["B"])
        for n in range(5):
            send("A", f"A burst {n}")
            send("B", f"B burst {n}")
        await a.wait_for(lambda: a.count("online") == 3, "reopened socket")
        await b.wait_for(lambda: b.count("online") == 2, "reopened socket")
        await all_arrived()

        # The relay goes away and comes back on the same port.
        await relay.close()
        send("B", "while the relay is down")
        relay = RelayServer(RelayConfig(host="127.0.0.1", port=port, heartbeat=0.5))
        await relay.start()
        await a.wait_for(lambda: a.count("online") == 4, "back after relay restart")
        await b.wait_for(lambda: b.count("online") == 3, "back after relay restart")
        await all_arrived()
        assert sorted(relay.cards()) == ["A", "B"]

        # SIGTERM: the agent exits at once, closing socket and bearer.
        a.signal(signal.SIGTERM)
        assert await asyncio.wait_for(a.proc.wait(), 15) == 0
        assert "socket and bearer closed" in a.err[-1]
    finally:
        for card in cards.values():
            await card.stop()
        await relay.close()
    assert not any("Traceback" in line for line in a.err + b.err)


async def test_the_module_is_usable_by_the_next_run(
    modules: dict[str, SimulatedModem],
) -> None:
    port = free_port()
    relay = RelayServer(RelayConfig(host="127.0.0.1", port=port, heartbeat=0.5))
    await relay.start()
    args = ("attach", modules["A"].path, "--card", "A", "--to", "A")
    flags = ("--server", f"127.0.0.1:{port}", *FAST_FLAGS)

    try:
        for run in range(2):
            card = await Process.start(
                "card A", *MODEMBRIDGE, *args, *flags, stdin=True
            )
            card.write(f"to myself, run {run}")
            # Awaited before the loop moves on: the lambda sees this run's card.
            await card.wait_for(lambda: bool(card.out), "message to itself")  # noqa: B023
            assert card.out == [f"A: to myself, run {run}"]
            assert card.proc.stdin is not None
            card.proc.stdin.close()
            assert await asyncio.wait_for(card.proc.wait(), 15) == 0
            await card.stop()
    finally:
        await relay.close()
    assert free_port()  # nothing left bound


async def attach_to_itself(module: SimulatedModem, port: int, *flags: str) -> Process:
    """An ``attach`` of card A that sends to itself, with fast retries and -vv."""
    return await Process.start(
        "card A",
        *MODEMBRIDGE,
        "attach",
        module.path,
        "--card",
        "A",
        "--to",
        "A",
        "--server",
        f"127.0.0.1:{port}",
        "--backoff",
        "0.05",
        "--backoff-max",
        "0.2",
        "-vv",
        *flags,
        stdin=True,
    )


def remedies(card: Process) -> list[str]:
    """The remedy the supervisor chose after each failure, in order."""
    return [line.rsplit("next: ", 1)[1] for line in card.err if "next: " in line]


async def test_a_relay_that_is_down_is_retried_at_the_socket_only(
    modules: dict[str, SimulatedModem],
) -> None:
    port = free_port()
    card = await attach_to_itself(modules["A"], port)
    relay = RelayServer(RelayConfig(host="127.0.0.1", port=port, heartbeat=0.5))
    try:
        # No relay: every open is refused (+QIOPEN: 0,566) while the bearer is up.
        await card.wait_for(lambda: card.count("unreachable") >= 8, "retries")
        card.write("while the relay is down")
        await relay.start()
        await card.wait_for(lambda: card.count("online via") == 1, "online")
        await card.wait_for(lambda: bool(card.out), "delivery")
        assert card.out == ["A: while the relay is down"]
        down = [line for line in card.err if "supervisor: card[A]: relay" in line]
        assert "WARNING" in down[0]
        assert "only the socket is retried" in down[0]
        assert all("DEBUG" in line for line in down[1:]), "\n".join(card.err)
        assert remedies(card) == []
        assert card.count("radio") == card.count("reset") == 0
    finally:
        await card.stop()
        await relay.close()


async def test_a_hung_module_climbs_to_a_reset_and_comes_back(
    modules: dict[str, SimulatedModem],
) -> None:
    port = free_port()
    relay = RelayServer(RelayConfig(host="127.0.0.1", port=port, heartbeat=0.5))
    await relay.start()
    flags = ("--command-timeout", "1", "--silence", "1.5")
    card = await attach_to_itself(modules["A"], port, *flags)
    try:
        await card.wait_for(lambda: card.count("online via") == 1, "online")
        modules["A"].hang()
        card.write("handed over while the module hangs")
        await card.wait_for(lambda: "reset_module" in remedies(card), "a reset")
        modules["A"].resume()
        await card.wait_for(lambda: card.count("online via") == 2, "back online")
        await card.wait_for(lambda: bool(card.out), "delivery")
        card.write("after the reset")
        await card.wait_for(lambda: len(card.out) == 2, "second delivery")

        assert card.out == [
            "A: handed over while the module hangs",
            "A: after the reset",
        ]
        climbed = remedies(card)
        assert climbed[: climbed.index("reset_module")] == [
            "reopen_socket",
            "reopen_socket",
            "reactivate_bearer",
            "reactivate_bearer",
            "cycle_radio",
            "cycle_radio",
        ]
        assert card.count("waiting for the port") >= 1  # the reset rebooted it
    finally:
        await card.stop()
        await relay.close()
