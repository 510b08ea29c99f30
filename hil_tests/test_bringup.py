"""Bring-up and identity: every module answers, registers and gets a bearer."""

import re

import pytest

from modembridge.modem import Modem, SimState


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
