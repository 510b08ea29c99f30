"""``modembridge list``: the modules plugged in, their AT ports, who holds a port."""

from __future__ import annotations

import json

import click

from modembridge import discovery


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, one list.")
def list_ports(as_json: bool) -> None:
    """List the serial ports of SIM7600 and EC20/EC25 modules."""
    ports = discovery.find_module_ports()

    if as_json:
        click.echo(json.dumps([port.to_json() for port in ports], indent=2))
        return
    if not ports:
        click.echo("no SIM7600 or EC20/EC25 module found")
        return

    for port in ports:
        click.echo(_line(port))
    _hints(ports)


def _line(port: discovery.ModulePort) -> str:
    """One port: device, model, role, USB place, stable name and holders."""
    role = port.role or f"interface {port.interface}"
    mark = "  <- AT" if port.is_at else ""
    place = f"usb {port.usb_path}" if port.usb_path else "usb ?"
    parts = [f"{port.device:<14} {port.family:<8} {role:<6} {place}"]
    if port.stable_name:
        parts.append(port.stable_name)
    if port.holders:
        parts.append("busy: " + ", ".join(h.describe() for h in port.holders))
    return "  ".join(parts) + mark


def _hints(ports: list[discovery.ModulePort]) -> None:
    """What to do about what the listing shows."""
    if any(h.is_modemmanager for port in ports for h in port.holders):
        click.echo(
            "ModemManager holds a port: `sudo modembridge udev install` keeps it "
            "off the modules, or `sudo systemctl stop ModemManager`"
        )
    if not discovery.can_see_all_processes():
        click.echo("(not root: only your own processes are shown as holders)")
