"""The attach agent: a module as a card on the relay, bridged to a local endpoint.

The agent composes three things. A ``Supervisor`` keeps the module's socket to the
relay alive. Over each socket a ``RelayClient`` session registers the card, writes the
messages of the ``Outbox`` and reads what the relay says. A local endpoint is where
messages come from and where deliveries go: standard input and output, or a TCP
listener that local programs connect to.

Both endpoints speak lines. A line is sent to the ``--to`` card, or, without one, to
the card its ``NAME: `` prefix names. A delivery is printed as ``SENDER: text`` when
the relay speaks version 2 (which names the sender) and as the bare text on a version 1
relay; ``--json`` prints one JSON object a delivery instead. A message the agent could
not deliver is reported on standard error and, on the TCP endpoint, to the program
that handed it over as a line starting with ``!``. On the TCP endpoint every connected
program gets every delivery; while none is connected, the last deliveries are kept
for the next one. With ``raw`` the TCP endpoint carries bytes instead of lines, for a
device under test that speaks its own protocol (Modbus, say): each read becomes one
message to the ``--to`` card, and deliveries are written as they arrive. TCP keeps no
boundaries, so a protocol that needs them must frame its messages itself.

Missing heartbeats count as a dead socket: the relay sends one every interval, so a
silence longer than ``silence_limit`` (by default two and a half intervals, as the
version 2 relay announces them, else 75 s) means the socket is gone even if no one said
so. So does a message the relay has not acknowledged within ``ack_timeout``: the
relay may still send heartbeats while our requests are lost on the way. On version 2
the agent also pings once an interval in which it sent nothing, so a relay with an
idle timeout keeps it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from modembridge.bringup import BringUpReport, bring_up
from modembridge.detect import FAMILIES, open_modem
from modembridge.errors import ModemError
from modembridge.modem import Modem
from modembridge.outbox import Outbox, OutboxFull, Outgoing
from modembridge.pipe import BytePipe
from modembridge.relayclient import (
    Ack,
    Delivery,
    Heartbeat,
    Refusal,
    RelayClient,
    RelayClosed,
    RelayEvent,
    RelayProtocolError,
)
from modembridge.supervisor import (
    BringUp,
    Cause,
    LinkLost,
    LinkState,
    OpenModem,
    RecoveryPolicy,
    Supervisor,
)

_LOGGER = logging.getLogger(__name__)

_PREFIX = re.compile(r"^([A-Za-z0-9_.\-]{1,64}):[ ]?(.*)$", re.DOTALL)
PROGRESS_EVERY = 5.0
"""Seconds between two progress lines of the same bring-up stage."""
STAGE_WORDS = {
    "prepare": "waiting for the module to answer",
    "sim": "waiting for the SIM",
    "registration": "waiting for network registration",
    "apn": "writing the APN",
    "bearer": "waiting for the data bearer",
}
DEFAULT_HEARTBEAT = 30.0
"""The relay's heartbeat interval when it does not announce one (version 1)."""
HELD_LINES = 1000
"""Deliveries kept for the next local program while none is connected."""
BATCH_SENDS = 4
"""Module sends' worth of bytes one write may hold when several messages wait.

Each module send is one serial exchange (command, prompt, data, result), which bounds
the uplink to about a thousand sends a second; waiting messages that share a write
fill the sends instead of taking one each. A message may straddle two sends: the relay
reads a stream. Several messages wait at once only with ``window`` above 1 or more
than one target.
"""
RAW_READ = 1400
"""Largest message one read of a raw local program makes: one module send."""
CLIENT_BACKLOG = 1024 * 1024
"""Bytes a local program may leave unread before it is disconnected."""
MAX_LINE = 64 * 1024
"""Longest line an endpoint accepts: the relay's request bound."""
READ_SIZE = 64 * 1024
"""Bytes one read of a line endpoint takes at most."""


class EndpointError(ModemError):
    """The local endpoint cannot be opened (a --listen address in use, not ours)."""


@dataclass(frozen=True)
class AgentConfig:
    """What ``attach`` was asked to do."""

    port: str
    card: str
    server: tuple[str, int]
    apn: str = ""
    wire_log: Path | None = None
    to: str | None = None
    listen: tuple[str, int] | None = None
    token: str | None = None
    json_output: bool = False
    raw: bool = False
    silence_limit: float | None = None
    connect_timeout: float = 30.0
    ack_timeout: float = 60.0
    drain_timeout: float = 10.0
    outbox_limit: int = 1000
    patience: float = 120.0
    window: int = 1
    policy: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    command_timeout: float | None = None

    def __post_init__(self) -> None:
        """Raw bridging needs both ends: a listener and a target card."""
        if self.raw and (self.listen is None or self.to is None):
            raise ValueError("raw bridging needs --listen and --to")


def capped_timeouts(cap: float | None) -> dict[str, float] | None:
    """Per-command time limits of every dialect, none above ``cap`` seconds.

    A command whose limit differs between dialects gets the longer one, up to the cap.
    None (no cap) leaves every dialect its own limits.
    """
    if cap is None:
        return None
    limits: dict[str, float] = {}
    for _, dialect in FAMILIES:
        for name, command in dialect.COMMANDS.items():
            limits[name] = min(cap, max(limits.get(name, 0.0), command.seconds))
    return limits


def parse_line(line: str, default_to: str | None) -> tuple[str, str]:
    """The target card and text of an input line; raises ValueError without one."""
    if default_to is not None:
        return default_to, line
    match = _PREFIX.match(line)
    if match is None:
        raise ValueError("no target: start the line with 'CARD: ' or use --to")
    return match.group(1), match.group(2)


def format_delivery(sender: str | None, data: bytes, json_output: bool) -> str:
    """One output line for a delivery."""
    if json_output:
        record: dict[str, object] = {"from": sender}
        try:
            record["message"] = data.decode()
        except UnicodeDecodeError:
            record["message_b64"] = base64.b64encode(data).decode()
        return json.dumps(record, ensure_ascii=False)
    text = data.decode(errors="backslashreplace").rstrip("\r\n")
    return text if sender is None else f"{sender}: {text}"


class Agent:
    """Runs one card: the module's link, the relay session, the local endpoint."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        open_modem: OpenModem | None = None,
        bring_up: BringUp | None = None,
        stdin: asyncio.StreamReader | None = None,
        stdout: TextIO | None = None,
        status: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.stdin = stdin
        self.stdout = stdout or sys.stdout
        self._status = status or _print_status
        self.outbox = Outbox(
            self._undeliverable,
            card=config.card,
            limit=config.outbox_limit,
            patience=config.patience,
            window=config.window,
        )
        self.supervisor = Supervisor(
            config.port,
            config.server,
            open_modem=open_modem or self._open_modem,
            bring_up=bring_up or self._bring_up,
            policy=config.policy,
            card=config.card,
            on_state=self._state_changed,
        )
        self.version = 0
        self.undelivered = 0
        """Messages handed over that were reported as not delivered."""
        self._progress_shown: dict[str, float] = {}
        self._stop = asyncio.Event()
        self._interrupted = asyncio.Event()
        self._started = time.monotonic()
        self._last_sent = 0.0
        self._clients: set[asyncio.StreamWriter] = set()
        self._held_for_clients: collections.deque[bytes] = collections.deque(
            maxlen=HELD_LINES
        )
        self._dropped_unheld = 0
        self._server: asyncio.Server | None = None
        self.listening: tuple[str, int] | None = None
        self.online = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _open_modem(self, port: str) -> Modem:
        timeouts = capped_timeouts(self.config.command_timeout)
        return await open_modem(port, wire_log=self.config.wire_log, timeouts=timeouts)

    async def _bring_up(self, modem: Modem) -> BringUpReport:
        self._progress_shown.clear()
        report = await bring_up(modem, self.config.apn, on_progress=self._progress)
        identity, operator = report.identity, report.operator or "?"
        self._status(
            f"card {self.config.card}: {identity.model} up on {operator}, "
            f"address {report.address}, {report.total_seconds:.1f} s"
        )
        return report

    def _progress(self, stage: str, seconds: float) -> None:
        """Say what the bring-up waits for, after a second, then every few seconds."""
        shown = self._progress_shown.get(stage)
        if seconds < 1 or (shown is not None and seconds - shown < PROGRESS_EVERY):
            return
        self._progress_shown[stage] = seconds
        waiting = STAGE_WORDS.get(stage, stage)
        self._status(f"card {self.config.card}: {waiting} ({seconds:.0f} s)")

    def stop(self) -> None:
        """Ask the agent to deliver what it holds and exit."""
        self._stop.set()

    def interrupt(self) -> None:
        """Ask the agent to exit now, also in the middle of bringing the module up."""
        self._interrupted.set()
        self._stop.set()

    async def run(self) -> None:
        """Bring the module up, bridge until stopped, then shut down cleanly."""
        link: asyncio.Task[None] | None = None
        try:
            await self._open_endpoint()
            self._tasks.append(asyncio.create_task(self.outbox.expire_forever()))
            if not await self._started_unless_interrupted():
                return
            link = asyncio.create_task(self.supervisor.run(self._session))
            await self._until_stopped(link)
        finally:
            await self._shut_down(link)

    async def _started_unless_interrupted(self) -> bool:
        start = asyncio.create_task(self.supervisor.start())
        interrupted = asyncio.create_task(self._interrupted.wait())
        await asyncio.wait({start, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        interrupted.cancel()
        if not start.done():
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
            return False
        start.result()
        return True

    async def _until_stopped(self, link: asyncio.Task[None]) -> None:
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait({link, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if link.done():
            # The link only ends by itself on a fatal error (the relay refused us).
            link.result()
            return
        if self._interrupted.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.drain_timeout):
                await asyncio.shield(link)

    async def _shut_down(self, link: asyncio.Task[None] | None) -> None:
        tasks = [*self._tasks, *([link] if link else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.outbox.abandon("the agent stopped before the relay acknowledged it")
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients):
            writer.close()
        closed = await self.supervisor.shutdown()
        if link is not None:
            card = self.config.card
            if closed:
                self._status(f"card {card}: offline, socket and bearer closed")
            else:
                self._status(f"card {card}: offline, the module did not answer")

    async def _session(self, pipe: BytePipe) -> None:
        """One relay session over one socket; returns once stopped and drained."""
        client = RelayClient(pipe, self.config.card, token=self.config.token)
        self.version = await client.connect(self.config.connect_timeout)
        self.supervisor.online()

        tasks = [
            asyncio.create_task(self._send_forever(client)),
            asyncio.create_task(self._receive_forever(client)),
            asyncio.create_task(self._drained_after_stop()),
            asyncio.create_task(self._acks_awaited()),
        ]
        if client.version == 2 and client.heartbeat_interval:
            keepalive = self._keep_alive(client, client.heartbeat_interval)
            tasks.append(asyncio.create_task(keepalive))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.outbox.connection_lost()
        for task in done:
            task.result()

    async def _send_forever(self, client: RelayClient) -> None:
        """Write what the outbox lets go, several messages a write when they wait."""
        modem = self.supervisor.modem
        budget = BATCH_SENDS * (modem.facts.max_send if modem else RAW_READ)
        while True:
            requests = self._claim(client, await self.outbox.wait_ready())
            while len(requests) < budget and (message := self.outbox.next_ready()):
                requests += self._claim(client, message)
            await client.write(requests)
            self._last_sent = time.monotonic()

    def _claim(self, client: RelayClient, message: Outgoing) -> bytes:
        """The message's send request; the message is in flight from now on."""
        request_id, request = client.prepare_send(message.to, message.data)
        self.outbox.sent(message, request_id)
        return request

    async def _keep_alive(self, client: RelayClient, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self._last_sent >= interval:
                await client.ping()
                self._last_sent = time.monotonic()

    async def _receive_forever(self, client: RelayClient) -> None:
        limit = self.config.silence_limit
        if limit is None:
            interval = client.heartbeat_interval or DEFAULT_HEARTBEAT
            limit = 2.5 * interval
        bad_lines = 0
        while True:
            try:
                async with asyncio.timeout(limit):
                    event = await client.next_event()
            except TimeoutError as exc:
                raise LinkLost(
                    Cause.HEARTBEAT, f"relay silent for {limit:g} s"
                ) from exc
            except RelayClosed as exc:
                raise LinkLost(Cause.SOCKET, str(exc)) from exc
            except RelayProtocolError as exc:
                # Lines resynchronise: skip the bad one, keep the session.
                bad_lines += 1
                level = logging.WARNING if bad_lines == 1 else logging.DEBUG
                _LOGGER.log(
                    level,
                    "card[%s]: %s (%d this session)",
                    self.config.card,
                    exc,
                    bad_lines,
                )
                continue
            self._event_received(event)

    async def _acks_awaited(self) -> None:
        """A write the relay does not acknowledge in time means the link is dead."""
        limit = self.config.ack_timeout
        while True:
            sent_at = self.outbox.oldest_in_flight()
            waited = 0.0 if sent_at is None else time.monotonic() - sent_at
            if waited >= limit:
                detail = f"no acknowledgement from the relay in {limit:g} s"
                raise LinkLost(Cause.SOCKET, detail)
            await asyncio.sleep(limit - waited)

    async def _drained_after_stop(self) -> None:
        await self._stop.wait()
        await self.outbox.drained()

    def _event_received(self, event: RelayEvent) -> None:
        match event:
            case Delivery(sender, data):
                self._delivery_received(sender, data)
            case Ack(request_id):
                self.outbox.acked(request_id)
            case Refusal(request_id, reason, target):
                if self.outbox.refused(request_id, reason) is None:
                    _LOGGER.warning(
                        "card[%s]: relay error %s (to %s)",
                        self.config.card,
                        reason,
                        target,
                    )
            case Heartbeat():
                _LOGGER.debug("card[%s]: heartbeat", self.config.card)

    def _delivery_received(self, sender: str | None, data: bytes) -> None:
        if self.config.raw:
            self._to_clients(data)
            return
        line = format_delivery(sender, data, self.config.json_output)
        if self.config.listen is None:
            self.stdout.write(line + "\n")
            self.stdout.flush()
            return
        self._to_clients(line.encode() + b"\n")

    def _to_clients(self, data: bytes) -> None:
        if not self._clients:
            held = self._held_for_clients
            if len(held) == held.maxlen:
                self._dropped_unheld += 1
                level = logging.WARNING if self._dropped_unheld == 1 else logging.DEBUG
                _LOGGER.log(
                    level,
                    "card[%s]: no local program connected; holding the last %d "
                    "deliveries, %d older dropped",
                    self.config.card,
                    len(held),
                    self._dropped_unheld,
                )
            held.append(data)
            return
        for writer in list(self._clients):
            self._write_to_client(writer, data)

    def _write_to_client(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write to a local program, dropping one that stopped reading."""
        if writer.transport.get_write_buffer_size() > CLIENT_BACKLOG:
            _LOGGER.warning(
                "card[%s]: local program stopped reading; disconnecting it",
                self.config.card,
            )
            self._clients.discard(writer)
            writer.close()
            return
        writer.write(data)

    def hand_over(self, line: str, origin: object = None) -> None:
        """Take one input line for the relay, or report why it cannot go."""
        try:
            to, text = parse_line(line, self.config.to)
            self.outbox.put(to, text.encode(), origin)
        except (ValueError, OutboxFull) as exc:
            self._report(f"not sent: {exc}", origin)

    def _undeliverable(self, message: Outgoing, reason: str) -> None:
        text = message.data.decode(errors="backslashreplace")
        self._report(
            f"not delivered to {message.to}: {text!r} ({reason})", message.origin
        )

    def _report(self, text: str, origin: object) -> None:
        self.undelivered += 1
        self._status(text)
        if isinstance(origin, asyncio.StreamWriter) and not origin.is_closing():
            origin.write(f"! {text}\n".encode())

    async def _open_endpoint(self) -> None:
        if self.config.listen is not None:
            host, port = self.config.listen
            try:
                self._server = await asyncio.start_server(
                    self._client_connected, host, port, limit=MAX_LINE
                )
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else str(exc)
                raise EndpointError(f"--listen {host}:{port}: {why}") from exc
            bound = self._server.sockets[0].getsockname()
            self.listening = (str(bound[0]), int(bound[1]))
            self._status(f"card {self.config.card}: listening on {bound[0]}:{bound[1]}")
        elif self.stdin is not None:
            self._tasks.append(asyncio.create_task(self._read_stdin(self.stdin)))

    async def _read_stdin(self, reader: asyncio.StreamReader) -> None:
        async for line in _lines(reader, self.config.card):
            self.hand_over(line)
        self.stop()

    async def _client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._clients.add(writer)
        self._dropped_unheld = 0
        while self._held_for_clients:
            self._write_to_client(writer, self._held_for_clients.popleft())
        try:
            if self.config.raw:
                await self._bridge_raw(reader, writer)
            else:
                async for line in _lines(reader, self.config.card):
                    self.hand_over(line, writer)
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _bridge_raw(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Each read from a local program is one message to the ``--to`` card."""
        to = self.config.to
        if to is None:
            return
        while data := await reader.read(RAW_READ):
            try:
                self.outbox.put(to, data, writer)
            except OutboxFull as exc:
                self._report(f"not sent: {exc}", writer)

    def _state_changed(self, state: LinkState, detail: str) -> None:
        card = self.config.card
        if state is LinkState.ONLINE:
            self.online.set()
        else:
            self.online.clear()
        if state is LinkState.ONLINE:
            took = time.monotonic() - self._started
            self._status(
                f"card {card}: online via {detail} (protocol {self.version}, "
                f"{took:.1f} s)"
            )
        elif state is LinkState.WAITING_FOR_PORT:
            self._status(f"card {card}: {state.value}: {detail}")
        elif state is LinkState.RECOVERING and self.supervisor.failures <= 1:
            # Only the first failure of a cycle: the repeats are in the debug log.
            self._status(f"card {card}: {state.value}: {detail}")
            self._started = time.monotonic()


async def _lines(reader: asyncio.StreamReader, card: str) -> AsyncIterator[str]:
    """Lines from a stream, without their ending; an overlong line is skipped whole."""
    pending = b""
    skipping = False
    while chunk := await reader.read(READ_SIZE):
        *whole, pending = (pending + chunk).split(b"\n")
        for raw in whole:
            if not skipping and _fits(raw, card):
                yield _text(raw)
            skipping = False
        if skipping or not _fits(pending, card):
            # The rest of the line, up to its end, goes with it.
            pending, skipping = b"", True
    if pending and not skipping:
        yield _text(pending)


def _fits(line: bytes, card: str) -> bool:
    """Whether a line is within the bound; one that is not is logged."""
    if len(line) <= MAX_LINE:
        return True
    _LOGGER.warning("card[%s]: line longer than %d bytes skipped", card, MAX_LINE)
    return False


def _text(raw: bytes) -> str:
    return raw.decode(errors="replace").rstrip("\r")


def _print_status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
