"""Recovery: after each fault the simulator can inject, the card comes back by itself.

Each test exchanges a message, injects the fault, hands the agent a message while the
link is broken, and then checks that the card registered again, that the message
arrived exactly once, and that messages pass both ways afterwards.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from modembridge.benchcard import AgentCard, BenchCard, CardError
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


Fault = Callable[[SimulatorHandle, AgentCard], Awaitable[None]]
FAULTS: dict[str, Fault] = {
    "bearer-dropped": drop_bearer,
    "socket-closed-by-network": close_socket,
    "module-rebooted": reboot,
    "module-hung": hang_until_noticed,
}


async def exchange(modem_card: AgentCard, tcp_card: BenchCard, text: str) -> None:
    """One message each way; the host side retries while the card is away."""
    modem_card.send(tcp_card.name, f"up {text}".encode())
    assert (await tcp_card.receive(RECOVERY_SECONDS)).data == f"up {text}".encode()

    async with asyncio.timeout(RECOVERY_SECONDS):
        while True:
            try:
                await tcp_card.send(modem_card.name, f"down {text}".encode())
                break
            except CardError:
                await asyncio.sleep(0.2)
    assert (await modem_card.receive(RECOVERY_SECONDS)).data == f"down {text}".encode()


@pytest.mark.parametrize("fault", FAULTS)
async def test_card_comes_back_after(  # noqa: PLR0917 (fixtures are arguments)
    fault: str,
    modem_card: AgentCard,
    tcp_card: BenchCard,
    simulator: SimulatorHandle,
    relay: RelayInfo,
    timeline: Timeline,
    measure: Measure,
) -> None:
    await exchange(modem_card, tcp_card, "before")
    registrations = relay.connects(modem_card.name)

    timeline.note(f"fault: {fault}")
    began = time.monotonic()
    await FAULTS[fault](simulator, modem_card)
    modem_card.send(tcp_card.name, b"handed over during the fault")

    if registrations is not None:
        await relay.wait_connects(
            modem_card.name, registrations + 1, within=RECOVERY_SECONDS
        )
    await modem_card.wait_online(RECOVERY_SECONDS)
    measure(f"recovery_{fault}_s", round(time.monotonic() - began, 3))
    timeline.note("card online again")

    assert (await tcp_card.receive(RECOVERY_SECONDS)).data == (
        b"handed over during the fault"
    )
    await exchange(modem_card, tcp_card, "after")
    assert await simulator.violations() == []
