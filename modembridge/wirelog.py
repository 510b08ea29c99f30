"""The raw AT dialogue as log records and, optionally, as a transcript file.

Every byte both ways goes to the ``WIRE`` level (below DEBUG), one record per line:
``modem[ttyUSB2]: > AT+CSQ\\r`` for what the host sent, ``modem[ttyUSB2]: <
+CSQ: 19,99\\r\\n`` for what the module said, with CR and LF written as ``\\r`` and
``\\n`` and any other unprintable byte as ``\\xNN``. The transcript file uses the same
marks behind an ISO timestamp, the format of the recordings in the reference folder,
so a capture from the field can be replayed by the reader tests.

What the module prints is cut at LF. A line that has not ended yet waits until it
does, until the host writes (the ``>`` prompt ends no line), or until ``flush``; a
run of bytes without LF longer than ``MAX_HELD`` (a binary payload) is written as it
comes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TextIO

WIRE = 5
logging.addLevelName(WIRE, "WIRE")

log = logging.getLogger(__name__)

MAX_HELD = 256

SENT = ">"
RECEIVED = "<"

_VISIBLE = {13: "\\r", 10: "\\n", 92: "\\\\"}


def visible(data: bytes) -> str:
    """``data`` as one printable line: CR, LF and other control bytes escaped."""
    parts = []
    for byte in data:
        if byte in _VISIBLE:
            parts.append(_VISIBLE[byte])
        elif 32 <= byte < 127:
            parts.append(chr(byte))
        else:
            parts.append(f"\\x{byte:02x}")
    return "".join(parts)


def split_lines(data: bytes) -> list[bytes]:
    """``data`` cut after every LF; the last piece may be a partial line."""
    pieces = []
    start = 0
    while (end := data.find(b"\n", start)) >= 0:
        pieces.append(data[start : end + 1])
        start = end + 1
    if start < len(data):
        pieces.append(data[start:])
    return pieces


class WireLog:
    """Logs the bytes of one port at ``WIRE`` level and into a transcript file."""

    def __init__(self, name: str, transcript: Path | None = None) -> None:
        self._name = name
        self._file: TextIO | None = None
        self._held = b""
        if transcript is not None:
            self._file = transcript.open("a", encoding="ascii")

    def sent(self, data: bytes) -> None:
        """Record bytes the host wrote."""
        self.flush()
        self._record(SENT, data)

    def received(self, data: bytes) -> None:
        """Record bytes the module printed, one record per line."""
        if self._file is None and not log.isEnabledFor(WIRE):
            return
        held = self._held + data
        end = held.rfind(b"\n") + 1
        if len(held) - end > MAX_HELD:
            end = len(held)
        self._held = held[end:]
        self._record(RECEIVED, held[:end])

    def flush(self) -> None:
        """Record the unfinished line now (before the host writes, on a timeout)."""
        held, self._held = self._held, b""
        self._record(RECEIVED, held)

    def note(self, text: str) -> None:
        """Write a ``#`` comment line into the transcript (a host action, a gap)."""
        if self._file is not None:
            self._file.write(f"# {text}\n")
            self._file.flush()

    def close(self) -> None:
        """Record what is held and close the transcript file; logging goes on."""
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _record(self, mark: str, data: bytes) -> None:
        if not data:
            return
        logging_on = log.isEnabledFor(WIRE)
        if not logging_on and self._file is None:
            return
        stamp = _timestamp()
        for piece in split_lines(data):
            text = visible(piece)
            if logging_on:
                log.log(WIRE, "%s: %s %s", self._name, mark, text)
            if self._file is not None:
                self._file.write(f"{stamp} {mark} {text}\n")
        if self._file is not None:
            self._file.flush()


def _timestamp() -> str:
    now = time.time()
    millis = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"
