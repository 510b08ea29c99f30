"""The request decoder: bytes from a card in, requests or decode errors out, no I/O.

TCP carries no message boundaries, so the decoder finds them itself. A request starts
at ``{`` and ends at the brace that balances it, counting only braces outside quoted
strings. Between requests it skips whitespace, NUL, ``,`` and ``;``; any other byte
starts a run of garbage that ends before the next ``{``, after the next newline or at
the end of the bytes at hand, and is reported once as a :class:`DecodeError`.

A request is bounded (``max_size`` bytes): past the bound the decoder reports it and
keeps tracking braces without keeping the bytes, so it resumes at the next request.
A raw newline inside a quoted string is illegal in both spellings, which gives a
second resynchronisation point: the request is reported and decoding resumes after
the newline. Braces nested deeper than the literal grammar allows are reported and
the rest of that line is dropped.

The common requests, a send of a plain message and a plain connect, are matched by
one regular expression straight from the bytes (also when a request was completed by
a later read); everything else goes through the literal parser. Both paths give the
same request for the same bytes.

A connection may also take a whole run of sends at once (:meth:`RequestDecoder.
maybe_sends`): when the bytes at hand are nothing but sends spelled exactly as
deployed cards spell them, up to a request still unfinished at the end, one pass of
a regular expression finds them all, a sum of their lengths proves that they tile
the bytes, and their messages are grouped per target, with no request object each.
The relay routes such a run only when it can do so exactly as it would route the
sends one by one, and otherwise decodes the same bytes the usual way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from operator import add

from relayserver.errors import DecodeError
from relayserver.literal import MAX_DEPTH, parse_dict
from relayserver.requests import (
    MAX_NAME_BYTES,
    PROTOCOLS,
    Connect,
    Request,
    Send,
    from_dict,
)

DEFAULT_MAX_SIZE = 64 * 1024

Event = Request | DecodeError

_SEPARATORS = re.compile(rb"[ \t\r\n\x00,;]*")
_GARBAGE_END = re.compile(rb"[{\n]")
_OUTSIDE = re.compile(rb"[{}'\"]")
_INSIDE = {
    ord("'"): re.compile(rb"['\\\n]"),
    ord('"'): re.compile(rb"[\"\\\n]"),
}
_OPEN, _CLOSE, _BACKSLASH, _NEWLINE = b"{}\\\n"
_SHOWN = 32

# The common send in either spelling; "~" stands for optional JSON whitespace. Names
# and messages with quotes or backslashes, other key orders and other id types are
# left to the full parser. No class can match the byte after it, so the possessive
# quantifiers change no match; they only spare the engine its backtracking records.
_FAST_SEND = re.compile(
    rb"""\{~(['"])action\1~:~(['"])send\2~,"""
    rb"""~(['"])to\3~:~(['"])([^'"\\\n]++)\4~,"""
    rb"""~(['"])message\6~:~(?:'([^'\\\n]*+)'|"([^"\\\n]*+)")"""
    rb"""(?:~,~(['"])id\9~:~(0|[1-9][0-9]{0,17}))?~\}""".replace(b"~", rb"[ \t\r\n]*+")
)
# The common connect: a name, then optionally a version and an id, in this order.
_FAST_CONNECT = re.compile(
    rb"""\{~(['"])action\1~:~(['"])connect\2~,"""
    rb"""~(['"])from\3~:~(['"])([^'"\\\n]++)\4"""
    rb"""(?:~,~(['"])proto\6~:~([1-9][0-9]{0,17}))?"""
    rb"""(?:~,~(['"])id\8~:~(0|[1-9][0-9]{0,17}))?~\}""".replace(b"~", rb"[ \t\r\n]*+")
)

# A version 1 send spelled byte for byte as deployed cards spell it: no spaces, these
# keys in this order, no id. Its name and message take what _FAST_SEND's do, so a
# run of them decodes to the very sends the fast path would give one by one.
_CANONICAL_SEND = (
    rb"\{'action':'send','to':'([^'\"\\\n]{1,%d}+)','message':'([^'\\\n]*+)'\}"
)
_CANONICAL_SENDS = re.compile(_CANONICAL_SEND % MAX_NAME_BYTES)
_CANONICAL_FRAME = len(b"{'action':'send','to':'','message':''}")


@dataclass(slots=True)
class SendRun:
    """``count`` sends tiling ``view`` up to ``end``, each target's messages in
    order; what follows ``end`` is yet to be decoded."""

    messages: dict[bytes, list[bytes]]
    count: int
    view: bytes
    end: int


class _Mode(Enum):
    NORMAL = 1
    SKIP_REQUEST = 2
    SKIP_LINE = 3


class _ScanError(Exception):
    """The brace scan met bytes no request may hold; decoding resumes at ``resume``."""

    def __init__(self, reason: str, resume: int, *, line_left: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resume = resume
        self.line_left = line_left


class RequestDecoder:
    """Feed it bytes as they arrive; it returns the requests and errors they complete.

    Memory is bounded by ``max_size`` plus one read, whatever the input.
    """

    __slots__ = (
        "_buffer",
        "_depth",
        "_escaped",
        "_max_size",
        "_mode",
        "_quote",
        "_scanned",
    )

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._max_size = max_size
        self._buffer: bytearray | None = None
        self._mode = _Mode.NORMAL
        self._depth = 0
        self._quote = 0
        self._escaped = False
        self._scanned = 0

    @property
    def pending(self) -> int:
        """How many bytes of an unfinished request the decoder holds."""
        return len(self._buffer) if self._buffer else 0

    def feed(self, data: bytes) -> list[Event]:
        """Take the next bytes; return the requests and errors completed by them."""
        buffer = self._buffer
        if buffer:
            buffer += data
            return self._feed_from(buffer, 0)
        return self._feed_from(data, 0)

    def maybe_sends(self, data: bytes) -> SendRun | None:
        """The sends, not taken yet (see :meth:`take`), when the held bytes and
        ``data`` are sends in deployed cards' spelling up to an unfinished request
        at most; else None."""
        held = self._buffer
        if self._mode is not _Mode.NORMAL or (held and len(held) > len(data)):
            # Held bytes are scanned again here, so only while that stays cheap.
            return None
        view = bytes(held) + data if held else data
        end = view.rfind(b"'}") + 2
        sends = _CANONICAL_SENDS.findall(view, 0, end)
        if not sends:
            return None
        names, texts = zip(*sends, strict=True)
        count = len(sends)
        tiled = _CANONICAL_FRAME * count + sum(map(len, names)) + sum(map(len, texts))
        if tiled != end:
            return None  # something else lies between them
        if _too_large(names, texts, end, self._max_size):
            return None
        return SendRun(_by_target(names, texts), count, view, end)

    def take(self, run: SendRun) -> list[Event]:
        """Count ``run``'s sends as handled; return what the bytes after it hold."""
        self._buffer = None
        self._reset_scan()
        return self._feed_from(run.view, run.end)

    def _feed_from(self, view: bytes | bytearray, pos: int) -> list[Event]:
        events: list[Event] = []
        kept = self._decode(view, pos, events)
        self._keep(view, kept)
        return events

    def _keep(self, view: bytes | bytearray, kept: int) -> None:
        if kept >= len(view):
            self._buffer = None
        elif view is self._buffer:
            del view[:kept]
        else:
            self._buffer = bytearray(memoryview(view)[kept:])

    def _decode(self, view: bytes | bytearray, pos: int, events: list[Event]) -> int:
        """Decode ``view`` from ``pos``; return where the unfinished tail starts."""
        end = len(view)
        fast_send, fast_connect = _FAST_SEND.match, _FAST_CONNECT.match
        max_size, append = self._max_size, events.append
        while pos < end:
            if self._mode is not _Mode.NORMAL:
                pos = self._skip(view, pos)
                continue
            if self._scanned == 0:
                if view[pos] != _OPEN:
                    pos = _skip_separators(view, pos)
                    if pos == end:
                        break
                # The common requests, straight from the bytes (see the docstring).
                fast = fast_send(view, pos) or fast_connect(view, pos)
                if fast is not None and fast.end() - pos <= max_size:
                    request = _fast_request(fast)
                    if request is not None:
                        append(request)
                        pos = fast.end()
                        continue
            after = self._next_request(view, pos, events)
            if after is None:
                return pos
            pos = after
        return pos

    def _skip(self, view: bytes | bytearray, pos: int) -> int:
        if self._mode is _Mode.SKIP_REQUEST:
            return self._skip_request(view, pos)
        return self._skip_line(view, pos)

    def _next_request(
        self, view: bytes | bytearray, pos: int, events: list[Event]
    ) -> int | None:
        """Decode the request or garbage starting at ``pos`` (no separator); None if
        the request is not complete yet."""
        if self._scanned == 0 and view[pos] != _OPEN:
            return self._garbage(view, pos, events)
        return self._scan_request(view, pos, events)

    def _scan_request(
        self, view: bytes | bytearray, pos: int, events: list[Event]
    ) -> int | None:
        try:
            end = self._scan(view, pos + self._scanned)
        except _ScanError as error:
            events.append(DecodeError(error.reason, bytes(view[pos : pos + _SHOWN])))
            self._mode = _Mode.SKIP_LINE if error.line_left else _Mode.NORMAL
            return error.resume
        if end is None:
            return self._unfinished(view, pos, events)
        self._reset_scan()
        if end - pos > self._max_size:
            events.append(self._too_large(view, pos))
        else:
            events.append(_fast_or_parse(view, pos, end))
        return end

    def _unfinished(
        self, view: bytes | bytearray, pos: int, events: list[Event]
    ) -> int | None:
        if len(view) - pos <= self._max_size:
            self._scanned = len(view) - pos
            return None
        events.append(self._too_large(view, pos))
        self._scanned = 0
        self._mode = _Mode.SKIP_REQUEST
        return len(view)

    def _garbage(self, view: bytes | bytearray, pos: int, events: list[Event]) -> int:
        stop = _GARBAGE_END.search(view, pos)
        if stop is None:
            end = len(view)
        else:
            end = stop.start() if view[stop.start()] == _OPEN else stop.end()
        shown = bytes(view[pos : min(end, pos + _SHOWN)])
        events.append(DecodeError("not a request (a request starts with '{')", shown))
        return end

    def _too_large(self, view: bytes | bytearray, pos: int) -> DecodeError:
        shown = bytes(view[pos : pos + _SHOWN])
        return DecodeError(f"request larger than {self._max_size} bytes", shown)

    def _skip_request(self, view: bytes | bytearray, pos: int) -> int:
        try:
            end = self._scan(view, pos)
        except _ScanError as error:
            self._mode = _Mode.SKIP_LINE if error.line_left else _Mode.NORMAL
            return error.resume
        if end is None:
            return len(view)
        self._reset_scan()
        self._mode = _Mode.NORMAL
        return end

    def _skip_line(self, view: bytes | bytearray, pos: int) -> int:
        newline = view.find(b"\n", pos)
        if newline < 0:
            return len(view)
        self._mode = _Mode.NORMAL
        return newline + 1

    def _scan(self, view: bytes | bytearray, pos: int) -> int | None:
        """Advance the brace scan from ``pos``; return the index after the balancing
        brace, or None when the bytes ran out (the scan state is kept to resume)."""
        depth, quote = self._depth, self._quote
        while True:
            if quote:
                after = self._string_end(view, pos, quote)
                if after is None:
                    self._depth, self._quote = depth, quote
                    return None
                pos, quote = after, 0
                continue
            found = _OUTSIDE.search(view, pos)
            if found is None:
                self._depth, self._quote = depth, 0
                return None
            char, pos = view[found.start()], found.end()
            if char == _OPEN:
                depth = self._deeper(depth, pos)
            elif char == _CLOSE:
                depth -= 1
                if depth == 0:
                    return pos
            else:
                quote = char

    def _deeper(self, depth: int, pos: int) -> int:
        if depth >= MAX_DEPTH:
            self._reset_scan()
            raise _ScanError(f"nested deeper than {MAX_DEPTH}", pos, line_left=True)
        return depth + 1

    def _string_end(self, view: bytes | bytearray, pos: int, quote: int) -> int | None:
        """The index after the string's closing quote, or None if it has not come."""
        if self._escaped:
            pos += 1
            self._escaped = False
        inside = _INSIDE[quote]
        while True:
            found = inside.search(view, pos)
            if found is None:
                return None
            char, pos = view[found.start()], found.end()
            if char == quote:
                return pos
            if char == _NEWLINE:
                self._reset_scan()
                raise _ScanError("line break inside a string", pos, line_left=False)
            if pos == len(view):
                # The escaped byte has not arrived yet: skip it when it does.
                self._escaped = True
                return None
            pos += 1

    def _reset_scan(self) -> None:
        self._depth = 0
        self._quote = 0
        self._escaped = False
        self._scanned = 0


def _skip_separators(view: bytes | bytearray, pos: int) -> int:
    match = _SEPARATORS.match(view, pos)
    return pos if match is None else match.end()


def _fast_send(match: re.Match[bytes]) -> Send | None:
    """The send the fast pattern matched, or None to leave it to the full parser."""
    to, single, double, request_id = match.group(5, 7, 8, 10)
    if len(to) > MAX_NAME_BYTES:
        return None
    message = single if single is not None else double
    ident = None if request_id is None else int(request_id)
    name = to.decode("utf-8", "surrogateescape")
    return Send(name, message, binary=False, id=ident)


def _fast_connect(match: re.Match[bytes]) -> Connect | None:
    """The connect the fast pattern matched, or None to leave it to the full parser."""
    name, proto, request_id = match.group(5, 7, 9)
    if len(name) > MAX_NAME_BYTES:
        return None
    version = 1 if proto is None else min(int(proto), PROTOCOLS[-1])
    ident = None if request_id is None else int(request_id)
    return Connect(name.decode("utf-8", "surrogateescape"), version, None, ident)


def _fast_request(match: re.Match[bytes]) -> Request | None:
    """The request a fast pattern matched, or None to leave it to the full parser."""
    if match.re is _FAST_SEND:
        return _fast_send(match)
    return _fast_connect(match)


def _fast_or_parse(view: bytes | bytearray, pos: int, end: int) -> Event:
    """The request ``view[pos:end]`` (one balanced literal) stands for, by a fast
    pattern when one matches it whole."""
    fast = _FAST_SEND.fullmatch(view, pos, end) or _FAST_CONNECT.fullmatch(
        view, pos, end
    )
    request = None if fast is None else _fast_request(fast)
    return request if request is not None else _parse(view[pos:end])


def _by_target(
    names: tuple[bytes, ...], texts: tuple[bytes, ...]
) -> dict[bytes, list[bytes]]:
    """The messages per target, each target's in order."""
    if names.count(names[0]) == len(names):
        return {names[0]: list(texts)}
    messages: dict[bytes, list[bytes]] = {}
    for to, text in zip(names, texts, strict=True):
        group = messages.get(to)
        if group is None:
            messages[to] = [text]
        else:
            group.append(text)
    return messages


def _too_large(
    names: tuple[bytes, ...], texts: tuple[bytes, ...], end: int, max_size: int
) -> bool:
    """Whether one of the sends tiling ``end`` bytes is larger than ``max_size``."""
    # The others take a frame and a one-byte name at least, which often settles it.
    if end - (len(names) - 1) * (_CANONICAL_FRAME + 1) <= max_size:
        return False
    longest: int = max(map(add, map(len, names), map(len, texts)))
    return _CANONICAL_FRAME + longest > max_size


def _parse(raw: bytes | bytearray) -> Event:
    """The request ``raw`` (one balanced literal) stands for, or why it is none."""
    text = bytes(raw).decode("utf-8", "surrogateescape")
    try:
        return from_dict(parse_dict(text))
    except DecodeError as error:
        error.data = bytes(raw[:_SHOWN])
        return error
