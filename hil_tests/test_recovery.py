"""Recovery: after each fault the simulator can inject, the card comes back by itself.

A fault that breaks the link (bearer dropped, socket closed by the network, module
rebooted, powered off, hung): the test exchanges a message, injects the fault, hands
the agent a message while the link is broken, and checks that the card registered
again, that the message arrived exactly once, and that messages pass both ways after.
A disturbance the module rides out (registration or signal lost for a moment, a slow
serial link that delivers in small pieces): messages pass both ways after it.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from modembridge.benchcard import AgentCard, BenchCard
from modembridge.presence import PresenceWatcher
from modembridge.pytest_plugin import Measure, RelayInfo
from modembridge.testbench import SimulatorHandle
from modembridge.timeline import Timeline

pytestmark = pytest.mark.simulation_only

RECOVERY_SECONDS = 60.0


async def drop_bearer(simulator: SimulatorHandle, card: AgentCard) -> None:
    """The network deactivates the bearer; the module says so in a URC."""
    await simulator.drop_bearer()


async def close_socket(simulator: SimulatorHandle, card: AgentCard) -> None:
    """The network closes the module's socket to the relay."""
    await simulator.close_socket()


async def reboot(simulator: SimulatorHandle, card: AgentCard) -> None:
    """The module restarts: its port vanishes and comes back, echo on again."""
    await simulator.reboot()


async def hang_until_noticed(simulator: SimulatorHandle, card: AgentCard) -> None:
    """The module goes silent until the agent misses the relay's heartbeats."""
    await simulator.hang()
    try:
        await card.wait_offline(RECOVERY_SECONDS)
    finally:
        await simulator.resume()


async def power_cut(simulator: SimulatorHandle, card: AgentCard) -> None:
    """The module loses power for half a second; its port vanishes meanwhile."""
    await simulator.power_off()
    await asyncio.sleep(0.5)
    await simulator.power_on()


Fault = Callable[[SimulatorHandle, AgentCard], Awaitable[None]]
FAULTS: dict[str, Fault] = {
    "bearer-dropped": drop_bearer,
    "socket-closed-by-network": close_socket,
    "module-rebooted": reboot,
    "module-powered-off": power_cut,
    "module-hung": hang_until_noticed,
}


async def lose_registration(simulator: SimulatorHandle) -> None:
    """The network drops the registration for a second."""
    await simulator.lose_registration(1.0)
    await asyncio.sleep(1.2)


async def lose_signal(simulator: SimulatorHandle) -> None:
    """All signal gone for a second, then back."""
    await simulator.set_no_signal(True)
    await asyncio.sleep(1.0)
    await simulator.set_no_signal(False)


# Disturbances a module rides out without losing its socket (in the simulator; a
# real network may take the bearer with the registration).
DISTURBANCES: dict[str, Callable[[SimulatorHandle], Awaitable[None]]] = {
    "registration-lost": lose_registration,
    "signal-lost": lose_signal,
}


async def exchange(
    modem_card: AgentCard, tcp_card: BenchCard, presence: PresenceWatcher, text: str
) -> None:
    """One message each way; the host side's once the relay has the card online."""
    modem_card.send(tcp_card.name, f"up {text}".encode())
    assert (await tcp_card.receive(RECOVERY_SECONDS)).data == f"up {text}".encode()

    await presence.wait_online(modem_card.name, RECOVERY_SECONDS)
    await tcp_card.send(modem_card.name, f"down {text}".encode())
    assert (await modem_card.receive(RECOVERY_SECONDS)).data == f"down {text}".encode()


@pytest.mark.parametrize("fault", FAULTS)
async def test_card_comes_back_after(  # noqa: PLR0917 (fixtures are arguments)
    fault: str,
    modem_card: AgentCard,
    tcp_card: BenchCard,
    simulator: SimulatorHandle,
    relay: RelayInfo,
    relay_presence: PresenceWatcher,
    timeline: Timeline,
    measure: Measure,
) -> None:
    await exchange(modem_card, tcp_card, relay_presence, "before")
    registrations = relay.connects(modem_card.name)
    seen = len(await simulator.violations())

    timeline.note(f"fault: {fault}")
    began = time.monotonic()
    await FAULTS[fault](simulator, modem_card)
    modem_card.send(tcp_card.name, b"handed over during the fault")

    if registrations is not None:
        await relay.wait_connects(
            modem_card.name, registrations + 1, within=RECOVERY_SECONDS
        )
    await modem_card.wait_online(RECOVERY_SECONDS)
    await relay_presence.wait_online(modem_card.name, RECOVERY_SECONDS)
    measure(f"recovery_{fault}_s", round(time.monotonic() - began, 3))
    timeline.note("card online again")

    assert (await tcp_card.receive(RECOVERY_SECONDS)).data == (
        b"handed over during the fault"
    )
    await exchange(modem_card, tcp_card, relay_presence, "after")
    assert (await simulator.violations())[seen:] == []


@pytest.mark.parametrize("disturbance", DISTURBANCES)
async def test_messages_pass_after(  # noqa: PLR0917 (fixtures are arguments)
    disturbance: str,
    modem_card: AgentCard,
    tcp_card: BenchCard,
    simulator: SimulatorHandle,
    relay_presence: PresenceWatcher,
    timeline: Timeline,
) -> None:
    await exchange(modem_card, tcp_card, relay_presence, "before")
    seen = len(await simulator.violations())

    timeline.note(f"disturbance: {disturbance}")
    await DISTURBANCES[disturbance](simulator)
    timeline.note("disturbance over")

    await exchange(modem_card, tcp_card, relay_presence, "after")
    assert (await simulator.violations())[seen:] == []


async def test_slow_link_cut_into_pieces(
    modem_card: AgentCard, tcp_card: BenchCard, simulator: SimulatorHandle
) -> None:
    # Seven-byte pieces split CR LF pairs, prompts and URCs at every position.
    large = bytes(ord("a") + i % 26 for i in range(1600))
    seen = len(await simulator.violations())
    await simulator.degrade_link(latency=0.05, fragment=7)
    try:
        modem_card.send(tcp_card.name, large)
        arrived = await tcp_card.receive_bytes(len(large), within=RECOVERY_SECONDS)
        await tcp_card.send(modem_card.name, large)
        answer = await modem_card.receive_bytes(len(large), within=RECOVERY_SECONDS)
    finally:
        await simulator.restore_link()

    assert arrived == large
    assert answer == large
    assert (await simulator.violations())[seen:] == []
