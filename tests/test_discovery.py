"""Discovery: which ports are a module's, which is AT, and who holds a port."""

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from serial.tools.list_ports_common import ListPortInfo

from modembridge import discovery
from modembridge.cli import listports, main


def port_info(
    device: str, vid: int | None, pid: int | None, location: str | None
) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.location = vid, pid, location
    return info


BENCH = [
    port_info("/dev/ttyUSB0", 0x1E0E, 0x9001, "1-1.2:1.0"),
    port_info("/dev/ttyUSB1", 0x1E0E, 0x9001, "1-1.2:1.1"),
    port_info("/dev/ttyUSB2", 0x1E0E, 0x9001, "1-1.2:1.2"),
    port_info("/dev/ttyUSB3", 0x1E0E, 0x9001, "1-1.2:1.3"),
    port_info("/dev/ttyUSB4", 0x1E0E, 0x9001, "1-1.2:1.4"),
    port_info("/dev/ttyUSB5", 0x0403, 0x6001, "1-1.3"),
    port_info("/dev/ttyUSB6", 0x2C7C, 0x0125, "3-4:1.0"),
    port_info("/dev/ttyUSB7", 0x2C7C, 0x0125, "3-4:1.1"),
    port_info("/dev/ttyUSB8", 0x2C7C, 0x0125, "3-4:1.2"),
    port_info("/dev/ttyUSB9", 0x2C7C, 0x0125, "3-4:1.3"),
    port_info("/dev/ttyS0", None, None, None),
]


def test_bench_listing_finds_both_modules_and_their_at_ports() -> None:
    ports = discovery.find_module_ports(BENCH, with_holders=False)

    at_ports = [(p.device, p.family, p.usb_path) for p in ports if p.is_at]
    assert at_ports == [
        ("/dev/ttyUSB2", "sim7600", "1-1.2"),
        ("/dev/ttyUSB8", "ec20", "3-4"),
    ]
    assert {p.device for p in ports} == {f"/dev/ttyUSB{n}" for n in range(10)} - {
        "/dev/ttyUSB5"
    }


@pytest.mark.parametrize(
    ("vid", "pid", "location", "expected"),
    [
        (0x1E0E, 0x9001, "1-1.2:1.0", ("sim7600", "diag", 0)),
        (0x1E0E, 0x9001, "1-1.2:1.4", ("sim7600", "audio", 4)),
        (0x2C7C, 0x0125, "2-1:1.1", ("ec20", "nmea", 1)),
        (0x05C6, 0x9215, "1-2:1.2", ("ec20", "at", 2)),
        # Interface 5 has no tty role; the port still belongs to the module.
        (0x1E0E, 0x9001, "1-1.2:1.5", ("sim7600", None, 5)),
        # No interface in the location (another OS's listing): model only.
        (0x2C7C, 0x0125, "3-4", ("ec20", None, None)),
    ],
)
def test_classify_module_ports(
    vid: int,
    pid: int,
    location: str,
    expected: tuple[str, str | None, int | None],
    tmp_path: Path,
) -> None:
    port = discovery.classify(
        port_info("/dev/ttyUSB9", vid, pid, location), sysfs=tmp_path
    )

    assert port is not None
    assert (port.family, port.role, port.interface) == expected


@pytest.mark.parametrize(
    ("vid", "pid", "location"),
    [
        (0x0403, 0x6001, "1-1.3"),
        (0x1A86, 0x7523, "1-1.4"),
        (None, None, None),
    ],
)
def test_classify_leaves_other_ports_out(
    vid: int | None, pid: int | None, location: str | None
) -> None:
    assert discovery.classify(port_info("/dev/ttyUSB5", vid, pid, location)) is None


@pytest.mark.parametrize(("interfaces", "listed"), [(" 5\n", True), (" 3\n", False)])
def test_shared_usb_id_is_told_apart_by_its_interface_count(
    tmp_path: Path, interfaces: str, listed: bool
) -> None:
    # 05c6:9215 is an EC20 with five interfaces, or an Acer Gobi 2000.
    (tmp_path / "1-2").mkdir()
    (tmp_path / "1-2" / "bNumInterfaces").write_text(interfaces)
    info = port_info("/dev/ttyUSB2", 0x05C6, 0x9215, "1-2:1.2")

    assert (discovery.classify(info, sysfs=tmp_path) is not None) == listed


def test_port_json_names_model_role_and_at() -> None:
    port = discovery.classify(port_info("/dev/ttyUSB2", 0x1E0E, 0x9001, "1-1.2:1.2"))

    assert port is not None
    assert port.to_json() == {
        "device": "/dev/ttyUSB2",
        "model": "sim7600",
        "role": "at",
        "at": True,
        "usb_id": "1e0e:9001",
        "usb_path": "1-1.2",
        "interface": 2,
        "stable_name": None,
        "held_by": [],
    }


# A child that opens the port, renames itself, says so, and waits for stdin to close.
HOLDER = """
import ctypes, sys
port = open(sys.argv[1], "rb", buffering=0)
ctypes.CDLL(None).prctl(15, sys.argv[2].encode(), 0, 0, 0)
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def pty_name() -> Iterator[str]:
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    yield name
    os.close(master)


@contextlib.contextmanager
def held_by(port: str, name: str) -> Iterator[subprocess.Popen[str]]:
    """A child process named ``name`` holding ``port`` open while the block runs."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, port, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "holding\n"
        yield child
    finally:
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()


def test_holder_of_a_pty_is_the_process_that_opened_it(pty_name: str) -> None:
    with held_by(pty_name, "porthog") as child:
        found = discovery.holders(pty_name)

    assert found == [discovery.Holder(child.pid, "porthog")]
    assert not found[0].is_modemmanager
    assert discovery.holders(pty_name) == []


def test_modemmanager_holding_a_port_is_named(pty_name: str) -> None:
    with held_by(pty_name, "ModemManager") as child:
        found = discovery.holders(pty_name)

    assert [h.is_modemmanager for h in found] == [True]
    assert found[0].describe() == f"ModemManager (pid {child.pid})"


def test_holders_of_a_missing_port_is_empty() -> None:
    assert discovery.holders("/dev/does-not-exist") == []


def test_list_command_without_modules() -> None:
    runner = CliRunner()

    text = runner.invoke(main, ["list"])
    as_json = runner.invoke(main, ["list", "--json"])

    assert text.exit_code == 0
    assert "no SIM7600 or EC20/EC25 module found" in text.output
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == []


def test_list_line_marks_the_at_port_and_names_the_holder() -> None:
    port = discovery.ModulePort(
        device="/dev/ttyUSB2",
        family="sim7600",
        role="at",
        vid=0x1E0E,
        pid=0x9001,
        usb_path="1-1.2",
        interface=2,
        holders=(discovery.Holder(812, "ModemManager"),),
    )

    line = listports._line(port)

    assert line.startswith("/dev/ttyUSB2")
    assert "sim7600" in line
    assert "usb 1-1.2" in line
    assert "busy: ModemManager (pid 812)" in line
    assert line.endswith("<- AT")
