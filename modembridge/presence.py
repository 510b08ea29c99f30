"""Presence at the relay, seen from the host: wait until a card is online or gone.

A ``PresenceWatcher`` is a card of its own. It connects to the relay in protocol
version 2 under an observer name nobody else uses and asks the relay about other
cards, instead of guessing from sleeps and retried sends (docs/cluster.md,
"Presence"). On a cluster of relay nodes the answers cover every node.

``online(names)`` is a ``who`` request: those of ``names`` online now. The first
``wait_online(name)`` or ``wait_offline(name)`` about a name sends ``watch``. Its
reply says whether the card is online now, and the relay then writes one line per
change, ``{"presence":"online","card":"B"}``, never before that reply. The watcher
keeps the last state of every name it watches, so a later wait about the same name
sends nothing. It answers each relay heartbeat with a ``ping``, so a relay with an
idle timeout keeps it.

What the relay writes after the connect reply goes through ``PresenceDecoder``,
which does no I/O: bytes split anywhere in; replies, changes and heartbeats out; a
line that is not a JSON object of the protocol becomes a ``RelayProtocolError`` in
its place. Deliveries and kinds of line it does not know are dropped. Replies are
matched to requests in order, the order a relay answers in, and the ``id`` a reply
carries must be its request's. The lines are parsed as JSON, never evaluated.

A wait is for a state, not for a passage: a card that goes and comes back within
one read of the watcher is online when ``wait_offline`` looks, and that wait goes on.
Wait for what must hold at the end (``wait_online`` after a reset), or watch the
card before the event with a first wait.

A relay that does not know presence speaks version 1 only, or answers ``wrong
format`` to ``who`` and ``watch`` (a version 2 relay from before presence): both
raise ``PresenceUnsupported``. Bad bytes from the relay, or the connection ending,
end the watcher: every wait from then on raises that error. Memory is bounded: a
line is at most ``MAX_LINE`` bytes, the relay lets one card watch ``MAX_NAMES``
names at most, and changes of names not watched are not kept.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from modembridge.errors import ModemError
from modembridge.pipe import TcpPipe
from modembridge.relayclient import (
    Heartbeat,
    LineDecoder,
    RelayClient,
    RelayClosed,
    RelayProtocolError,
    json_object,
)

logger = logging.getLogger(__name__)

MAX_NAMES = 1000
"""The most names one request may carry, and one card watch, at the relay."""
MAX_NAME_CHARACTERS = 256
"""The longest card name the relay accepts."""
MAX_LINE = 4 * 1024 * 1024
"""Longest line buffered: a ``who`` reply naming ``MAX_NAMES`` cards of
``MAX_NAME_CHARACTERS`` characters, each written as a ``\\u`` escape pair, fits."""
MAX_UNANSWERED = 10_000
"""Requests the relay may leave unanswered before the watcher gives up on it."""

_observers = itertools.count(1)


def observer_name(prefix: str = "hil-observer") -> str:
    """A card name unique to this process and call: ``hil-observer-4711-3``."""
    return f"{prefix}-{os.getpid()}-{next(_observers)}"


class PresenceError(ModemError):
    """The relay refused a presence request: ``what`` in its words, ``detail`` why."""

    def __init__(self, message: str, *, what: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.what = what
        self.detail = detail


class PresenceUnsupported(PresenceError):
    """The relay does not answer presence requests: it predates them."""


class PresenceTimeout(ModemError, TimeoutError):
    """A card did not reach the state waited for, or a request stayed unanswered."""

    def __init__(self, message: str, *, card: str | None, seconds: float) -> None:
        super().__init__(message)
        self.card = card
        self.seconds = seconds


# ---------------------------------------------------------------------------------
# Lines in, items out


@dataclass(frozen=True)
class Reply:
    """The relay's answer to a request: ``ok`` names the action, or ``error`` why."""

    ok: str | None
    error: str | None
    request_id: int | None
    online: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class Change:
    """A watched card came online (``online``) or went offline."""

    card: str
    online: bool


Item = Reply | Change | Heartbeat
Decoded = Item | RelayProtocolError


class PresenceDecoder(LineDecoder[Item]):
    """Turns what a version 2 relay writes into replies, changes and heartbeats."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        super().__init__(maybe_item, max_line)


def maybe_item(line: bytes) -> Item | None:
    """What one line says; None for a blank line, a delivery or an unknown kind."""
    if not line:
        return None
    obj = json_object(line, "relay line")
    try:
        return _item_of(obj)
    except (TypeError, ValueError) as exc:
        raise RelayProtocolError(f"relay line malformed: {exc}", line[:80]) from exc


def _item_of(obj: dict[str, object]) -> Item | None:
    """The item of one object, classified by its first key in protocol order."""
    if "ok" in obj:
        online = _names(obj.get("online", []))
        return Reply(_text(obj["ok"], "ok"), None, _request_id(obj), online)
    if "error" in obj:
        detail = str(obj.get("detail", ""))
        return Reply(None, _text(obj["error"], "error"), _request_id(obj), (), detail)
    if "from" not in obj and "heartbeat" in obj:
        return _heartbeat(obj["heartbeat"])
    if "from" not in obj and "presence" in obj:
        return _change(obj)
    # A delivery (nobody writes to an observer) or a kind of line newer than this.
    return None


def _heartbeat(sent_at: object) -> Heartbeat:
    if isinstance(sent_at, bool) or not isinstance(sent_at, int | float):
        return Heartbeat(None)
    return Heartbeat(float(sent_at))


def _change(obj: dict[str, object]) -> Change:
    state = obj["presence"]
    if state not in ("online", "offline"):
        raise ValueError(f"presence {state!r} is neither online nor offline")
    return Change(_text(obj.get("card"), "card"), state == "online")


def _text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{key!r} is not a non-empty string")
    return value


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise TypeError("'online' is not a list of card names")
    return tuple(value)


def _request_id(obj: dict[str, object]) -> int | None:
    value = obj.get("id")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"'id' {value!r} is not one this client sends")
    return value


def check_names(names: Sequence[str]) -> None:
    """Refuse what no relay takes for a list of card names (TypeError, ValueError)."""
    if isinstance(names, str):
        raise TypeError(f"names must be a list of card names, not {names!r}")
    if not 1 <= len(names) <= MAX_NAMES:
        raise ValueError(f"give 1 to {MAX_NAMES} card names, not {len(names)}")
    for name in names:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARACTERS:
            raise ValueError(
                f"{name!r} is not a card name of 1 to {MAX_NAME_CHARACTERS} characters"
            )


# ---------------------------------------------------------------------------------
# The watcher


@dataclass
class _Request:
    """A request written and not answered yet; ``answer`` is None for a ping."""

    action: str
    names: tuple[str, ...]
    request_id: int
    answer: asyncio.Future[list[str]] | None


class PresenceWatcher:
    """One observer connection to a relay, answering who is online and waiting."""

    def __init__(self, relay: tuple[str, int], name: str | None = None) -> None:
        self.relay = relay
        self.name = name or observer_name()
        self._pipe: TcpPipe | None = None
        self._reader: asyncio.Task[None] | None = None
        self._decoder = PresenceDecoder()
        self._ids = itertools.count(1)
        self._unanswered: collections.deque[_Request] = collections.deque()
        self._writing = asyncio.Lock()
        self._state: dict[str, bool] = {}
        self._changed = asyncio.Event()
        self._failure: ModemError | None = None
        self._pinging = False

    @property
    def _where(self) -> str:
        return f"{self.relay[0]}:{self.relay[1]}"

    async def open(self, within: float = 10.0) -> None:
        """Connect as the observer card in protocol version 2."""
        host, port = self.relay
        try:
            async with asyncio.timeout(within):
                pipe = await TcpPipe.connect(host, port)
        except (OSError, TimeoutError) as exc:
            reason = str(exc) or f"no answer in {within:g} s"
            raise RelayClosed(
                f"observer[{self.name}]: cannot reach the relay at {self._where} "
                f"({reason})"
            ) from exc

        try:
            version = await RelayClient(pipe, self.name).connect(within)
        except OSError as exc:
            await pipe.close()
            raise self._lost(exc) from exc
        except BaseException:
            await pipe.close()
            raise
        if version != 2:
            await pipe.close()
            raise PresenceUnsupported(
                f"observer[{self.name}]: the relay at {self._where} does not support "
                "presence: it speaks protocol version 1 only",
                what="version 1",
            )
        # The connect's client kept what followed its reply; that can only be
        # heartbeats, since nothing was asked yet. The pipe is ours from here.
        self._pipe = pipe
        self._reader = asyncio.create_task(self._read_forever())
        logger.info("observer[%s]: watching presence at %s", self.name, self._where)

    async def close(self) -> None:
        """End the observer's connection; waits from then on raise RelayClosed."""
        self._fail(RelayClosed(f"observer[{self.name}]: closed"), warn=False)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._pipe is not None:
            await self._pipe.close()

    async def __aenter__(self) -> PresenceWatcher:
        """Open the watcher."""
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the watcher."""
        await self.close()

    async def online(self, names: Sequence[str], within: float = 10.0) -> list[str]:
        """Those of ``names`` online at the relay now, in the order asked."""
        check_names(names)
        try:
            async with asyncio.timeout(within):
                return await self._request("who", names)
        except TimeoutError as exc:
            raise PresenceTimeout(
                f"observer[{self.name}]: the relay at {self._where} did not answer "
                f"who in {within:g} s",
                card=None,
                seconds=within,
            ) from exc

    def is_online(self, name: str) -> bool | None:
        """The last state the relay gave of ``name`` (True: online); None: unwatched."""
        return self._state.get(name)

    async def wait_online(self, name: str, within: float = 60.0) -> float:
        """Wait until card ``name`` is online at the relay; returns seconds waited."""
        return await self._wait(name, online=True, within=within)

    async def wait_offline(self, name: str, within: float = 60.0) -> float:
        """Wait until card ``name`` is offline at the relay; returns seconds waited."""
        return await self._wait(name, online=False, within=within)

    async def _wait(self, name: str, *, online: bool, within: float) -> float:
        check_names([name])
        state = "online" if online else "offline"
        began = time.monotonic()
        logger.debug(
            "observer[%s]: waiting up to %g s for card %s %s",
            self.name, within, name, state,
        )  # fmt: skip
        try:
            async with asyncio.timeout(within):
                # What the watcher knew before it failed may be out of date.
                self._raise_failure()
                if name not in self._state:
                    await self._request("watch", [name])
                while self._state.get(name) is not online:
                    self._raise_failure()
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError as exc:
            raise PresenceTimeout(
                f"observer[{self.name}]: card {name} not {state} at the relay "
                f"{self._where} after {within:g} s",
                card=name,
                seconds=within,
            ) from exc
        waited = time.monotonic() - began
        logger.info(
            "observer[%s]: card %s %s at the relay after %.3f s",
            self.name, name, state, waited,
        )  # fmt: skip
        return waited

    async def _request(self, action: str, names: Sequence[str]) -> list[str]:
        """Write one ``who`` or ``watch`` and wait for its reply."""
        answer: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        await self._write(action, names, answer)
        return await answer

    async def _write(
        self,
        action: str,
        names: Sequence[str],
        answer: asyncio.Future[list[str]] | None,
    ) -> None:
        """Write a request, noted as unanswered in the order the relay sees it."""
        request: dict[str, object] = {"action": action}
        if names:
            request["names"] = list(names)
        async with self._writing:
            self._raise_failure()
            if len(self._unanswered) >= MAX_UNANSWERED:
                self._fail(
                    RelayProtocolError(
                        f"observer[{self.name}]: the relay left {MAX_UNANSWERED} "
                        "requests unanswered"
                    )
                )
                self._raise_failure()
            request["id"] = request_id = next(self._ids)
            self._unanswered.append(_Request(action, tuple(names), request_id, answer))
            line = json.dumps(request, separators=(",", ":")).encode() + b"\n"
            try:
                await self._opened_pipe().write(line)
            except (ModemError, OSError) as exc:
                self._fail(self._lost(exc))
                self._raise_failure()

    def _opened_pipe(self) -> TcpPipe:
        if self._pipe is None:
            raise RelayClosed(f"observer[{self.name}]: not opened")
        return self._pipe

    async def _read_forever(self) -> None:
        pipe = self._opened_pipe()
        try:
            while True:
                data = await pipe.read()
                if not data:
                    raise RelayClosed(
                        f"observer[{self.name}]: the relay closed the connection"
                    )
                for item in self._decoder.feed(data):
                    await self._item_received(item)
        except ModemError as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(self._lost(exc))
        # Nothing the relay says from here on is read: let it see the end.
        await pipe.close()

    def _lost(self, exc: BaseException) -> RelayClosed:
        return RelayClosed(
            f"observer[{self.name}]: connection to the relay lost: {exc}"
        )

    async def _item_received(self, item: Decoded) -> None:
        if isinstance(item, RelayProtocolError):
            raise RelayProtocolError(f"observer[{self.name}]: {item}", item.data)
        if isinstance(item, Change):
            self._change_received(item)
        elif isinstance(item, Reply):
            self._reply_received(item)
        elif not self._pinging:
            # A relay with an idle timeout counts heartbeat intervals of silence.
            self._pinging = True
            await self._write("ping", (), None)

    def _change_received(self, change: Change) -> None:
        if change.card not in self._state:
            return
        self._state[change.card] = change.online
        self._changed.set()
        state = "online" if change.online else "offline"
        logger.debug("observer[%s]: card %s went %s", self.name, change.card, state)

    def _reply_received(self, reply: Reply) -> None:
        if not self._unanswered:
            raise RelayProtocolError(
                f"observer[{self.name}]: a reply to no request: {reply}"
            )
        request = self._unanswered[0]
        if reply.request_id is not None and reply.request_id != request.request_id:
            raise RelayProtocolError(
                f"observer[{self.name}]: reply {reply} to request "
                f"{request.request_id} ({request.action}), out of order"
            )
        if reply.error is None and reply.ok != request.action:
            raise RelayProtocolError(
                f"observer[{self.name}]: {reply} answers {request.action}"
            )
        # Taken off only now: a request whose reply was bad fails with the watcher.
        self._unanswered.popleft()

        if request.answer is None:
            self._pinging = False
        elif reply.error is not None:
            self._settle(request.answer, error=self._refusal(request, reply))
        else:
            if request.action == "watch":
                self._watch_answered(request.names, set(reply.online))
            self._settle(request.answer, result=list(reply.online))

    def _watch_answered(self, names: Sequence[str], online: set[str]) -> None:
        """Take the state the reply gives, before any change line that follows it."""
        for name in names:
            self._state[name] = name in online
        self._changed.set()

    def _refusal(self, request: _Request, reply: Reply) -> PresenceError:
        error = reply.error or ""
        detail = f" ({reply.detail})" if reply.detail else ""
        if error == "wrong format":
            # The names were checked here as the relay checks them: the relay does
            # not know the request at all.
            return PresenceUnsupported(
                f"observer[{self.name}]: the relay at {self._where} does not support "
                f"presence: it answered wrong format to {request.action}{detail}",
                what=error,
                detail=reply.detail,
            )
        return PresenceError(
            f"observer[{self.name}]: the relay refused {request.action}: "
            f"{error}{detail}",
            what=error,
            detail=reply.detail,
        )

    @staticmethod
    def _settle(
        answer: asyncio.Future[list[str]],
        *,
        result: list[str] | None = None,
        error: ModemError | None = None,
    ) -> None:
        if answer.done():
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result or [])

    def _fail(self, error: ModemError, *, warn: bool = True) -> None:
        """End the watcher with ``error``: pending and later requests raise it."""
        if self._failure is None:
            self._failure = error
            if warn:
                logger.warning("%s; presence is unknown from now on", error)
        for request in self._unanswered:
            if request.answer is not None:
                self._settle(request.answer, error=error)
        self._unanswered.clear()
        self._changed.set()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
