"""The module's side of the AT dialogue: command lines in, payloads after a prompt.

Bytes from the host are consumed as they arrive, by a small state machine:

- ``IDLE``: bytes form a command line, echoed while echo is on. CR ends the line; a
  LF is ignored (hosts that end lines with CR LF work, as on real modules); a lone
  Ctrl-Z or ESC before a line is dropped; backspace removes a character.
- ``BUSY``: a command runs until its final result has been written to the terminal.
- ``PROMPTING``: a send command queued its ``>`` prompt, which the host has not seen.
- ``PAYLOAD``: the prompt is out; exactly the announced number of bytes are payload,
  whatever they contain.

Bytes arriving while ``BUSY`` or ``PROMPTING``, or after a payload is complete and
before its result, break the host's discipline: each such episode is recorded as a
``Violation``. The bytes are kept and handled once the module is ready again (a real
module's UART buffer does the same), so an extra byte after a payload starts the next
command line, as on hardware. Both what waits and the echo of a host that types
without reading are bounded; beyond the bounds bytes are dropped, as a UART overruns.
"""

from __future__ import annotations

import asyncio
import enum
import logging

from modembridge.simulator.transmitter import Transmitter
from modembridge.simulator.violations import Violation, ViolationKind
from modembridge.wirelog import WIRE, split_lines, visible

logger = logging.getLogger(__name__)

MAX_LINE = 1024
MAX_PENDING = 65536
# Echo waiting to be written beyond which more echo is dropped: a host that types
# without reading must not make the module's output grow without bound.
MAX_ECHO_BACKLOG = 65536

_CR = 0x0D
_LF = 0x0A
_BACKSPACE = (0x08, 0x7F)
_IGNORED_BEFORE_LINE = (0x1A, 0x1B, 0x00)


class _State(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    PROMPTING = "prompting"
    PAYLOAD = "payload"


class AtEngine:
    """Turns host bytes into command lines and payloads; watches the host's manners."""

    def __init__(self, transmitter: Transmitter, name: str) -> None:
        self._transmitter = transmitter
        self.name = name
        self.echo = True
        self.muted = False
        self.violations: list[Violation] = []
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._reset_state()

    def _reset_state(self) -> None:
        self._state = _State.IDLE
        self._line = bytearray()
        self._overlong = False
        self._last_was_cr = False
        self._echo_dropped = False
        self._pending = bytearray()
        self._command = ""
        self._after_payload = False
        self._reported: set[ViolationKind] = set()
        self._early = b""
        self._payload = bytearray()
        self._payload_size = 0
        self._payload_ready: asyncio.Future[bytes] | None = None
        self._idle.set()

    def reset(self) -> None:
        """Forget everything in progress: the module restarted; echo is on again."""
        if self._payload_ready is not None and not self._payload_ready.done():
            self._payload_ready.cancel()
        while not self._lines.empty():
            self._lines.get_nowait()
        self.echo = True
        self._reset_state()

    @property
    def busy(self) -> bool:
        """True from the end of a command line until its final result is written."""
        return self._state is not _State.IDLE

    async def next_line(self) -> str:
        """The next complete command line, without its CR."""
        return await self._lines.get()

    async def wait_idle(self) -> None:
        """Return once no command is running (its final result is on the wire)."""
        await self._idle.wait()

    def feed(self, data: bytes) -> None:
        """Take bytes the host wrote."""
        if self.muted:
            return
        if logger.isEnabledFor(WIRE):
            for piece in split_lines(data):
                logger.log(WIRE, "modem[%s]: > %s", self.name, visible(piece))
        self._consume(data, check=True)

    async def read_payload(self, size: int, prompt: bytes) -> bytes:
        """Print ``prompt``, then return exactly ``size`` bytes the host writes."""
        loop = asyncio.get_running_loop()
        self._payload_ready = loop.create_future()
        self._payload = bytearray()
        self._payload_size = size
        self._state = _State.PROMPTING
        self._classify_early(ViolationKind.SEND_BEFORE_PROMPT)
        # A host may write as soon as it sees ``>``; the space after it on Quectel
        # modules can still be on its way.
        seen = prompt.find(b">") + 1 or len(prompt)
        self._transmitter.send(prompt[:seen], self._prompt_written)
        if prompt[seen:]:
            self._transmitter.send(prompt[seen:])
        return await self._payload_ready

    def finish(self, reply: bytes) -> None:
        """Queue the end of the running command's reply; the module is free after it."""
        if reply:
            self._transmitter.send(reply, self._final_written)
        else:
            self._final_written()

    def _consume(self, data: bytes, *, check: bool) -> None:
        position = 0
        while position < len(data):
            if self._state is _State.IDLE:
                position = self._take_line(data, position)
            elif self._state is _State.PAYLOAD:
                position = self._take_payload(data, position)
            else:
                self._keep_for_later(data[position:], check=check)
                return

    def _take_line(self, data: bytes, position: int) -> int:
        """Consume line bytes from ``position``; stop just after a completed line."""
        echo = bytearray()
        while position < len(data):
            byte = data[position]
            position += 1
            if byte == _CR:
                echo.append(byte)
                self._send_echo(echo)
                self._last_was_cr = True
                if self._end_line():
                    return position
                echo = bytearray()
                continue
            self._last_was_cr = False
            if byte == _LF or (not self._line and byte in _IGNORED_BEFORE_LINE):
                continue
            echo.append(byte)
            self._add_to_line(byte)
        self._send_echo(echo)
        return position

    def _add_to_line(self, byte: int) -> None:
        if byte in _BACKSPACE:
            if self._line:
                self._line.pop()
        elif len(self._line) < MAX_LINE:
            self._line.append(byte)
        else:
            self._overlong = True

    def _send_echo(self, echo: bytearray) -> None:
        if not echo or not self.echo:
            return
        if self._transmitter.backlog > MAX_ECHO_BACKLOG:
            if not self._echo_dropped:
                logger.warning(
                    "modem[%s]: host is not reading, echo dropped", self.name
                )
            self._echo_dropped = True
            return
        self._echo_dropped = False
        self._transmitter.send(bytes(echo))

    def _end_line(self) -> bool:
        """Hand a finished line to the command loop; False for an empty line."""
        text = self._line.decode("latin-1")
        overlong = self._overlong
        self._line = bytearray()
        self._overlong = False
        if not text.strip() and not overlong:
            return False
        if overlong:
            logger.warning("modem[%s]: command line over %d bytes", self.name, MAX_LINE)
            text = "\x00overlong"
        self._state = _State.BUSY
        self._command = text
        self._idle.clear()
        self._lines.put_nowait(text)
        return True

    def _take_payload(self, data: bytes, position: int) -> int:
        wanted = self._payload_size - len(self._payload)
        chunk = data[position : position + wanted]
        self._payload += chunk
        if len(self._payload) == self._payload_size:
            self._state = _State.BUSY
            self._after_payload = True
            if self._payload_ready is not None and not self._payload_ready.done():
                self._payload_ready.set_result(bytes(self._payload))
        return position + len(chunk)

    def _keep_for_later(self, data: bytes, *, check: bool) -> None:
        if check:
            self._check_discipline(data)
        room = MAX_PENDING - len(self._pending)
        if len(data) > room:
            logger.warning(
                "modem[%s]: host flooded a busy port, %d bytes dropped",
                self.name,
                len(data) - room,
            )
        self._pending += data[: max(room, 0)]

    def _check_discipline(self, data: bytes) -> None:
        if self._last_was_cr and data.startswith(b"\n"):
            data = data[1:]
        if not data:
            return
        self._last_was_cr = False
        if self._state is _State.PROMPTING:
            self._record(ViolationKind.SEND_BEFORE_PROMPT, data)
        elif self._after_payload:
            self._record(ViolationKind.PAYLOAD_TOO_LONG, data)
        elif not self._early:
            # Whether these bytes are a second command or a payload sent before
            # the prompt shows once the running command prints a prompt or ends.
            self._early = bytes(data)

    def _classify_early(self, kind: ViolationKind) -> None:
        if self._early:
            self._record(kind, self._early)
            self._early = b""

    def _record(self, kind: ViolationKind, data: bytes) -> None:
        if kind in self._reported:
            return
        self._reported.add(kind)
        violation = Violation(kind, self._command, bytes(data))
        self.violations.append(violation)
        logger.warning("modem[%s]: host violation: %s", self.name, violation)

    def _prompt_written(self) -> None:
        if self._state is not _State.PROMPTING:
            return
        self._state = _State.PAYLOAD
        self._replay_pending()

    def _final_written(self) -> None:
        self._classify_early(ViolationKind.COMMAND_WHILE_BUSY)
        self._state = _State.IDLE
        self._after_payload = False
        self._reported.clear()
        self._idle.set()
        self._replay_pending()

    def _replay_pending(self) -> None:
        data = bytes(self._pending)
        self._pending.clear()
        if data:
            self._consume(data, check=False)
