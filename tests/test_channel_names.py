"""How log lines name a module: unique and readable for every kind of port path."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from scriptedpeer import ScriptedPeer

from modembridge.channel import ATChannel, modem_name, port_name
from modembridge.errors import PortVanished


@pytest.mark.parametrize(
    ("port", "name"),
    [
        ("/dev/ttyUSB2", "ttyUSB2"),
        ("/dev/ttyACM0", "ttyACM0"),
        ("/dev/pts/3", "pts/3"),
        ("/dev/modembridge/sim7600-1-1.2/at", "sim7600-1-1.2/at"),
        ("/dev/modembridge/ec20-3-2/modem", "ec20-3-2/modem"),
        ("/dev/modembridge/ec20-3-2/nmea", "ec20-3-2/nmea"),
        (
            "/dev/serial/by-id/usb-SimTech__Incorporated_SimTech-if02-port0",
            "usb-SimTech__Incorporated_SimTech-if02-port0",
        ),
        (
            "/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.2-port0",
            "pci-0000:00:14.0-usb-0:2:1.2-port0",
        ),
    ],
)
def test_port_name(port: str, name: str) -> None:
    assert port_name(port) == name
    assert modem_name(port) == f"modem[{name}]"


def test_two_modules_with_stable_names_are_told_apart() -> None:
    first = modem_name("/dev/modembridge/sim7600-1-1.2/at")
    second = modem_name("/dev/modembridge/sim7600-1-1.3/at")

    assert first != second


async def test_log_lines_of_a_channel_opened_by_its_udev_name_carry_that_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    peer = ScriptedPeer()
    peer.on("AT", b"\r\nOK\r\n")
    link = tmp_path / "ec20-1-1.4" / "at"
    link.parent.mkdir()
    os.symlink(peer.path, link)
    caplog.set_level(logging.DEBUG, logger="modembridge.channel")
    try:
        channel = await ATChannel.open(str(link))
        await channel.command("AT", seconds=2)
        peer.vanish()
        with pytest.raises(PortVanished):
            await channel.command("AT", seconds=2)
        await channel.close()
    finally:
        await peer.close()

    assert channel.name == "modem[ec20-1-1.4/at]"
    messages = [r.getMessage() for r in caplog.records]
    assert "modem[ec20-1-1.4/at]: opened at 115200 baud" in messages
    assert any(m.startswith("modem[ec20-1-1.4/at]: port vanished") for m in messages)
