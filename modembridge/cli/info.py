"""``modembridge info``: what the module is and how it sees the network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from modembridge.cli.options import (
    check_port,
    configure_logging,
    json_option,
    port_argument,
    run,
    verbose_option,
    wire_log_option,
)
from modembridge.detect import open_modem

LABELS = (
    ("model", "model"),
    ("manufacturer", "manufacturer"),
    ("firmware", "firmware"),
    ("imei", "IMEI"),
    ("iccid", "ICCID"),
    ("sim", "SIM"),
    ("signal", "signal"),
    ("registration", "registration"),
    ("operator", "operator"),
)


@click.command("info", short_help="What the module is and how it sees the network.")
@port_argument
@wire_log_option
@json_option
@verbose_option
def info(*, port: str, wire_log: Path | None, json_output: bool, verbose: int) -> None:
    """Model, firmware, IMEI, ICCID, SIM, signal, registration and operator."""
    configure_logging(verbose)
    check_port(port)
    facts = run(module_facts(port, wire_log), port)
    if json_output:
        click.echo(json.dumps(facts, indent=2))
        return
    for key, label in LABELS:
        click.echo(f"{label:<13} {_shown(facts[key])}")


async def module_facts(port: str, wire_log: Path | None) -> dict[str, Any]:
    """Ask the module everything ``info`` shows; leaves the module as it was."""
    modem = await open_modem(port, wire_log=wire_log)
    try:
        identity = await modem.identify()
        sim = await modem.sim_state()
        signal = await modem.signal()
        registration = await modem.registration()
        operator = await modem.operator()
    finally:
        await modem.close()
    return {
        "port": port,
        "model": identity.model,
        "manufacturer": identity.manufacturer,
        "firmware": identity.firmware,
        "imei": identity.imei,
        "iccid": identity.iccid,
        "sim": sim.value,
        "signal": {"rssi": signal.rssi, "ber": signal.ber, "dbm": signal.dbm},
        "registration": {
            "registered": registration.registered,
            "roaming": registration.roaming,
            **{
                domain: None if stat is None else stat.name.lower()
                for domain, stat in vars(registration).items()
            },
        },
        "operator": operator,
    }


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict) and "dbm" in value:
        dbm = "unknown" if value["dbm"] is None else f"{value['dbm']} dBm"
        return f"{dbm} (CSQ {value['rssi']},{value['ber']})"
    if isinstance(value, dict):
        state = "registered" if value["registered"] else "not registered"
        state += ", roaming" if value["roaming"] else ""
        domains = ", ".join(
            f"{k} {v}"
            for k, v in value.items()
            if k in ("creg", "cgreg", "cereg") and v
        )
        return f"{state} ({domains})"
    return str(value)
