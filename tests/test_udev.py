"""The udev rules: one source, and what they do to recorded device dumps.

The dumps under tests/data/udev are built from documented facts (no hardware was
available); each file says so in its header.
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

from modembridge import udev
from modembridge.cli import main

ROOT = Path(__file__).resolve().parent.parent
DUMPS = Path(__file__).resolve().parent / "data" / "udev"


def outcome_of(name: str, action: str = "add") -> udev.Outcome:
    dump = udev.DeviceDump.from_text((DUMPS / f"{name}.txt").read_text())
    return udev.RuleSet(udev.rules_text()).apply(dump, action)


def test_committed_rules_file_is_the_generated_text() -> None:
    committed = (ROOT / "udev" / udev.RULES_NAME).read_text()
    assert committed == udev.rules_text(), "run `modembridge udev print` into udev/"


@pytest.mark.parametrize(
    ("dump", "link"),
    [
        ("sim7600-if00-diag", "modembridge/sim7600-1-1.2/diag"),
        ("sim7600-if01-nmea", "modembridge/sim7600-1-1.2/nmea"),
        ("sim7600-if02-at", "modembridge/sim7600-1-1.2/at"),
        ("sim7600-if03-modem", "modembridge/sim7600-1-1.2/modem"),
        ("sim7600-if04-audio", "modembridge/sim7600-1-1.2/audio"),
        ("ec25-if00-diag", "modembridge/ec20-3-4/diag"),
        ("ec25-if01-nmea", "modembridge/ec20-3-4/nmea"),
        ("ec25-if02-at", "modembridge/ec20-3-4/at"),
        ("ec25-if03-modem", "modembridge/ec20-3-4/modem"),
        ("ec20r1-if02-at", "modembridge/ec20-1-2/at"),
    ],
)
def test_module_port_gets_its_link_group_and_modemmanager_tag(
    dump: str, link: str
) -> None:
    outcome = outcome_of(dump)

    assert outcome.symlinks == [link]
    assert (outcome.group, outcome.mode) == ("dialout", "0660")
    assert outcome.env["ID_MM_DEVICE_IGNORE"] == "1"
    assert outcome.env["MODEMBRIDGE_ROLE"] == link.rsplit("/", 1)[1]


@pytest.mark.parametrize(
    ("dump", "model"),
    [("sim7600-if02-at", "sim7600"), ("ec25-if02-at", "ec20")],
)
def test_module_port_is_tagged_with_its_model(dump: str, model: str) -> None:
    assert outcome_of(dump).env["MODEMBRIDGE_MODEL"] == model


@pytest.mark.parametrize("dump", ["sim7600-usb-device", "ec25-usb-device"])
def test_modemmanager_is_kept_off_the_whole_usb_device(dump: str) -> None:
    outcome = outcome_of(dump)

    assert outcome.env.get("ID_MM_DEVICE_IGNORE") == "1"
    assert outcome.symlinks == []


@pytest.mark.parametrize("dump", ["ftdi-ft232r", "ch340", "gobi2000-if02"])
def test_unrelated_serial_devices_are_left_alone(dump: str) -> None:
    outcome = outcome_of(dump)

    assert outcome.symlinks == []
    assert outcome.group is None
    assert outcome.mode is None
    assert "ID_MM_DEVICE_IGNORE" not in outcome.env
    assert "MODEMBRIDGE_MODEL" not in outcome.env


def test_remove_events_set_nothing() -> None:
    outcome = outcome_of("sim7600-if02-at", action="remove")

    assert outcome.symlinks == []
    assert outcome.group is None


def test_every_role_of_the_table_has_a_rule() -> None:
    text = udev.rules_text()

    for port_map in udev.PORT_MAPS:
        for usb in port_map.facts.usb_ids:
            for role in port_map.roles.values():
                prefix = f'ATTRS{{idVendor}}=="{usb.vendor:04x}"'
                lines = [ln for ln in text.splitlines() if prefix in ln]
                assert any(ln.endswith(f'"{role}"') for ln in lines), (usb, role)


def test_the_at_role_is_on_the_models_at_interface() -> None:
    for port_map in udev.PORT_MAPS:
        for usb in port_map.facts.usb_ids:
            assert port_map.roles[usb.at_interface] == "at"


@pytest.mark.parametrize(
    ("vendor", "product", "interface", "expected"),
    [
        (0x1E0E, 0x9001, 2, ("sim7600", "at")),
        (0x1E0E, 0x9001, 4, ("sim7600", "audio")),
        (0x1E0E, 0x9001, 5, None),
        (0x2C7C, 0x0125, 3, ("ec20", "modem")),
        (0x2C7C, 0x0125, 4, None),
        (0x0403, 0x6001, 0, None),
    ],
)
def test_role_of_usb_interface(
    vendor: int, product: int, interface: int, expected: tuple[str, str] | None
) -> None:
    assert udev.role_of(vendor, product, interface) == expected


def test_evaluator_matches_parent_keys_on_one_device_only() -> None:
    # idVendor lives on the USB device and bInterfaceNumber on the interface:
    # udev never matches both in one rule, and neither may the evaluator.
    rule_set = udev.RuleSet(
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="1e0e", ATTRS{bInterfaceNumber}=="02", '
        'SYMLINK+="wrong"\n'
        'SUBSYSTEM=="tty", ATTRS{bInterfaceNumber}=="02", SYMLINK+="right"\n'
    )
    dump = udev.DeviceDump.from_text((DUMPS / "sim7600-if02-at.txt").read_text())

    assert rule_set.apply(dump).symlinks == ["right"]


def test_evaluator_refuses_what_it_cannot_read() -> None:
    with pytest.raises(udev.RuleSyntaxError, match="cannot read"):
        udev.RuleSet('SUBSYSTEM=="tty", SYMLINK+=unquoted\n')


def test_dump_without_a_device_section_is_refused() -> None:
    with pytest.raises(udev.RuleSyntaxError, match="looking at device"):
        udev.DeviceDump.from_text("E: ID_VENDOR_ID=1e0e\n")


def test_cli_print_writes_the_rules() -> None:
    result = CliRunner().invoke(main, ["udev", "print"])

    assert result.exit_code == 0
    assert result.output == udev.rules_text()


def test_cli_install_print_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["udev", "install", "--print", "--dest", str(tmp_path)]
    )

    assert result.exit_code == 0
    assert result.output == udev.rules_text()
    assert list(tmp_path.iterdir()) == []


def test_cli_install_into_a_directory(tmp_path: Path) -> None:
    dest = tmp_path / "rules.d"

    result = CliRunner().invoke(main, ["udev", "install", "--dest", str(dest)])

    assert result.exit_code == 0, result.output
    assert (dest / udev.RULES_NAME).read_text() == udev.rules_text()
    assert "reloaded" not in result.output


def test_cli_install_into_the_system_directory_needs_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)

    result = CliRunner().invoke(main, ["udev", "install"])

    assert result.exit_code != 0
    assert "needs root" in result.output


def test_cli_install_without_udev_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    dest = tmp_path / "rules.d"

    result = CliRunner().invoke(
        main, ["udev", "install", "--dest", str(dest), "--reload"]
    )

    assert result.exit_code != 0
    assert "udevadm is not installed" in result.output
    assert not dest.exists()


def test_cli_match_describes_module_and_adapter() -> None:
    result = CliRunner().invoke(
        main,
        [
            "udev",
            "match",
            str(DUMPS / "sim7600-if02-at.txt"),
            str(DUMPS / "ftdi-ft232r.txt"),
        ],
    )

    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "/dev/modembridge/sim7600-1-1.2/at" in lines[0]
    assert "ModemManager ignores it" in lines[0]
    assert lines[1].endswith("no modembridge rule matches")


def test_every_dump_says_it_was_built_from_documented_facts() -> None:
    for path in DUMPS.glob("*.txt"):
        assert "not recorded from hardware" in path.read_text(), path


def test_cli_match_a_live_device_through_udevadm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in udevadm that answers from a dump, as the real one does on a bench.
    dump = (DUMPS / "ec25-if02-at.txt").read_text()
    walk = "\n".join(ln for ln in dump.splitlines() if not ln.startswith("E: "))
    properties = "\n".join(ln[3:] for ln in dump.splitlines() if ln.startswith("E: "))
    (tmp_path / "walk.txt").write_text(walk + "\n")
    (tmp_path / "properties.txt").write_text(properties + "\n")
    udevadm = tmp_path / "udevadm"
    udevadm.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f'  *--attribute-walk*) cat "{tmp_path}/walk.txt" ;;\n'
        f'  *--query=property*) cat "{tmp_path}/properties.txt" ;;\n'
        "  *) exit 2 ;;\n"
        "esac\n"
    )
    udevadm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")

    result = CliRunner().invoke(main, ["udev", "match", "--device", "/dev/ttyUSB7"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("/dev/ttyUSB7: /dev/modembridge/ec20-3-4/at;")
