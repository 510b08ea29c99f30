"""The wire log: one record per line, CR and LF visible, prompts before replies."""

from __future__ import annotations

from pathlib import Path

import pytest

from modembridge.wirelog import MAX_HELD, WIRE, WireLog, visible


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(WIRE, logger="modembridge.wirelog")
    return caplog


def test_control_bytes_are_made_visible() -> None:
    assert visible(b"AT\r\r\n\x00\x1a\\") == "AT\\r\\r\\n\\x00\\x1a\\\\"


def test_a_line_cut_across_reads_is_one_record(
    records: pytest.LogCaptureFixture,
) -> None:
    wire = WireLog("modem[ttyUSB2]")

    wire.received(b"\r\n+CS")
    wire.received(b"Q: 19,99\r\n\r\nOK\r\n")

    assert records.messages == [
        "modem[ttyUSB2]: < \\r\\n",
        "modem[ttyUSB2]: < +CSQ: 19,99\\r\\n",
        "modem[ttyUSB2]: < \\r\\n",
        "modem[ttyUSB2]: < OK\\r\\n",
    ]


def test_the_prompt_is_recorded_before_the_payload(
    records: pytest.LogCaptureFixture,
) -> None:
    wire = WireLog("modem[ttyUSB2]")

    wire.sent(b"AT+QISEND=0,2\r")
    wire.received(b"\r\n> ")
    wire.sent(b"hi")

    assert records.messages[-2:] == ["modem[ttyUSB2]: < > ", "modem[ttyUSB2]: > hi"]


def test_a_long_run_without_lf_is_not_held(records: pytest.LogCaptureFixture) -> None:
    wire = WireLog("modem[ttyUSB2]")

    wire.received(b"x" * (MAX_HELD + 1))

    assert records.messages == ["modem[ttyUSB2]: < " + "x" * (MAX_HELD + 1)]


def test_transcript_lines_carry_a_timestamp_and_the_direction(tmp_path: Path) -> None:
    path = tmp_path / "wire.log"
    wire = WireLog("modem[ttyUSB2]", path)

    wire.sent(b"AT\r")
    wire.received(b"\r\nOK\r\n\r\nRDY")
    wire.note("module reset by the test")
    wire.close()

    lines = path.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:4]] == [
        "> AT\\r",
        "< \\r\\n",
        "< OK\\r\\n",
        "< \\r\\n",
    ]
    assert lines[4] == "# module reset by the test"
    assert lines[5].endswith(" < RDY")
    stamp = lines[0].split(" ")[0]
    assert stamp[:4].isdigit()
    assert stamp.endswith("Z")
