"""Bad input gets one clear line on stderr and a non-zero exit, never a traceback."""

import fcntl
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

MODEMBRIDGE = [sys.executable, "-c", "from modembridge.cli import main; main()"]


def modembridge(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str, str]:
    """Run the command line; returns (exit code, stdout, stderr)."""
    result = subprocess.run(
        [*MODEMBRIDGE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def one_clear_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    return lines[-1]


class NotAModem:
    """A pseudo-terminal whose far end answers AT like a modem, but is none we know."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        buffer = b""
        while True:
            try:
                data = os.read(self.master, 1024)
            except OSError:
                return
            buffer += data
            while b"\r" in buffer:
                line, buffer = buffer.split(b"\r", 1)
                command = line.strip().upper()
                if command in (b"ATI", b"AT+CGMM"):
                    os.write(self.master, b"\r\nAcme Widget 3000\r\n\r\nOK\r\n")
                elif command:
                    os.write(self.master, b"\r\nOK\r\n")

    def close(self) -> None:
        os.close(self.slave)
        os.close(self.master)


@pytest.fixture
def not_a_modem() -> Iterator[NotAModem]:
    device = NotAModem()
    yield device
    device.close()


def test_a_port_that_does_not_exist(tmp_path: Path) -> None:
    code, _, err = modembridge("info", str(tmp_path / "ttyUSB7"))

    assert code == 1
    assert (
        one_clear_line(err)
        == f"Error: {tmp_path / 'ttyUSB7'}: no such port (is the module plugged in?)"
    )


def test_a_port_that_is_no_serial_device() -> None:
    code, _, err = modembridge("info", "/dev/null")

    assert code == 1
    assert one_clear_line(err).startswith("Error: /dev/null: cannot open it")


def test_a_device_that_is_not_a_modem(not_a_modem: NotAModem) -> None:
    code, _, err = modembridge("info", not_a_modem.path)

    assert code == 1
    line = one_clear_line(err)
    assert "not a supported module: 'Acme Widget 3000" in line
    assert "AT port" in line


def test_a_port_another_program_holds(not_a_modem: NotAModem) -> None:
    held = os.open(not_a_modem.path, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        code, _, err = modembridge("at", not_a_modem.path, "AT")
    finally:
        os.close(held)

    assert code == 1
    line = one_clear_line(err)
    assert line.startswith(
        f"Error: {not_a_modem.path}: busy, in use by another program"
    )
    assert f"(pid {os.getpid()})" in line


@pytest.mark.parametrize(
    "server", ["relay:port", "relay:99999", "re lay:8888", ":8888", "[::1"]
)
def test_a_malformed_server_is_a_usage_error(server: str, tmp_path: Path) -> None:
    code, _, err = modembridge(
        "attach", str(tmp_path / "tty"), "--card", "A", "--server", server
    )

    assert code == 2
    assert "Invalid value for '--server'" in one_clear_line(err)


def test_a_malformed_server_from_the_environment_is_a_usage_error(
    tmp_path: Path,
) -> None:
    code, _, err = modembridge(
        "doctor", str(tmp_path / "tty"), env={"MODEMBRIDGE_SERVER": "relay:port"}
    )

    assert code == 2
    assert "'relay:port' is not HOST:PORT" in one_clear_line(err)


def test_a_missing_port_names_its_environment_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MODEMBRIDGE_PORT"}
    result = subprocess.run(
        [*MODEMBRIDGE, "info"], capture_output=True, text=True, env=env, check=False
    )

    assert result.returncode == 2
    assert "Missing argument 'PORT' (or set MODEMBRIDGE_PORT)." in result.stderr


def test_at_refuses_a_command_that_is_not_one(not_a_modem: NotAModem) -> None:
    code, _, err = modembridge("at", not_a_modem.path, "rm -rf /")

    assert code == 2
    assert "an AT command starts with AT" in one_clear_line(err)


def test_a_listen_address_in_use_is_named_not_the_port(not_a_modem: NotAModem) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        code, _, err = modembridge(
            "attach", not_a_modem.path, "--card", "A", "--listen", address
        )

    assert code == 1
    assert one_clear_line(err) == f"Error: --listen {address}: Address already in use"


def test_at_refuses_a_command_of_several_lines(not_a_modem: NotAModem) -> None:
    code, _, err = modembridge("at", not_a_modem.path, "AT+CSQ\r\nAT+CFUN=0")

    assert code == 2
    assert "one line of printable characters" in one_clear_line(err)


@pytest.mark.parametrize("command", ["attach", "doctor"])
def test_an_apn_that_cannot_stand_in_a_command_is_a_usage_error(
    command: str, tmp_path: Path
) -> None:
    args = ("--card", "A") if command == "attach" else ()
    code, _, err = modembridge(command, str(tmp_path / "tty"), *args, "--apn", 'a"b')

    assert code == 2
    assert "Invalid value for '--apn'" in one_clear_line(err)
