"""``modembridge simulate``: a simulated SIM7600 or EC20 on a pseudo-terminal.

The first line on standard output is the device path to open; the module runs until
SIGINT or SIGTERM. While it runs, SIGUSR1 makes the network drop the data bearer and
SIGUSR2 reboots the module (its tty vanishes and comes back); ``--control PATH``
takes any fault as a line on a Unix socket.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from typing import Any

import click

from modembridge.cli.options import configure_logging, verbose_option
from modembridge.simulator import SimConfig, SimulatedModem
from modembridge.simulator.control import ControlSocket

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``80ms``, ``3s``, ``1.5`` or ``2m``; raises ValueError."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 80ms, 3s or 1.5")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class Duration(click.ParamType[float]):
    """A duration option: ``80ms``, ``3s``, ``2m``, or plain seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Seconds, or a usage error."""
        if isinstance(value, float | int):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


@click.command("simulate")
@click.option(
    "--model",
    type=click.Choice(["sim7600", "ec20"]),
    default="sim7600",
    show_default=True,
    help="Which module to be.",
)
@click.option(
    "--link",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also reach the port through this symlink; it survives reboots.",
)
@click.option("--latency", type=DURATION, default=None, help="Delay both ways.")
@click.option("--latency-in", type=DURATION, default=0.0, help="Delay host to module.")
@click.option("--latency-out", type=DURATION, default=0.0, help="Delay module to host.")
@click.option(
    "--fragment",
    type=click.IntRange(min=1),
    default=None,
    help="Deliver output in writes of at most N bytes.",
)
@click.option("--no-sim", is_flag=True, help="No SIM inserted.")
@click.option(
    "--sim-busy", type=DURATION, default=0.0, help="SIM busy this long after boot."
)
@click.option("--no-signal", is_flag=True, help="No signal: never registers.")
@click.option(
    "--registration-delay",
    type=DURATION,
    default=0.0,
    help="Registration takes this long after the SIM is ready.",
)
@click.option("--imei", default=None, help="The IMEI to report.")
@click.option(
    "--control",
    type=click.Path(dir_okay=False),
    default=None,
    help="Accept fault commands on this Unix socket (see docs/simulator.md).",
)
@click.option(
    "--signal-level",
    type=click.IntRange(0, 31),
    default=20,
    show_default=True,
    help="The RSSI reported by AT+CSQ.",
)
@verbose_option
def simulate(
    *,
    model: str,
    link: str | None,
    latency: float | None,
    latency_in: float,
    latency_out: float,
    fragment: int | None,
    no_sim: bool,
    sim_busy: float,
    no_signal: bool,
    registration_delay: float,
    imei: str | None,
    control: str | None,
    signal_level: int,
    verbose: int,
) -> None:
    """Run a simulated SIM7600 or EC20; print its device path first."""
    configure_logging(verbose)
    if imei is not None and not re.fullmatch(r"\d{15}", imei):
        raise click.BadParameter("an IMEI is 15 digits", param_hint="--imei")
    config = SimConfig(
        model=model,
        link=link,
        latency_in=latency if latency is not None else latency_in,
        latency_out=latency if latency is not None else latency_out,
        fragment=fragment,
        sim_absent=no_sim,
        sim_busy_seconds=sim_busy,
        no_signal=no_signal,
        registration_delay=registration_delay,
        imei=imei,
        signal=signal_level,
    )
    asyncio.run(_serve(config, control))


async def _serve(config: SimConfig, control_path: str | None) -> None:
    """Run the module until SIGINT or SIGTERM."""
    sim = SimulatedModem(config)
    await sim.start()
    control = ControlSocket(sim, control_path) if control_path else None
    if control is not None:
        await control.start()
    sys.stdout.write(sim.path + "\n")
    sys.stdout.flush()

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGUSR1, sim.drop_bearer)
    loop.add_signal_handler(signal.SIGUSR2, sim.reboot_soon)
    try:
        await stopping.wait()
    finally:
        if control is not None:
            await control.stop()
        await sim.stop()
