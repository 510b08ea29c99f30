"""The AT channel: one serial port, one command in flight, URCs whenever they come.

A background task reads the port, logs every byte (see :mod:`modembridge.wirelog`) and
feeds the :class:`~modembridge.atreader.ATReader`. Events that answer the pending
command are collected until its final result; URCs and pushed payloads go to the
subscribers at once, also in the middle of a response. A command that needs a module
result printed later (``+NETOPEN: 0`` after ``OK``) registers a :class:`UrcWaiter`
before it sends, so the result cannot slip past between the two.

After a timeout the module's answer may still come. The timed-out command keeps its
place for a while (its own limit again, at most ``LATE_ANSWER_SECONDS``) so a late
answer is recognised and dropped; the channel is then out of step and, before the
next command, sends ``AT`` until an ``OK`` is the last final result for
``QUIET_SECONDS``. Otherwise the next command could take the late answer for its own.
Waiting for the module to get in step counts against the next command's own limit.

When the port goes away (the module resets, the cable is pulled, the pseudo-terminal
master closes) every pending and future call raises
:class:`~modembridge.errors.PortVanished`, logged as one INFO line. The serial
transport is pyserial-asyncio-fast's with three repairs (see :class:`PortTransport`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import serial
import serial_asyncio_fast

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
from modembridge.errors import (
    ATProtocolError,
    CommandRefused,
    ModemError,
    ModemTimeout,
    PortVanished,
)
from modembridge.udev import ROLES
from modembridge.wirelog import WireLog

log = logging.getLogger(__name__)

READ_SIZE = 4096
PROMPT_TIMEOUT = 5.0
LATE_ANSWER_SECONDS = 3.0
SYNC_SECONDS = 2.0
SYNC_ATTEMPTS = 3
QUIET_SECONDS = 0.2
QUIET_ROUNDS = 10

UrcCallback = Callable[[Urc | Payload], None]
LostCallback = Callable[[ModemError], None]


@dataclass(frozen=True)
class Response:
    """What the module answered to one command, up to its successful final result."""

    command: str
    info: tuple[str, ...]
    payloads: tuple[Payload, ...]
    final: Final

    def value(self, prefix: str) -> str | None:
        """The first information line starting with ``prefix``, without it."""
        for line in self.info:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        return None

    def values(self, prefix: str) -> list[str]:
        """Every information line starting with ``prefix``, without it."""
        return [
            line[len(prefix) :].strip() for line in self.info if line.startswith(prefix)
        ]


def port_name(port: str) -> str:
    """A short name for ``port`` that tells modules apart, for log lines.

    ``/dev/ttyUSB2`` is ``ttyUSB2`` and ``/dev/pts/3`` is ``pts/3``. A stable udev
    name ending in a role (``/dev/modembridge/sim7600-1-1.2/at``) keeps its parent,
    ``sim7600-1-1.2/at``, since every module has an ``at``; a ``/dev/serial/by-id``
    or ``by-path`` link is unique by its last part.
    """
    path = Path(port)
    if path.name in ROLES or path.parent.name == "pts":
        return f"{path.parent.name}/{path.name}"
    return path.name


def modem_name(port: str) -> str:
    """How log lines and errors name the module on ``port``: ``modem[ttyUSB2]``."""
    return f"modem[{port_name(port)}]"


class _Pending:
    """The command in flight: what it collected so far and who waits for it."""

    def __init__(self, command: str) -> None:
        loop = asyncio.get_running_loop()
        self.command = command
        self.info: list[str] = []
        self.payloads: list[Payload] = []
        self.prompt: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[Final] = loop.create_future()
        self.outcome: asyncio.Future[Response] = loop.create_future()

    def fail(self, error: ModemError) -> None:
        """End the wait for the final result with ``error`` (the port is gone)."""
        if not self.done.done():
            self.done.set_exception(error)

    def answer(self, result: Response | Exception) -> None:
        """Give the caller its answer, unless it has one already."""
        if self.outcome.done():
            return
        if isinstance(result, Exception):
            self.outcome.set_exception(result)
        else:
            self.outcome.set_result(result)

    def retrieve(self) -> None:
        """Mark errors as seen: a cancelled caller no longer looks at them."""
        for future in (self.done, self.outcome):
            if future.done() and not future.cancelled():
                future.exception()


class PortTransport(serial_asyncio_fast.SerialTransport):
    """pyserial-asyncio-fast's transport, repaired where a module port needs it.

    Version 0.16 reports a write to a vanished port (``EIO`` after a USB reset) as a
    fatal error with a traceback through the loop's exception handler; here it is
    a DEBUG line and the port is closed as when a read fails. Its writer stays
    registered once a buffered write is done, so every later wake-up fails an
    assertion with a traceback; here the writer is removed. And pyserial retries
    a write to a full port in a busy loop that stops the event loop (a module that
    reads no more), so a direct write is tried only when the port can take bytes.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.Protocol,
        port: serial.Serial,
        name: str,
    ) -> None:
        super().__init__(loop, protocol, port)
        self._name = name

    def _write_ready(self) -> None:
        if not self._write_buffer:
            self._remove_writer()
            return
        super()._write_ready()

    def _write_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._serial is not None and not _writable(self._serial.fileno()):
            self._write_buffer.append(data)
            self._maybe_pause_protocol()
            self._ensure_writer()
            return
        super()._write_data(data)

    def _fatal_error(
        self, exc: BaseException, message: str = "Fatal error on serial transport"
    ) -> None:
        if not isinstance(exc, OSError):  # SerialException is an OSError
            super()._fatal_error(exc, message)
            return
        # The read loop reports the vanished port once, at INFO.
        log.debug("%s: port vanished while writing (%s)", self._name, exc)
        self._abort(exc)


class UrcWaiter:
    """Catches the first URC that ``predicate`` accepts, from registration on."""

    def __init__(self, channel: ATChannel, predicate: Callable[[str], bool]) -> None:
        self._channel = channel
        self._predicate = predicate
        self._future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def __enter__(self) -> UrcWaiter:
        self._channel._waiters.append(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with contextlib.suppress(ValueError):
            self._channel._waiters.remove(self)
        if self._future.done() and not self._future.cancelled():
            self._future.exception()  # retrieved: no "never retrieved" warning

    def urc_received(self, line: str) -> None:
        """Take ``line`` if it is the awaited URC and none was taken yet."""
        if not self._future.done() and self._predicate(line):
            self._future.set_result(line)

    def fail(self, error: ModemError) -> None:
        """Make the waiting call raise ``error``."""
        if not self._future.done():
            self._future.set_exception(error)

    async def wait(self, command: str, seconds: float, waiting_for: str) -> str:
        """The URC line; ``ModemTimeout`` naming ``command`` if it does not come."""
        try:
            async with asyncio.timeout(seconds):
                return await asyncio.shield(self._future)
        except TimeoutError:
            raise ModemTimeout(command, seconds, waiting_for) from None


class ATChannel:
    """Commands and URCs over one AT port."""

    def __init__(
        self,
        port: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        wire_log: Path | None = None,
    ) -> None:
        self.port = port
        self.name = modem_name(port)
        self._reader = reader
        self._writer = writer
        self._at = ATReader()
        self._wire = WireLog(self.name, wire_log)
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self._pending: _Pending | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._out_of_step = False
        self.sync_seconds = SYNC_SECONDS
        """How long ``AT`` may take while resynchronising after a timeout."""
        self._finals_seen = 0
        self._last_final: Final | None = None
        self._waiters: list[UrcWaiter] = []
        self._subscribers: list[UrcCallback] = []
        self._lost_callbacks: list[LostCallback] = []
        self._lost: ModemError | None = None
        self._read_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(
        cls, port: str, *, baudrate: int = 115200, wire_log: Path | None = None
    ) -> ATChannel:
        """Open ``port``; ``PortVanished`` if there is no such port now."""
        loop = asyncio.get_running_loop()
        opening = partial(serial.serial_for_url, port, baudrate=baudrate)
        try:
            device = await loop.run_in_executor(None, opening)
        except (OSError, serial.SerialException) as error:
            raise PortVanished(port) from error
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport = PortTransport(loop, protocol, device, modem_name(port))
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        log.debug("%s: opened at %d baud", modem_name(port), baudrate)
        return cls(port, reader, writer, wire_log=wire_log)

    @property
    def vanished(self) -> bool:
        """Whether the port went away (or the channel was closed)."""
        return self._lost is not None

    def subscribe(self, callback: UrcCallback) -> Callable[[], None]:
        """Call ``callback`` for every URC and pushed payload; returns the undo."""
        self._subscribers.append(callback)
        return lambda: _discard(self._subscribers, callback)

    def add_lost_callback(self, callback: LostCallback) -> None:
        """Call ``callback`` once when the port vanishes or the channel closes."""
        self._lost_callbacks.append(callback)

    def urc_waiter(self, predicate: Callable[[str], bool]) -> UrcWaiter:
        """A waiter for the first URC ``predicate`` accepts; use it as ``with``."""
        return UrcWaiter(self, predicate)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the port for a sequence of commands (re-entrant for its task)."""
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            yield
            return
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None

    async def command(self, command: str, *, seconds: float) -> Response:
        """Send ``command`` and return its answer; raise on refusal or silence."""
        async with self.exclusive():
            return await self._run(command, None, seconds, PROMPT_TIMEOUT)

    async def send_data(
        self,
        command: str,
        data: bytes,
        *,
        seconds: float,
        prompt_seconds: float = PROMPT_TIMEOUT,
    ) -> Response:
        """Send ``command``, wait for the ``>`` prompt, write ``data``, await result.

        The prompt is waited for no longer than the command's own limit, so a cap on
        every command's wait also bounds a send to a module that stopped answering.
        """
        async with self.exclusive():
            prompt = min(prompt_seconds, seconds)
            return await self._run(command, data, seconds, prompt)

    def note(self, text: str) -> None:
        """Put a comment into the transcript file (a host action worth seeing)."""
        self._wire.note(text)

    async def close(self) -> None:
        """Close the port; pending calls fail. Closing twice is harmless."""
        if self._lost is None:
            self._lose(ModemError(f"{self.name}: channel closed"))
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._read_task
        if self._in_flight is not None:
            self._in_flight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._in_flight
        self._writer.close()
        self._wire.close()

    async def _run(
        self, command: str, data: bytes | None, seconds: float, prompt_seconds: float
    ) -> Response:
        line = command.encode("ascii") + b"\r"
        await self._settle_within(command, seconds)
        self._check_open()
        pending = _Pending(command)
        self._pending = pending
        self._at.command_sent(command, expects_prompt=data is not None)
        self._in_flight = asyncio.create_task(
            self._exchange(pending, line, data, seconds, prompt_seconds)
        )
        try:
            return await asyncio.shield(pending.outcome)
        except asyncio.CancelledError:
            if not pending.outcome.done():
                log.debug(
                    "%s: %s stays in flight for its caller gave up", self.name, command
                )
            raise

    async def _settle_within(self, command: str, seconds: float) -> None:
        """Settle within ``command``'s own limit, so a hung module costs no more."""
        try:
            async with asyncio.timeout(seconds) as limit:
                await self._settle(command)
        except TimeoutError:
            if not limit.expired():
                raise  # a ModemTimeout of the resynchronisation, naming command
            raise ModemTimeout(
                command, seconds, "the module to finish the command before"
            ) from None

    async def _settle(self, command: str) -> None:
        """Wait until the module is done with earlier commands and in step again."""
        in_flight = self._in_flight
        if in_flight is not None and not in_flight.done():
            log.debug("%s: %s waits for the command in flight", self.name, command)
            await asyncio.wait({in_flight})
        if self._out_of_step and self._lost is None:
            await self._resync(command)

    async def _resync(self, command: str) -> None:
        """Send ``AT`` until its ``OK`` is the last final result for a while.

        A late answer to an earlier command may arrive just before or after the
        ``OK``; only a quiet link after an ``OK`` shows that the next answer is the
        next command's. ``ModemTimeout`` naming ``command`` if the module is silent.
        """
        log.info("%s: resynchronising with AT before %s", self.name, command)
        for _ in range(SYNC_ATTEMPTS):
            await self._sync_probe(command)
            if await self._quiet_after_ok():
                self._out_of_step = False
                log.info("%s: in step again", self.name)
                return
            self._check_open()
        raise ModemTimeout(command, self.sync_seconds, "a quiet link after OK to AT")

    async def _sync_probe(self, command: str) -> None:
        """Send ``AT`` and wait for a final result, which may not be its own."""
        probe = _Pending("AT")
        self._pending = probe
        self._at.command_sent(probe.command)
        self._in_flight = asyncio.create_task(
            self._exchange(probe, b"AT\r", None, self.sync_seconds, PROMPT_TIMEOUT)
        )
        try:
            await asyncio.shield(probe.outcome)
        except CommandRefused:
            pass  # perhaps the late answer; the quiet window tells
        except ModemTimeout:
            raise ModemTimeout(
                command, self.sync_seconds, "OK to AT after an earlier timeout"
            ) from None

    async def _quiet_after_ok(self) -> bool:
        """Whether no final result follows an ``OK`` for ``QUIET_SECONDS``."""
        for _ in range(QUIET_ROUNDS):
            seen = self._finals_seen
            await asyncio.sleep(QUIET_SECONDS)
            if self._lost is not None:
                return False
            if self._finals_seen == seen:
                return self._last_final is not None and self._last_final.ok
        return False

    async def _exchange(
        self,
        pending: _Pending,
        line: bytes,
        data: bytes | None,
        seconds: float,
        prompt_seconds: float,
    ) -> None:
        """Carry one command to its end, answering its caller on the way.

        The exchange outlives a cancelled caller: the module goes on working on the
        command, so it stays in flight until its final result or its own time
        limit, and the next command waits for that. A send cancelled at the prompt
        still writes its bytes: a fixed-length send waits for exactly the announced
        count, and the reference has ESC cancel only the variable-length form
        (unverified on the EC2x), so the announced bytes are the one way back to
        command mode that both modules are known to take.
        """
        try:
            await self._write(line, pending, seconds)
            if data is None or await self._send_payload(
                pending, data, prompt_seconds, seconds
            ):
                await self._await_final(pending, seconds)
        except Exception as error:
            pending.answer(error)
        finally:
            pending.answer(self._closed_error())
            if self._pending is pending:
                self._pending = None
                if not pending.done.done():
                    self._at.command_abandoned()
            pending.retrieve()

    async def _send_payload(
        self, pending: _Pending, data: bytes, seconds: float, write_seconds: float
    ) -> bool:
        """Write ``data`` once the prompt came; False if the command ended before."""
        waiting: set[asyncio.Future[Any]] = {pending.prompt, pending.done}
        finished, _ = await asyncio.wait(
            waiting, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
        if not finished:
            pending.answer(ModemTimeout(pending.command, seconds, "the > prompt"))
            self._out_of_step = True
            finished, _ = await asyncio.wait(
                waiting, timeout=_late(seconds), return_when=asyncio.FIRST_COMPLETED
            )
            if not finished or pending.done.done():
                return False
            # The module now waits for exactly the announced bytes, nothing else.
            log.warning(
                "%s: the > prompt for %s came after its limit; writing the bytes",
                self.name,
                pending.command,
            )
        if pending.done.done():
            # Refused before the prompt: the payload must not be written.
            pending.answer(self._refusal(pending, pending.done.result()))
            return False
        await self._write(data, pending, write_seconds)
        return True

    async def _await_final(self, pending: _Pending, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                final = await asyncio.shield(pending.done)
        except TimeoutError:
            self._wire.flush()
            pending.answer(ModemTimeout(pending.command, seconds, "its final result"))
            self._out_of_step = True
            await self._drop_late_answer(pending, _late(seconds))
            return
        if final.ok:
            pending.answer(self._response(pending, final))
        else:
            pending.answer(self._refusal(pending, final))

    async def _drop_late_answer(self, pending: _Pending, seconds: float) -> None:
        """Keep the timed-out command's place for ``seconds``; drop its answer."""
        await asyncio.wait({pending.done}, timeout=seconds)
        if not pending.done.done():
            log.info(
                "%s: no late answer to %s in %g s", self.name, pending.command, seconds
            )
        elif pending.done.exception() is None:
            log.info(
                "%s: dropped the late answer to %s: %s",
                self.name,
                pending.command,
                pending.done.result().line,
            )

    def _response(self, pending: _Pending, final: Final) -> Response:
        return Response(
            pending.command, tuple(pending.info), tuple(pending.payloads), final
        )

    def _refusal(self, pending: _Pending, final: Final) -> CommandRefused:
        return CommandRefused(
            pending.command,
            final.line,
            code=final.code,
            text=final.text,
            info=tuple(pending.info),
        )

    def _check_open(self) -> None:
        if self._lost is not None:
            raise self._closed_error()

    def _closed_error(self) -> ModemError:
        if isinstance(self._lost, PortVanished):
            return PortVanished(self.port)
        return ModemError(f"{self.name}: channel closed")

    async def _write(self, data: bytes, pending: _Pending, seconds: float) -> None:
        """Write ``data``; ``ModemTimeout`` if the port takes it not in ``seconds``."""
        self._check_open()
        self._wire.sent(data)
        try:
            async with asyncio.timeout(seconds):
                self._writer.write(data)
                await self._writer.drain()
        except TimeoutError:
            # The rest is still queued: the module takes it once it reads again.
            self._out_of_step = True
            raise ModemTimeout(
                pending.command, seconds, "the port to take the bytes"
            ) from None
        except (OSError, serial.SerialException) as error:
            self._lose(PortVanished(self.port))
            raise PortVanished(self.port) from error

    async def _read_loop(self) -> None:
        try:
            while data := await self._reader.read(READ_SIZE):
                self._wire.received(data)
                self._at.receive_data(data)
                self._drain_events()
        except (OSError, serial.SerialException) as error:
            log.info("%s: port vanished (%s)", self.name, error)
        except Exception:
            log.exception("%s: reading the port failed", self.name)
            self._lose(ModemError(f"{self.name}: reading the port failed"))
            return
        else:
            log.info("%s: port vanished (end of stream)", self.name)
        self._lose(PortVanished(self.port))

    def _drain_events(self) -> None:
        while True:
            try:
                event = self._at.next_event()
            except ATProtocolError as error:
                log.warning("%s: %s; resynchronising", self.name, error)
                self._at.resync()
                self._out_of_step = True
                if self._pending is not None:
                    self._pending.fail(error)
                return
            if event is None:
                return
            self._event_received(event)

    def _event_received(self, event: ATEvent) -> None:
        pending = self._pending
        if isinstance(event, Final):
            self._finals_seen += 1
            self._last_final = event
        match event:
            case Echo():
                pass
            case Info(line) if pending is not None:
                pending.info.append(line)
            case Payload(solicited=True) if pending is not None:
                pending.payloads.append(event)
            case Prompt() if pending is not None:
                if not pending.prompt.done():
                    pending.prompt.set_result(None)
            case Final() if pending is not None:
                if not pending.done.done():
                    pending.done.set_result(event)
            case Urc(line):
                self._urc_received(line, event)
            case Payload():
                self._notify(event)
            case _:
                log.debug("%s: ignoring %r with no command pending", self.name, event)

    def _urc_received(self, line: str, event: Urc) -> None:
        for waiter in list(self._waiters):
            waiter.urc_received(line)
        self._notify(event)

    def _notify(self, event: Urc | Payload) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("%s: URC subscriber failed on %r", self.name, event)

    def _lose(self, error: ModemError) -> None:
        if self._lost is not None:
            return
        self._lost = error
        if self._pending is not None:
            self._pending.fail(error)
        for waiter in list(self._waiters):
            waiter.fail(error)
        for callback in self._lost_callbacks:
            try:
                callback(error)
            except Exception:
                log.exception("%s: lost-port callback failed", self.name)


def _writable(fd: int) -> bool:
    """Whether a write to ``fd`` would take at least one byte now."""
    try:
        _, ready, _ = select.select([], [fd], [], 0)
    except (OSError, ValueError):
        return True  # let the write itself report the broken port
    return bool(ready)


def _late(seconds: float) -> float:
    """How long a timed-out command keeps its place, waiting for a late answer."""
    return min(seconds, LATE_ANSWER_SECONDS)


def _discard(items: list[UrcCallback], item: UrcCallback) -> None:
    with contextlib.suppress(ValueError):
        items.remove(item)
