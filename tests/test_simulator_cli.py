"""``modembridge simulate`` as a user runs it: a real process on a real pty."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from modembridge.cli.simulate import parse_duration

COMMAND = [sys.executable, "-c", "from modembridge.cli import main; main()", "simulate"]


def exchange(port: serial.Serial, line: bytes, until: bytes) -> bytes:
    """Write ``line`` and read until ``until`` (blocking, with the port's timeout)."""
    port.write(line)
    answer: bytes = port.read_until(until)
    return answer


@contextlib.contextmanager
def simulating(*args: str, stop: int = signal.SIGTERM) -> Iterator[str]:
    """Run ``modembridge simulate`` with ``args``; the path it printed first.

    On leaving, the process gets ``stop`` and must exit with status 0.
    """
    process = subprocess.Popen([*COMMAND, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
        process.send_signal(stop)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_durations() -> None:
    assert parse_duration("80ms") == pytest.approx(0.08)
    assert parse_duration("3s") == 3.0
    assert parse_duration("1.5") == 1.5
    assert parse_duration("2m") == 120.0
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_prints_the_path_first_and_stops_on_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "ttySIM0"
    options = ("--model", "ec20", "--link", str(link), "--latency", "5ms")
    with simulating(*options) as path:
        assert path == str(link)
        assert os.readlink(link).startswith("/dev/pts/")
        with serial.Serial(path, 115200, timeout=3) as port:
            assert exchange(port, b"ATE0\r", b"OK\r\n").endswith(b"ATE0\r\r\nOK\r\n")
            assert exchange(port, b"AT+CGMM\r", b"OK\r\n") == b"\r\nEC20F\r\n\r\nOK\r\n"
    assert not link.exists()


def test_start_faults_from_flags() -> None:
    options = ("--no-sim", "--imei", "123456789012345", "--no-signal")
    with simulating(*options, stop=signal.SIGINT) as path:
        assert path.startswith("/dev/pts/")
        with serial.Serial(path, 115200, timeout=3) as port:
            exchange(port, b"ATE0\r", b"OK\r\n")
            assert exchange(port, b"AT+CGSN\r", b"OK\r\n") == (
                b"\r\n123456789012345\r\n\r\nOK\r\n"
            )
            assert exchange(port, b"AT+CPIN?\r", b"inserted\r\n") == (
                b"\r\n+CME ERROR: SIM not inserted\r\n"
            )
            assert (
                exchange(port, b"AT+CSQ\r", b"OK\r\n")
                == b"\r\n+CSQ: 99,99\r\n\r\nOK\r\n"
            )


def test_bad_flag_values_are_usage_errors() -> None:
    result = subprocess.run(
        [*COMMAND, "--sim-busy", "soon"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "not a duration" in result.stderr
    result = subprocess.run(
        [*COMMAND, "--imei", "12"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "IMEI" in result.stderr


def test_control_socket_reboots_the_module(tmp_path: Path) -> None:
    link, control = tmp_path / "ttySIM1", tmp_path / "sim.ctl"
    with simulating("--link", str(link), "--control", str(control)) as path:
        assert path == str(link)
        with serial.Serial(str(link), 115200, timeout=3) as port:
            assert exchange(port, b"ATE0\r", b"OK\r\n").endswith(b"ATE0\r\r\nOK\r\n")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(control))
            sock.sendall(b"reboot 0.3\n")
            assert sock.recv(100) == b"ok\n"
        wait_until(lambda: not link.exists())
        wait_until(link.exists)
        with serial.Serial(str(link), 115200, timeout=3) as port:
            assert exchange(port, b"AT\r", b"OK\r\n").endswith(b"AT\r\r\nOK\r\n")
    assert not control.exists()
