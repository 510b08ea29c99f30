"""The ``modembridge`` command: one click group, one module a sub-command."""

import click

from modembridge import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modembridge")
def main() -> None:
    """Drive SIM7600 and EC20 modules and bridge them to a relay."""


from modembridge.cli import udev as _udev  # noqa: E402

main.add_command(_udev.udev)

from modembridge.cli import listports as _listports  # noqa: E402

main.add_command(_listports.list_ports)

from modembridge.cli import simulate as _simulate  # noqa: E402

main.add_command(_simulate.simulate)

from modembridge.cli import attach as _attach  # noqa: E402

main.add_command(_attach.attach)

from modembridge.cli import demo as _demo  # noqa: E402

main.add_command(_demo.demo)

from modembridge.cli import at as _at  # noqa: E402
from modembridge.cli import doctor as _doctor  # noqa: E402
from modembridge.cli import info as _info  # noqa: E402

main.add_command(_info.info)
main.add_command(_at.at)
main.add_command(_doctor.doctor)
