"""The card side of the relay protocol, over any byte pipe.

A card connects by offering version 2 (``'proto':2``). A version 2 relay answers with
one JSON line, and from then on every byte it sends is one JSON object per line:
acknowledgements that carry our request ids, errors, deliveries with their sender,
heartbeats, pongs. A version 1 relay ignores the offer and answers
``connect_success``; the client then speaks version 1 by itself.

Version 1 replies carry no delimiter, so that mode reads them as well as it can: it
looks for the relay's fixed words (``send_success``, ``<card> not connect``,
``wrong format``, ``heartbeat``) and treats every other byte as delivered data.
Limitation: a delivered message that contains one of those words is split around it
and the word is taken for a reply; two messages that arrive together are one delivery;
and there is no sender. Replies to sends are matched to requests in the order the sends
were written, which is the order a version 1 relay answers in.

The two decoders are plain classes fed bytes (no I/O); ``RelayClient`` drives them
over a ``BytePipe``. A version 2 line that breaks the protocol becomes a
``RelayProtocolError`` in its place among the events, never anything else; decoding
resumes at the next line, and a line longer than the bound is skipped to its end.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from modembridge.errors import ModemError, ModemTimeout, RelayRefused
from modembridge.pipe import BytePipe

_LOGGER = logging.getLogger(__name__)

MAX_LINE = 256 * 1024
"""Longest version 2 line we buffer: a 64 KiB message in base64 plus its envelope."""

V1_WORDS = (b"connect_success", b"send_success", b"wrong format", b"heartbeat")
V1_HEARTBEAT_SPELLINGS = (b"heartbeat", b"heartBeat")

HEARTBEAT_RANGE = (0.05, 3600.0)
"""Heartbeat intervals a relay may announce, in seconds; longer ones are capped."""

_V1_HOLD_SECONDS = 0.2
"""How long a version 1 tail that may start a relay word waits for the rest."""


class RelayProtocolError(ModemError):
    """The relay sent bytes that break the protocol's framing."""

    def __init__(self, message: str, data: bytes = b"") -> None:
        super().__init__(message)
        self.data = data


class RelayClosed(ModemError):
    """The connection to the relay ended."""


class RelayTimeout(ModemTimeout):
    """The relay did not answer the connect request in time."""


@dataclass(frozen=True)
class Delivery:
    """Bytes another card sent us; ``sender`` is None on a version 1 relay."""

    sender: str | None
    data: bytes


@dataclass(frozen=True)
class Ack:
    """The relay accepted the send with this request id."""

    request_id: int


@dataclass(frozen=True)
class Refusal:
    """The relay refused the send with this request id (target absent, bad format)."""

    request_id: int
    reason: str
    target: str | None = None


@dataclass(frozen=True)
class Heartbeat:
    """The relay's keep-alive; ``sent_at`` is its Unix time when it told us."""

    sent_at: float | None = None


@dataclass(frozen=True)
class Pong:
    """The relay's answer to a ping."""


RelayEvent = Delivery | Ack | Refusal | Heartbeat | Pong
Decoded = RelayEvent | RelayProtocolError
Item = TypeVar("Item")
"""What a decoder makes of the bytes: events, and errors in their place in the flow."""


class V1Decoder:
    """Turns the undelimited replies of a version 1 relay into events, best effort."""

    def __init__(self) -> None:
        self._buffer = b""
        self._pending: collections.deque[tuple[int, str]] = collections.deque()

    def expect_reply(self, request_id: int, target: str) -> None:
        """Note a send just written: its reply is the next one the relay gives."""
        self._pending.append((request_id, target))

    @property
    def holding(self) -> bool:
        """Whether a tail is held back because it may start a relay word."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[Decoded]:
        """Events for these bytes; a tail that may start a relay word is held back."""
        self._buffer += data
        events: list[Decoded] = []
        while (found := self._next_word()) is not None:
            start, end = found
            if start:
                events.append(Delivery(None, self._buffer[:start]))
            word = self._buffer[start:end]
            self._buffer = self._buffer[end:]
            events.extend(self._word_received(word))

        keep = self._undecided_tail()
        if len(self._buffer) > keep:
            events.append(Delivery(None, self._buffer[: len(self._buffer) - keep]))
            self._buffer = self._buffer[len(self._buffer) - keep :]
        return events

    def flush(self) -> list[Decoded]:
        """The held-back tail as data, once no more bytes came to complete a word."""
        data, self._buffer = self._buffer, b""
        return [Delivery(None, data)] if data else []

    def _words(self) -> list[bytes]:
        words = [*V1_WORDS, b"heartBeat"]
        if self._pending:
            words.append(self._pending[0][1].encode() + b" not connect")
        return words

    def _next_word(self) -> tuple[int, int] | None:
        best: tuple[int, int] | None = None
        for word in self._words():
            at = self._buffer.find(word)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, at + len(word))
        return best

    def _undecided_tail(self) -> int:
        longest = 0
        for word in self._words():
            for size in range(min(len(word) - 1, len(self._buffer)), longest, -1):
                if self._buffer.endswith(word[:size]):
                    longest = size
                    break
        return longest

    def _word_received(self, word: bytes) -> list[Decoded]:
        if word in V1_HEARTBEAT_SPELLINGS:
            return [Heartbeat()]
        if word == b"connect_success" or not self._pending:
            # A late connect reply, or a reply to nothing we sent: nothing to match.
            return []
        request_id, target = self._pending.popleft()
        if word == b"send_success":
            return [Ack(request_id)]
        reason = "not connected" if word.endswith(b"not connect") else word.decode()
        return [Refusal(request_id, reason, target)]


class LineDecoder(Generic[Item]):
    """Turns the JSON lines of a version 2 relay, split anywhere, into what
    ``parse`` makes of each (nothing when it returns None).

    A line ``parse`` refuses, and a line longer than ``max_line`` (dropped to its
    end), come out as a ``RelayProtocolError`` in their place. Bytes are scanned
    once, however many lines one read holds.
    """

    def __init__(
        self, parse: Callable[[bytes], Item | None], max_line: int = MAX_LINE
    ) -> None:
        self._parse = parse
        self._buffer = bytearray()
        self._max_line = max_line
        self._scanned = 0
        self._skipping = False

    def feed(self, data: bytes) -> list[Item | RelayProtocolError]:
        """An item or an error for every whole line; an overlong line is skipped."""
        buffer = self._buffer
        buffer += data
        decoded: list[Item | RelayProtocolError] = []
        start = 0
        while (end := buffer.find(b"\n", max(start, self._scanned))) >= 0:
            line, start = bytes(buffer[start:end]), end + 1
            if self._skipping:
                self._skipping = False
                continue
            try:
                if (item := self._parse(line.strip())) is not None:
                    decoded.append(item)
            except RelayProtocolError as error:
                decoded.append(error)
        del buffer[:start]
        self._scanned = len(buffer)
        if len(buffer) > self._max_line:
            self._skip_overlong(decoded)
        return decoded

    def _skip_overlong(self, decoded: list[Item | RelayProtocolError]) -> None:
        self._buffer.clear()
        self._scanned = 0
        if not self._skipping:
            self._skipping = True
            limit = self._max_line
            decoded.append(RelayProtocolError(f"relay line longer than {limit} bytes"))


class V2Decoder(LineDecoder[RelayEvent]):
    """Turns the JSON lines of a version 2 relay into events."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        super().__init__(maybe_event, max_line)


def maybe_event(line: bytes) -> RelayEvent | None:
    """The event one version 2 line carries; None for blank lines and unknown kinds."""
    if not line:
        return None
    obj = json_object(line, "relay line")
    try:
        return _event_of(obj)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise RelayProtocolError(f"relay object malformed: {exc}", line[:80]) from exc


def json_object(line: bytes, what: str) -> dict[str, object]:
    """The JSON object ``line`` holds; RelayProtocolError naming ``what`` otherwise."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        # Not JSON, not UTF-8, or an integer too long to convert.
        raise RelayProtocolError(f"{what} is not JSON", line[:80]) from exc
    except RecursionError as exc:
        # Thousands of nested brackets: no reply of a relay looks like that.
        raise RelayProtocolError(f"{what} nests too deep", line[:80]) from exc
    if not isinstance(obj, dict):
        raise RelayProtocolError(f"{what} is not a JSON object", line[:80])
    return obj


def _event_of(obj: dict[str, object]) -> RelayEvent | None:
    if "ok" in obj:
        if obj["ok"] == "send":
            return Ack(_request_id(obj))
        return Pong() if obj["ok"] == "ping" else None
    if "error" in obj:
        target = obj.get("to")
        return Refusal(
            _request_id(obj), str(obj["error"]), None if target is None else str(target)
        )
    if "from" in obj:
        return Delivery(str(obj["from"]), _payload_of(obj))
    if "heartbeat" in obj:
        sent_at = obj["heartbeat"]
        return Heartbeat(float(sent_at) if isinstance(sent_at, int | float) else None)
    return None


def _payload_of(obj: dict[str, object]) -> bytes:
    if "message_b64" in obj:
        return base64.b64decode(str(obj["message_b64"]), validate=True)
    message = obj.get("message")
    if not isinstance(message, str):
        raise TypeError("a delivery without a 'message' string or 'message_b64'")
    return message.encode()


def _request_id(obj: dict[str, object]) -> int:
    value = obj.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def send_request(to: str, data: bytes, request_id: int | None) -> bytes:
    """A send request: text as ``message``, other bytes as ``message_b64`` (v2)."""
    request: dict[str, object] = {"action": "send", "to": to}
    try:
        request["message"] = data.decode()
    except UnicodeDecodeError:
        if request_id is None:
            # Version 1 carries text only; undecodable bytes become U+FFFD.
            request["message"] = data.decode(errors="replace")
        else:
            request["message_b64"] = base64.b64encode(data).decode()
    if request_id is not None:
        request["id"] = request_id
    return json.dumps(request, separators=(",", ":")).encode()


class RelayClient:
    """One card's session with the relay over one byte pipe."""

    def __init__(self, pipe: BytePipe, card: str, *, token: str | None = None):
        self.card = card
        self.version = 0
        self.heartbeat_interval: float | None = None
        self._pipe = pipe
        self._token = token
        self._next_id = 1
        self._v1 = V1Decoder()
        self._v2 = V2Decoder()
        self._ready: collections.deque[Decoded] = collections.deque()
        self._writing = asyncio.Lock()

    async def connect(self, reply_within: float = 30.0) -> int:
        """Register as this card; returns the protocol version the relay speaks."""
        request: dict[str, object] = {"action": "connect", "from": self.card}
        request["proto"] = 2
        if self._token is not None:
            request["token"] = self._token
        await self._write(json.dumps(request, separators=(",", ":")).encode())

        try:
            async with asyncio.timeout(reply_within):
                self.version = await self._connect_reply()
        except TimeoutError as exc:
            raise RelayTimeout("relay connect", reply_within, "its reply") from exc
        _LOGGER.info("card[%s]: relay speaks protocol %d", self.card, self.version)
        return self.version

    async def send(self, to: str, data: bytes) -> int:
        """Write one send request; returns its id, which its Ack or Refusal carries."""
        request_id, request = self.prepare_send(to, data)
        await self._write(request)
        return request_id

    def prepare_send(self, to: str, data: bytes) -> tuple[int, bytes]:
        """A send request and its id, to be written next, in this order with others.

        Several prepared requests may go out in one write (the relay finds their
        boundaries); each must be written, in the order prepared, before any other.
        """
        request_id, self._next_id = self._next_id, self._next_id + 1
        if self.version == 2:
            return request_id, send_request(to, data, request_id) + b"\n"
        self._v1.expect_reply(request_id, to)
        return request_id, send_request(to, data, None)

    async def write(self, requests: bytes) -> None:
        """Write prepared requests, joined, in one go."""
        await self._write(requests)

    async def ping(self) -> None:
        """Ask the relay for a sign of life (version 2 answers with a Pong)."""
        await self._write(b'{"action":"ping"}' + (b"\n" if self.version else b""))

    async def next_event(self) -> RelayEvent:
        """The next thing the relay said; raises RelayClosed when the pipe ends.

        Raises RelayProtocolError for a line that breaks the protocol, in its place
        among the events; the session may go on reading after it.
        """
        while not self._ready:
            self._ready.extend(await self._decoded_read())
        item = self._ready.popleft()
        if isinstance(item, RelayProtocolError):
            raise item
        return item

    async def _write(self, data: bytes) -> None:
        """Write whole: a module socket sends in pieces, which must not interleave."""
        async with self._writing:
            await self._pipe.write(data)

    async def close(self) -> None:
        """Close the pipe under the session."""
        await self._pipe.close()

    async def _decoded_read(self) -> list[Decoded]:
        if self.version == 2:
            return self._v2.feed(await self._read())
        if not self._v1.holding:
            return self._v1.feed(await self._read())
        try:
            async with asyncio.timeout(_V1_HOLD_SECONDS):
                data = await self._read()
        except TimeoutError:
            return self._v1.flush()
        return self._v1.feed(data)

    async def _read(self) -> bytes:
        data = await self._pipe.read()
        if not data:
            raise RelayClosed(f"card[{self.card}]: the relay closed the connection")
        return data

    async def _connect_reply(self) -> int:
        buffer = b""
        while True:
            buffer = _without_leading_heartbeats(buffer + await self._read())
            if buffer.startswith(b"{") and b"\n" in buffer:
                line, rest = buffer.split(b"\n", 1)
                if self._connect_line_received(line):
                    self._ready.extend(self._v2.feed(rest))
                    return 2
                buffer = rest
            elif buffer.startswith(b"connect_success"):
                self._ready.extend(self._v1.feed(buffer[len(b"connect_success") :]))
                return 1
            elif not buffer.startswith(b"{") and not _may_start_v1_reply(buffer):
                text = (await self._rest_of_refusal(buffer)).decode(errors="replace")
                raise RelayRefused(f"relay refused card {self.card}: {text!r}")
            if len(buffer) > MAX_LINE:
                raise RelayProtocolError("relay connect reply too long", buffer[:80])

    async def _rest_of_refusal(self, buffer: bytes) -> bytes:
        """A version 1 refusal has no end mark: take what follows for a moment."""
        with contextlib.suppress(TimeoutError, RelayClosed):
            async with asyncio.timeout(_V1_HOLD_SECONDS):
                while len(buffer) < 200:
                    buffer += await self._read()
        return buffer[:200]

    def _connect_line_received(self, line: bytes) -> bool:
        """True for the connect reply; False for a heartbeat ahead of it."""
        obj = json_object(line, "relay connect reply")
        if "error" in obj or "ok" not in obj:
            if "heartbeat" in obj and "error" not in obj:
                return False
            reason = obj.get("error", line[:200].decode(errors="replace"))
            raise RelayRefused(f"relay refused card {self.card}: {reason}")
        interval = obj.get("heartbeat")
        if isinstance(interval, int | float) and HEARTBEAT_RANGE[0] <= interval:
            # A relay may not make us ping in a busy loop, nor never miss it.
            self.heartbeat_interval = float(min(interval, HEARTBEAT_RANGE[1]))
        return True


def _may_start_v1_reply(buffer: bytes) -> bool:
    words = (b"connect_success", *V1_HEARTBEAT_SPELLINGS)
    return any(word.startswith(buffer) for word in words)


_LEADING_HEARTBEAT = re.compile(rb"^(?:\s*(?:heartbeat|heartBeat))+\s*")


def _without_leading_heartbeats(buffer: bytes) -> bytes:
    return _LEADING_HEARTBEAT.sub(b"", buffer)
