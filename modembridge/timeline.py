"""One test's story in time order: every modem's AT dialogue and the relay's cards.

A ``Timeline`` is a logging handler on the ``modembridge`` logger for the length of
one test, at the wire level (below DEBUG), so it sees each byte both ways of every
modem (``modem[ttyUSB2]: > AT+CSQ\\r``) next to the host's milestones. The relay's
card events are added with ``relay_event``, which may be called from the relay's own
thread. ``write`` sorts everything by time into one text file.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from modembridge.wirelog import WIRE

WATCHED_LOGGER = "modembridge"
QUIET_BELOW_INFO = "modembridge.simulator"
MAX_ENTRIES = 200_000
"""Past this the timeline keeps counting but stops storing: a soak test can be long."""


@dataclass(frozen=True, order=True)
class Entry:
    """One line of the timeline: when, who said it, and what."""

    at: float
    source: str
    text: str

    def to_line(self) -> str:
        """``2026-12-03T19:40:01.123Z modem  modem[pts/3]: < OK\\r\\n``."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.at))
        millis = int(self.at * 1000) % 1000
        return f"{stamp}.{millis:03d}Z {self.source:<6} {self.text}"


class Timeline(logging.Handler):
    """Collects log records and relay events of one test; writes them time-ordered."""

    def __init__(self, title: str) -> None:
        super().__init__(level=WIRE)
        self.title = title
        self._entries: list[Entry] = []
        self._dropped = 0
        self._lock_entries = threading.Lock()
        self._logger = logging.getLogger(WATCHED_LOGGER)
        self._saved_level = self._logger.level

    def __enter__(self) -> Timeline:
        """Start listening on the ``modembridge`` logger at the wire level."""
        self._saved_level = self._logger.level
        self._logger.addHandler(self)
        if self._logger.getEffectiveLevel() > WIRE:
            self._logger.setLevel(WIRE)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop listening and put the logger's level back."""
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved_level)

    def emit(self, record: logging.LogRecord) -> None:
        """Keep one log record (the logging machinery calls this)."""
        if record.name.startswith(QUIET_BELOW_INFO) and record.levelno < logging.INFO:
            # The simulator's own chatter would double every line of the dialogue.
            return
        source = "modem" if record.levelno == WIRE else record.levelname.lower()
        self._add(Entry(record.created, source, record.getMessage()))

    def relay_event(self, text: str) -> None:
        """Note something the relay saw (a card connected, went away); thread-safe."""
        self._add(Entry(time.time(), "relay", text))

    def note(self, text: str) -> None:
        """Note a step of the test itself (a fault injected, a message sent)."""
        self._add(Entry(time.time(), "test", text))

    @property
    def entries(self) -> list[Entry]:
        """Everything so far, oldest first."""
        with self._lock_entries:
            return sorted(self._entries)

    def write(self, path: Path) -> Path:
        """Write the timeline as text to ``path`` and return it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"# {self.title}"]
        lines += [entry.to_line() for entry in self.entries]
        if self._dropped:
            lines.append(
                f"# {self._dropped} later entries not kept (over {MAX_ENTRIES})"
            )
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def _add(self, entry: Entry) -> None:
        with self._lock_entries:
            if len(self._entries) < MAX_ENTRIES:
                self._entries.append(entry)
            else:
                self._dropped += 1
