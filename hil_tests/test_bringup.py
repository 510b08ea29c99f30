"""Bring-up and identity: every module answers, registers and gets a bearer."""

import os
import re

import pytest

from modembridge import discovery
from modembridge.modem import Modem, SimState
from modembridge.testbench import Bench


async def test_every_module_is_ready_registered_with_a_bearer(
    modems: list[Modem],
) -> None:
    for modem in modems:
        assert await modem.sim_state() is SimState.READY, modem.port
        assert (await modem.registration()).registered, modem.port
        assert await modem.bearer_active(), modem.port


async def test_identity_is_plausible(modem: Modem) -> None:
    identity = await modem.identify()

    assert identity.model
    assert identity.firmware
    assert re.fullmatch(r"\d{15}", identity.imei), identity.imei
    assert identity.iccid is None or re.fullmatch(r"\d{18,20}F?", identity.iccid)


async def test_signal_is_known(modem: Modem) -> None:
    signal = await modem.signal()

    assert signal.dbm is not None, f"+CSQ rssi {signal.rssi}: no signal"


@pytest.mark.model("ec20")
async def test_ec20_is_made_by_quectel(modem: Modem) -> None:
    identity = await modem.identify()

    assert modem.facts.family == "ec20"
    assert "quectel" in identity.manufacturer.lower()


@pytest.mark.model("sim7600")
async def test_sim7600_is_made_by_simcom(modem: Modem) -> None:
    identity = await modem.identify()

    assert modem.facts.family == "sim7600"
    assert "simcom" in identity.manufacturer.lower()


def listed_port(path: str) -> discovery.ModulePort | None:
    """What the USB port listing says about ``path`` (links resolved)."""
    ports = discovery.find_module_ports(with_holders=False)
    found = [p for p in ports if os.path.realpath(p.device) == os.path.realpath(path)]
    return found[0] if found else None


@pytest.mark.hardware
async def test_port_is_the_modules_at_interface(
    modem: Modem, hil_bench: Bench, hil_module: int
) -> None:
    if hil_bench.simulators[hil_module] is not None:
        pytest.skip("a simulated module has no USB interface")

    found = listed_port(modem.port)

    assert found is not None, f"{modem.port} is not a SIM7600 or EC20 USB port"
    assert found.is_at, f"{modem.port} is the {found.role} interface, not AT"
    assert found.family == modem.facts.family
