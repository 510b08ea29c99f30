"""``modembridge udev``: print, install and check the rules that name the ports."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import click

from modembridge import udev as rules


@click.group("udev")
def udev() -> None:
    """Stable /dev/modembridge/... names for the modules, ModemManager kept off."""


@udev.command("print")
def print_rules() -> None:
    """Print the rules file."""
    click.echo(rules.rules_text(), nl=False)


@udev.command("install")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=rules.SYSTEM_RULES_DIR,
    show_default=True,
    help="Directory to write the rules file into.",
)
@click.option("--print", "print_only", is_flag=True, help="Print, do not write.")
@click.option(
    "--reload/--no-reload",
    default=None,
    help="Reload udev and replay events (default: only for the system directory).",
)
def install(dest: Path, print_only: bool, reload: bool | None) -> None:
    """Write the rules (needs root), reload udev and apply them to plugged modules."""
    if print_only:
        click.echo(rules.rules_text(), nl=False)
        return

    system = dest == rules.SYSTEM_RULES_DIR
    if system and os.geteuid() != 0:
        raise click.ClickException(
            f"writing to {dest} needs root: run `sudo modembridge udev install`"
        )
    if reload is None:
        reload = system
    if reload and shutil.which("udevadm") is None:
        # Without udev the rules would do nothing: say so before writing them.
        raise click.ClickException(
            "udevadm is not installed: this host does not run udev "
            "(write the file anyway with --no-reload)"
        )

    try:
        target = rules.write_rules(dest)
    except OSError as exc:
        raise click.ClickException(
            f"cannot write the rules into {dest}: {exc}"
        ) from exc
    click.echo(f"wrote {target}")

    if reload:
        try:
            rules.reload_udev()
        except (OSError, subprocess.CalledProcessError) as exc:
            raise click.ClickException(
                f"udev not reloaded ({exc}): run `udevadm control --reload` and "
                "`udevadm trigger --action=add` yourself, or replug the modules"
            ) from exc
        click.echo("udev reloaded, events replayed: the links appear now")


@udev.command("match")
@click.argument("dumps", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--device", help="A device node to dump with udevadm, e.g. /dev/ttyUSB2.")
def match(dumps: tuple[str, ...], device: str | None) -> None:
    """Show what the rules would do to a device (a live node or a saved dump)."""
    texts = [(name, Path(name).read_text(encoding="utf-8")) for name in dumps]
    if device:
        texts.append((device, _dump_live(device)))
    if not texts:
        raise click.UsageError("give a dump file or --device")

    rule_set = rules.RuleSet(rules.rules_text())
    for name, text in texts:
        outcome = rule_set.apply(rules.DeviceDump.from_text(text))
        click.echo(f"{name}: {_describe(outcome)}")


def _dump_live(device: str) -> str:
    """``udevadm info`` attribute walk and properties of a device node."""
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        raise click.ClickException("udevadm is not installed")
    walk = _udevadm_info(udevadm, device, "--attribute-walk")
    props = _udevadm_info(udevadm, device, "--query=property")
    return walk + "".join(f"E: {line}\n" for line in props.splitlines())


def _udevadm_info(udevadm: str, device: str, what: str) -> str:
    """The output of ``udevadm info WHAT --name=DEVICE``; a click error if it fails."""
    try:
        return subprocess.run(  # noqa: S603 (fixed argv, no shell)
            [udevadm, "info", what, f"--name={device}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise click.ClickException(f"{device}: {exc.stderr.strip()}") from exc


def _describe(outcome: rules.Outcome) -> str:
    """One line: the links, group, mode and ModemManager tag the rules set."""
    ignored = outcome.env.get("ID_MM_DEVICE_IGNORE") == "1"
    if not outcome.symlinks and outcome.group is None and not ignored:
        return "no modembridge rule matches"
    parts = [", ".join(f"/dev/{link}" for link in outcome.symlinks) or "no link"]
    if outcome.group:
        parts.append(f"group {outcome.group} mode {outcome.mode}")
    if ignored:
        parts.append("ModemManager ignores it")
    return "; ".join(parts)
