"""Finding the modules' serial ports, which of them is AT, and who holds a port.

Ports come from pyserial's port listing. A port belongs to a module when its USB
vendor and product id are one of ``models.py``'s; its role (diag, nmea, at, modem,
audio) follows from the USB interface number, read from the port's location
(``1-1.2:1.2`` is USB device ``1-1.2``, configuration 1, interface 2), with the
interface table of ``udev.py``, so the rules and the listing cannot disagree.

A busy port is usually held by ModemManager. ``holders`` finds the processes that
have a device open by reading ``/proc/<pid>/fd``; without root it sees only the
caller's own processes, which it says.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serial.tools import list_ports

from modembridge import udev

logger = logging.getLogger(__name__)

MODEMMANAGER = "ModemManager"
SYSFS_USB = Path("/sys/bus/usb/devices")

_LOCATION = re.compile(r"^(?P<path>[^:]+):(?:\d+|x)\.(?P<interface>\d+)$")


@dataclass(frozen=True)
class Holder:
    """A process that has a port open."""

    pid: int
    name: str

    @property
    def is_modemmanager(self) -> bool:
        """ModemManager probes and keeps the AT ports it finds."""
        return self.name == MODEMMANAGER

    def describe(self) -> str:
        """``ModemManager (pid 812)``."""
        return f"{self.name} (pid {self.pid})"


@dataclass(frozen=True)
class ModulePort:
    """One serial port of a supported module."""

    device: str
    family: str
    role: str | None
    vid: int
    pid: int
    usb_path: str | None
    interface: int | None
    holders: tuple[Holder, ...] = field(default=())

    @property
    def is_at(self) -> bool:
        """Whether this is the primary AT port, the one to hand to ``attach``."""
        return self.role == "at"

    @property
    def stable_name(self) -> str | None:
        """The udev rules' name for this port, if the rules made it on this host."""
        if self.usb_path is None or self.role is None:
            return None
        name = f"/dev/{udev.LINK_DIR}/{self.family}-{self.usb_path}/{self.role}"
        return name if os.path.exists(name) else None

    def to_json(self) -> dict[str, Any]:
        """The port as plain JSON values."""
        return {
            "device": self.device,
            "model": self.family,
            "role": self.role,
            "at": self.is_at,
            "usb_id": f"{self.vid:04x}:{self.pid:04x}",
            "usb_path": self.usb_path,
            "interface": self.interface,
            "stable_name": self.stable_name,
            "held_by": [{"pid": h.pid, "name": h.name} for h in self.holders],
        }


def usb_location(location: str | None) -> tuple[str | None, int | None]:
    """Split pyserial's ``location`` into the USB device path and interface number."""
    if not location:
        return None, None
    match = _LOCATION.match(location)
    if match is None:
        return location, None
    return match["path"], int(match["interface"])


def classify(
    info: list_ports.ListPortInfo, sysfs: Path = SYSFS_USB
) -> ModulePort | None:
    """The module port ``info`` describes, or None for any other serial port."""
    if info.vid is None or info.pid is None:
        return None
    usb_path, interface = usb_location(info.location)
    role = None if interface is None else udev.role_of(info.vid, info.pid, interface)
    family = role[0] if role else _family_of(info.vid, info.pid)
    if family is None or not _interfaces_fit(info.vid, info.pid, usb_path, sysfs):
        return None
    return ModulePort(
        device=info.device,
        family=family,
        role=role[1] if role else None,
        vid=info.vid,
        pid=info.pid,
        usb_path=usb_path,
        interface=interface,
    )


def _interfaces_fit(vid: int, pid: int, usb_path: str | None, sysfs: Path) -> bool:
    """False when sysfs shows another interface count than the module has.

    Only USB ids another device shares have a count to check; where sysfs cannot be
    read (another OS, no USB path) the ids decide.
    """
    wanted = udev.INTERFACE_COUNTS.get((vid, pid))
    if wanted is None or usb_path is None:
        return True
    try:
        count = (sysfs / usb_path / "bNumInterfaces").read_text(encoding="ascii")
    except OSError:
        return True
    return count.strip() == str(wanted)


def _family_of(vid: int, pid: int) -> str | None:
    for port_map in udev.PORT_MAPS:
        if any((u.vendor, u.product) == (vid, pid) for u in port_map.facts.usb_ids):
            return port_map.facts.family
    return None


def find_module_ports(
    ports: Iterable[list_ports.ListPortInfo] | None = None,
    *,
    with_holders: bool = True,
) -> list[ModulePort]:
    """The ports of every plugged-in module, sorted by module and interface."""
    infos = list_ports.comports() if ports is None else ports
    found = [port for port in map(classify, infos) if port is not None]
    if with_holders:
        found = [_with_holders(port) for port in found]
    return sorted(found, key=lambda p: (p.usb_path or "", p.interface or 0, p.device))


def _with_holders(port: ModulePort) -> ModulePort:
    return dataclasses.replace(port, holders=tuple(holders(port.device)))


def holders(device: str, proc: Path = Path("/proc")) -> list[Holder]:
    """The processes that have ``device`` open (only the caller's own without root)."""
    try:
        target = os.stat(device)
    except OSError:
        return []

    return [
        Holder(int(entry.name), _process_name(entry))
        for entry in proc.iterdir()
        if entry.name.isdigit() and _process_holds(entry, target)
    ]


def _process_holds(process: Path, target: os.stat_result) -> bool:
    """Whether one of the process's open files is the device ``target`` describes."""
    try:
        fds = list((process / "fd").iterdir())
    except OSError:
        # Another user's process (we are not root), or it just exited.
        return False
    return any(_same_file(fd, target) for fd in fds)


def _same_file(fd: Path, target: os.stat_result) -> bool:
    # Read the link first: statting every socket and pipe of every process is
    # wasted work, and only device nodes can be the port.
    try:
        if not os.readlink(fd).startswith("/dev/"):
            return False
        opened = os.stat(fd)
    except OSError:
        return False
    if stat.S_ISCHR(target.st_mode):
        return stat.S_ISCHR(opened.st_mode) and opened.st_rdev == target.st_rdev
    return (opened.st_dev, opened.st_ino) == (target.st_dev, target.st_ino)


def _process_name(process: Path) -> str:
    with contextlib.suppress(OSError):
        return (process / "comm").read_text(encoding="utf-8", errors="replace").strip()
    return "?"


def can_see_all_processes() -> bool:
    """Whether ``holders`` sees other users' processes (root, or the capability)."""
    return os.geteuid() == 0
