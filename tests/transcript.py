"""Parsing of the recordings in the reference folder (test support)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modembridge.atreader import (
    ATEvent,
    ATReader,
    Echo,
    Final,
    Info,
    Payload,
    Prompt,
    Urc,
)

# Copies of the recordings of real modules kept with the tests.
TRANSCRIPTS = Path(__file__).resolve().parent / "data" / "transcripts"

# Files that write CR and LF as escapes (INDEX.md); the others add CR LF per line.
BYTE_EXACT = ("sim7600-03", "ec20-01", "ec2x-02", "ec25-04")

# ec25-04's header: its last two modem lines are gammu's parsed lines, not bytes.
PARSED_LINES = ("ec25-04",)

# Host commands a recording names only in a comment, because its source did not
# log the command line itself.
COMMANDS_IN_NOTES = {
    "ec25-04": ("(host sent AT+MODE=2", "AT+MODE=2"),
    "sim7600-02": ("(one more AT probe from the host", "AT"),
    "sim7600-12": ("(host sent AT+CIPSEND", "AT+CIPSEND=1,10"),
}

# A line of a capture written by the channel's wire log: a timestamp, then the mark.
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z (?=[<>] )")

SEND = re.compile(r"AT\+(?:CIPSEND|QISEND)=\d+,[1-9]\d*", re.IGNORECASE)
_ESCAPE = re.compile(rb"\\(r|n|\\|x[0-9a-fA-F]{2})")


@dataclass(frozen=True)
class Step:
    """One line of a recording: host bytes, modem bytes, or a note."""

    kind: str
    data: bytes


def unescape(text: str) -> bytes:
    """``\\r``, ``\\n``, ``\\\\`` and ``\\xNN`` turned into their bytes."""

    def byte(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code == b"r":
            return b"\r"
        if code == b"n":
            return b"\n"
        if code == b"\\":
            return b"\\"
        return bytes([int(code[1:], 16)])

    return _ESCAPE.sub(byte, text.encode("latin-1"))


def steps(path: Path) -> list[Step]:
    """The dialogue of one recording, or of a capture the wire log wrote."""
    written = path.read_text(encoding="utf-8").splitlines()
    captured = any(_STAMP.match(line) for line in written)
    lines = [_unstamped(line) for line in written]
    exact = captured or path.name.startswith(BYTE_EXACT)
    parsed = path.name.startswith(PARSED_LINES)
    note = next(
        (v for k, v in COMMANDS_IN_NOTES.items() if path.name.startswith(k)), None
    )
    result = []
    for line in lines:
        mark, text = line[:1], line[2:]
        if mark == "#":
            if note is not None and note[0] in line:
                result.append(Step("host", note[1].encode()))
        elif mark == ">":
            result.append(Step("host", unescape(text).strip()))
        elif mark == "<":
            data = unescape(text)
            terminated = b"\r" in data or b"\n" in data
            if not exact or (parsed and not terminated):
                data += b"\r\n"
            result.append(Step("modem", data))
    return result


def _unstamped(line: str) -> str:
    match = _STAMP.match(line)
    return line[match.end() :] if match else line


def replay(path: Path, *, bytewise: bool) -> list[str]:
    """Feed a recording to a reader, whole or one byte at a time; the events."""
    reader = ATReader()
    events: list[str] = []
    for kind, data in _grouped(steps(path)):
        if kind == "host":
            _host_wrote(reader, data.decode("latin-1"))
            continue
        chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
        for chunk in chunks:
            events.extend(describe(event) for event in reader.feed(chunk))
    return events


def answers(path: Path) -> dict[str, list[bytes]]:
    """What the module printed after each host command, in order, per command."""
    replies: dict[str, list[bytes]] = {}
    command: str | None = None
    for kind, data in _grouped(steps(path)):
        if kind == "host":
            text = data.decode("latin-1")
            command = text if text.upper().startswith("AT") else None
        elif command is not None:
            replies.setdefault(command, []).append(data)
            command = None
    return replies


def _grouped(all_steps: list[Step]) -> Iterator[tuple[str, bytes]]:
    modem = b""
    for step in all_steps:
        if step.kind == "modem":
            modem += step.data
            continue
        if modem:
            yield "modem", modem
            modem = b""
        yield step.kind, step.data
    if modem:
        yield "modem", modem


def _host_wrote(reader: ATReader, text: str) -> None:
    # A host line that is no command is the payload written after a prompt.
    if text.upper().startswith("AT"):
        reader.command_sent(text, expects_prompt=SEND.fullmatch(text) is not None)


def describe(event: ATEvent) -> str:
    """One event as a short line a person can compare with the recording."""
    match event:
        case Echo(line):
            return f"echo {line}"
        case Info(line):
            return f"info {line}"
        case Final(line):
            return f"final {line}"
        case Urc(line):
            return f"urc {line}"
        case Prompt():
            return "prompt"
        case Payload(header, data):
            return f"payload {header} {data!r}"
    raise AssertionError(event)
