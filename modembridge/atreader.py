"""The AT reader: bytes from a module in, framed events out, no I/O at all.

How it works. The AT port carries two kinds of data. Most of it is text framed by
CR LF: the echo of the command (``CMD\\r`` followed by the reply's own ``\\r\\n``),
information lines, one final result code, and unsolicited result codes (URCs) that
may arrive at any moment, even between a command and its echo. Some lines announce a
payload of ``n`` raw bytes that follows right after them (buffered reads such as
``+CIPRXGET: 2,<l>,<n>,<rest>`` and ``+QIRD: <n>``, and the push headers
``+IPD<n>``, ``+RECEIVE,<l>,<n>`` and ``+QIURC: "recv",<id>,<n>``). After such a line
the reader stops looking for CR LF and counts bytes, so a payload that contains
``OK\\r\\n`` or ``>`` stays data. The send prompt ``>`` (``> `` on Quectel) ends no
line; it is recognised at the start of a line while the pending command waits for it.

Which lines belong to the pending command and which are URCs cannot be told from the
bytes alone. The host says what it sent (:meth:`ATReader.command_sent`); a line that
starts with the command's own answer prefix (``+CSQ:`` for ``AT+CSQ``) belongs to it,
a line from the table of URC prefixes does not, anything else does. With no command
pending every line is a URC. Some prefixes are URCs whatever is pending
(``+CIPRXGET: 1,`` announces data, it never answers a read).

The reader's rule: fed any bytes, split anywhere, it yields events or raises
:class:`~modembridge.errors.ATProtocolError`, nothing else, and the split points do not
change the events. After an error it stays broken until :meth:`ATReader.resync`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modembridge.errors import ATProtocolError

MAX_LINE = 4096
MAX_PAYLOAD = 65536

# Lines that are unsolicited whatever command is pending.
ALWAYS_URC = (
    "RDY",
    "SMS DONE",
    "PB DONE",
    "POWERED DOWN",
    "+CIPRXGET: 1,",
    "+CIPEVENT:",
    "+IPCLOSE:",
    "+QIURC:",
    "+QIND:",
    "+QUSIM:",
    "+CGEV:",
    "+CMTI:",
    "RECV FROM:",
    "+IPD",
    "+RECEIVE,",
    "CLOSED",
)

# Lines that are unsolicited unless they answer the pending command.
URC_UNLESS_ANSWER = (
    "+CPIN:",
    "+CFUN:",
    "+CREG:",
    "+CGREG:",
    "+CEREG:",
    "+NETOPEN:",
    "+NETCLOSE:",
    "+CIPOPEN:",
    "+CIPCLOSE:",
    "+CIPSEND:",
    "+QIOPEN:",
)

SUCCESS_RESULTS = frozenset({"OK", "SEND OK"})
FAILURE_RESULTS = frozenset({"ERROR", "SEND FAIL", "NO CARRIER"})
ERROR_PREFIXES = ("+CME ERROR:", "+CMS ERROR:")

# Headers after which a counted payload follows; the group "n" is its length.
PAYLOAD_HEADERS = (
    re.compile(r"\+CIPRXGET: 2,(?P<link>\d+),(?P<n>\d+),\d+"),
    re.compile(r"\+QIRD: (?P<n>\d+)"),
    re.compile(r'\+QIURC: "recv",(?P<link>\d+),(?P<n>\d+)'),
    re.compile(r"\+IPD(?P<n>\d+)"),
    re.compile(r"\+RECEIVE,(?P<link>\d+),(?P<n>\d+)"),
)

_ANSWER_PREFIX = re.compile(r"([+^$#%][A-Z0-9]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Echo:
    """The module repeating the command it was sent (echo is on)."""

    line: str


@dataclass(frozen=True, slots=True)
class Info:
    """An information line that answers the pending command."""

    line: str


@dataclass(frozen=True, slots=True)
class Final:
    """A final result code: ``OK``, ``ERROR``, ``+CME ERROR: …``, ``SEND OK`` …"""

    line: str

    @property
    def ok(self) -> bool:
        """Whether the command succeeded."""
        return self.line in SUCCESS_RESULTS or self.line.startswith("CONNECT")

    @property
    def code(self) -> int | None:
        """The number of a ``+CME ERROR: <n>`` / ``+CMS ERROR: <n>``."""
        text = self.text
        return int(text) if text.isdigit() else None

    @property
    def text(self) -> str:
        """The words after ``+CME ERROR:`` / ``+CMS ERROR:``, else the whole line."""
        if self.line.startswith(ERROR_PREFIXES):
            return self.line.partition(":")[2].strip()
        return self.line


@dataclass(frozen=True, slots=True)
class Prompt:
    """The ``>`` send prompt: the module now waits for the announced bytes."""


@dataclass(frozen=True, slots=True)
class Urc:
    """An unsolicited result code."""

    line: str


@dataclass(frozen=True, slots=True)
class Payload:
    """Counted raw bytes announced by ``header``; ``solicited`` if a command read it."""

    header: str
    data: bytes
    link: int | None
    solicited: bool


ATEvent = Echo | Info | Final | Prompt | Urc | Payload


def answer_prefixes(command: str) -> tuple[str, ...]:
    """Prefixes of the lines that answer ``command``: ``("+CSQ:",)`` for ``AT+CSQ``.

    A compound line (``ATI;+CSQ;+CPIN?``) is answered by each of its commands.
    """
    parts = command.strip().split(";")
    parts[0] = parts[0][2:] if parts[0][:2].upper() == "AT" else parts[0]
    prefixes = (_ANSWER_PREFIX.match(part.strip()) for part in parts)
    return tuple(f"{m.group(1).upper()}:" for m in prefixes if m is not None)


def is_final(line: str) -> bool:
    """Whether ``line`` is a final result code."""
    return (
        line in SUCCESS_RESULTS
        or line in FAILURE_RESULTS
        or line.startswith(ERROR_PREFIXES)
        or line.startswith("CONNECT")
    )


class ATReader:
    """Turns the bytes of one AT port into :data:`ATEvent` values."""

    def __init__(self, *, max_line: int = MAX_LINE, max_payload: int = MAX_PAYLOAD):
        self._max_line = max_line
        self._max_payload = max_payload
        self._buffer = bytearray()
        self._pos = 0
        self._command: str | None = None
        self._prefixes: tuple[str, ...] = ()
        self._echo_pending = False
        self._wants_prompt = False
        self._payload_left = 0
        self._payload_header = ""
        self._payload_link: int | None = None
        self._payload_solicited = False
        self._error: ATProtocolError | None = None

    @property
    def pending(self) -> str | None:
        """The command whose final result has not arrived yet."""
        return self._command

    def command_sent(self, command: str, *, expects_prompt: bool = False) -> None:
        """The host wrote ``command``; its lines and final result come next."""
        self._command = command.strip()
        self._prefixes = answer_prefixes(command)
        self._echo_pending = True
        self._wants_prompt = expects_prompt

    def command_abandoned(self) -> None:
        """The host gave up waiting; later lines are no longer its answer."""
        self._command = None
        self._prefixes = ()
        self._echo_pending = False
        self._wants_prompt = False

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the port."""
        self._buffer += data

    def resync(self) -> None:
        """Forget buffered bytes and a previous error; start at the next byte."""
        self._buffer.clear()
        self._pos = 0
        self._payload_left = 0
        self._error = None
        self.command_abandoned()

    def feed(self, data: bytes) -> list[ATEvent]:
        """Append ``data`` and return every event it completes.

        On an ``ATProtocolError`` the events before it in ``data`` are lost; the
        channel uses :meth:`next_event` to keep them.
        """
        self.receive_data(data)
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    def next_event(self) -> ATEvent | None:
        """The next complete event, or None until more bytes arrive."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except ATProtocolError as error:
            self._error = error
            raise
        finally:
            self._compact()

    def _next_event(self) -> ATEvent | None:
        while True:
            if self._payload_left:
                return self._maybe_payload()
            if self._wants_prompt and self._buffer.startswith(b">", self._pos):
                self._pos += 1
                self._wants_prompt = False
                return Prompt()
            line = self._maybe_line()
            if line is None:
                return None
            event = self._classify(line) if line else None
            if event is not None:
                return event

    def _maybe_line(self) -> str | None:
        end = self._buffer.find(b"\r\n", self._pos)
        if end < 0:
            # One byte more than a line may hold: its CR, before the LF arrives.
            if len(self._buffer) - self._pos > self._max_line + 1:
                raise ATProtocolError(
                    f"no CR LF in {self._max_line} bytes", bytes(self._buffer[:64])
                )
            return None
        raw = self._buffer[self._pos : end]
        self._pos = end + 2
        if len(raw) > self._max_line:
            raise ATProtocolError(f"line longer than {self._max_line} bytes")
        return raw.decode("latin-1").strip(" \t\r\n")

    def _maybe_payload(self) -> Payload | None:
        available = len(self._buffer) - self._pos
        if available < self._payload_left:
            return None
        data = bytes(self._buffer[self._pos : self._pos + self._payload_left])
        self._pos += self._payload_left
        self._payload_left = 0
        return Payload(
            self._payload_header, data, self._payload_link, self._payload_solicited
        )

    def _classify(self, line: str) -> ATEvent | None:
        if self._echo_pending and line.upper() == (self._command or "").upper():
            self._echo_pending = False
            return Echo(line)
        if is_final(line):
            self.command_abandoned()
            return Final(line)
        solicited = self._belongs_to_command(line)
        if self._announce_payload(line, solicited=solicited):
            return None
        return Info(line) if solicited else Urc(line)

    def _belongs_to_command(self, line: str) -> bool:
        if self._command is None or line.startswith(ALWAYS_URC):
            return False
        if self._prefixes and line.startswith(self._prefixes):
            return True
        return not line.startswith(URC_UNLESS_ANSWER)

    def _announce_payload(self, line: str, *, solicited: bool) -> bool:
        for header in PAYLOAD_HEADERS:
            match = header.fullmatch(line)
            if match is None:
                continue
            digits = match["n"]
            if len(digits) > 9 or int(digits) > self._max_payload:
                raise ATProtocolError(f"payload too long: {line[:80]!r}")
            count = int(digits)
            if count == 0:
                return False
            link = match.groupdict().get("link")
            self._payload_left = count
            self._payload_header = line
            self._payload_link = int(link) if link is not None else None
            self._payload_solicited = solicited
            return True
        return False

    def _compact(self) -> None:
        # Dropping consumed bytes only now and then keeps the per-byte cost low.
        if self._pos and (self._pos >= len(self._buffer) or self._pos > 65536):
            del self._buffer[: self._pos]
            self._pos = 0
