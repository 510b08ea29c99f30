"""``modembridge doctor``: why is this bench broken?"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from modembridge.cli.options import (
    apn_option,
    configure_logging,
    json_option,
    port_argument,
    run,
    server_option,
    verbose_option,
    wire_log_option,
)
from modembridge.doctor import Doctor, Verdict

MARKS = {
    Verdict.OK: "ok  ",
    Verdict.WARN: "warn",
    Verdict.BROKEN: "FAIL",
    Verdict.SKIPPED: " -- ",
}


@click.command("doctor", short_help="Find the broken link between module and relay.")
@port_argument
@server_option
@apn_option
@wire_log_option
@json_option
@verbose_option
def doctor(
    *,
    port: str,
    server: tuple[str, int],
    apn: str,
    wire_log: Path | None,
    json_output: bool,
    verbose: int,
) -> None:
    """Check port, module, SIM, signal, registration, bearer and relay, in order."""
    configure_logging(verbose)
    checks = run(Doctor(port, server, apn=apn, wire_log=wire_log).run(), port)
    broken = next((c for c in checks if c.verdict is Verdict.BROKEN), None)

    if json_output:
        records = [
            {**dataclasses.asdict(c), "verdict": c.verdict.value} for c in checks
        ]
        click.echo(json.dumps(records, indent=2))
    else:
        for check in checks:
            click.echo(f"[{MARKS[check.verdict]}] {check.name:<13} {check.detail}")
        if broken is None:
            click.echo("every link holds")
        else:
            click.echo(f"broken link: {broken.name}; try: {broken.hint}")
    if broken is not None:
        sys.exit(1)
