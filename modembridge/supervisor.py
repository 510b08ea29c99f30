"""Keeps one module's link to the relay alive, through every failure of a cellular link.

The supervisor owns the modem and the socket it opens to the relay; the caller's
session runs over that socket until it ends or the link fails. Failures are counted
in a recovery cycle that ends when a session reports it is online again. Each failure
picks a remedy on a ladder, mildest first:

    reopen the socket -> reactivate the bearer -> radio off/on -> reset the module

A failure starts at the rung its cause calls for (a dead socket or missing heartbeats
at the first, a lost bearer or a rebooted module at the second) and climbs one rung
after ``attempts_per_remedy`` failures at the same rung. A port that vanished (a USB
reset re-enumerates it) is waited for at the same path, then opened again and the
module brought up; a ``/dev/ttyUSBn`` that the udev rules also name is waited for
under its stable name, since a re-enumerated module may come back as another
``ttyUSB``. Attempts are spaced by an exponential backoff; the first failure of
a cycle is logged at WARNING, the repeats at DEBUG.

A relay that is down is not the module's fault, and no remedy of the module fixes it.
When the module reports that the relay refused or timed out the connection, or the
socket opened but the relay closed it, did not answer or answered garbage before the
card was registered, and the module still answers with its bearer up, the supervisor
stays at the first rung: it reopens the socket, with the same capped backoff, for as
long as it takes, and says so once at WARNING. The ladder is climbed only while the
module's side fails: the bearer does not come up, commands time out, sockets fail
with bearer or name resolution errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modembridge import udev
from modembridge.channel import modem_name
from modembridge.discovery import find_module_ports
from modembridge.errors import (
    BearerError,
    ModemError,
    PortVanished,
    RelayRefused,
    SocketError,
)
from modembridge.modem import EventKind, Modem, ModemEvent
from modembridge.pipe import BytePipe
from modembridge.relayclient import RelayClosed, RelayProtocolError, RelayTimeout

_LOGGER = logging.getLogger(__name__)


class LinkState(enum.Enum):
    """Where the supervisor is."""

    STARTING = "starting"
    CONNECTING = "connecting"
    ONLINE = "online"
    RECOVERING = "recovering"
    WAITING_FOR_PORT = "waiting for the port"
    STOPPED = "stopped"


class Cause(enum.Enum):
    """Why the link failed."""

    SOCKET = "socket closed"
    HEARTBEAT = "heartbeats missing"
    BEARER = "bearer lost"
    REBOOTED = "module rebooted"
    PORT = "port vanished"
    RELAY = "relay unreachable"
    ERROR = "error"


class _Phase(enum.Enum):
    """How far the current attempt got: it tells a relay that is down from the rest."""

    OPENING = "opening the socket"
    REGISTERING = "registering the card"
    ONLINE = "online"
    RECOVERING = "applying a remedy"


class Remedy(enum.IntEnum):
    """The recovery ladder, mildest first."""

    REOPEN_SOCKET = 0
    REACTIVATE_BEARER = 1
    CYCLE_RADIO = 2
    RESET_MODULE = 3


_FIRST_RUNG = {
    Cause.SOCKET: Remedy.REOPEN_SOCKET,
    Cause.HEARTBEAT: Remedy.REOPEN_SOCKET,
    Cause.ERROR: Remedy.REOPEN_SOCKET,
    Cause.RELAY: Remedy.REOPEN_SOCKET,
    Cause.BEARER: Remedy.REACTIVATE_BEARER,
    Cause.REBOOTED: Remedy.REACTIVATE_BEARER,
}


RELAY_UNREACHABLE = {
    "sim7600": frozenset({1, 10}),
    "ec20": frozenset({566, 569}),
}
"""Socket open results, by family, that say the relay refused or timed out the connect.

SIM7600 ``+CIPOPEN: <link>,1`` (connection refused or network failure) and ``,10``
(connect timeout); EC20 ``+QIOPEN: <id>,566`` (socket connect failed) and ``,569``
(operation timeout). Each is taken for the relay's side only while the bearer is up.
"""


class LinkLost(ModemError):
    """The session noticed the link is dead (closed socket, missing heartbeats)."""

    def __init__(self, cause: Cause, detail: str = "") -> None:
        super().__init__(detail or cause.value)
        self.cause = cause


@dataclass(frozen=True)
class RecoveryPolicy:
    """How hard and how fast the supervisor retries."""

    attempts_per_remedy: int = 2
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    def backoff(self, failures: int) -> float:
        """Seconds to wait before the attempt after this many failures."""
        delay = self.backoff_base * 2.0 ** max(failures - 1, 0)
        return min(delay, self.backoff_max)


RESET_VANISH_WAIT = 5.0
"""Seconds a reset module gets to take its port away before we look for it again."""

OpenModem = Callable[[str], Awaitable[Modem]]
BringUp = Callable[[Modem], Awaitable[object]]
Session = Callable[[BytePipe], Awaitable[None]]
StateCallback = Callable[[LinkState, str], None]


class Supervisor:
    """Runs a session over the module's socket to the relay, and recovers the link."""

    def __init__(
        self,
        port: str,
        relay: tuple[str, int],
        *,
        open_modem: OpenModem,
        bring_up: BringUp,
        policy: RecoveryPolicy | None = None,
        card: str = "?",
        on_state: StateCallback | None = None,
    ) -> None:
        self.port = port
        self.relay = relay
        self.card = card
        self.policy = policy or RecoveryPolicy()
        self.state = LinkState.STARTING
        self.failures = 0
        self.modem: Modem | None = None
        self._open_modem = open_modem
        self._bring_up = bring_up
        self._on_state = on_state
        self._pipe: BytePipe | None = None
        self._event_cause: Cause | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._remedy = Remedy.REOPEN_SOCKET
        self._rung_failures = 0
        self._cycle_started = 0.0
        self._relay_down_said = False
        self._phase = _Phase.OPENING
        self._tasks: set[asyncio.Task[None]] = set()
        self.watched = port

    async def start(self) -> Modem:
        """Open the port and bring the module up; errors here are the caller's."""
        self._set_state(LinkState.STARTING, self.port)
        self.watched = stable_path(self.port)
        modem = await self._open(self.port)
        await self._bring_up(modem)
        return modem

    async def run(self, session: Session) -> None:
        """Run sessions until one ends normally; recover the link between them."""
        while True:
            try:
                await self._connect_and_run(session)
            except RelayRefused:
                raise
            except ModemError as exc:
                cause = await self._diagnose(exc)
                await self._recover(cause, exc)
            else:
                return

    def online(self) -> None:
        """The session registered with the relay: the recovery cycle is over."""
        if self.failures:
            took = time.monotonic() - self._cycle_started
            _LOGGER.info(
                "card[%s]: back online after %d failed attempt(s) in %.1f s",
                self.card,
                self.failures,
                took,
            )
        self.failures = 0
        self._rung_failures = 0
        self._remedy = Remedy.REOPEN_SOCKET
        self._relay_down_said = False
        self._phase = _Phase.ONLINE
        self._set_state(LinkState.ONLINE, f"{self.relay[0]}:{self.relay[1]}")

    async def shutdown(self) -> bool:
        """Close the socket, the bearer, then the port; True when the module took it."""
        self._set_state(LinkState.STOPPED, "shutting down")
        await self._close_pipe()
        closed = False
        if self.modem is not None:
            try:
                await self.modem.bearer_down()
            except (ModemError, OSError) as exc:
                _LOGGER.info("card[%s]: bearer not closed: %s", self.card, exc)
            else:
                closed = True
            await self._close_modem()
        for task in list(self._tasks):
            task.cancel()
        return closed

    async def _connect_and_run(self, session: Session) -> None:
        modem = self.modem
        if modem is None:
            raise LinkLost(Cause.PORT, f"{self.port} is not open")
        self._set_state(LinkState.CONNECTING, f"{self.relay[0]}:{self.relay[1]}")
        self._event_cause = None
        self._phase = _Phase.OPENING
        self._pipe = await modem.open_socket(*self.relay)
        self._phase = _Phase.REGISTERING
        try:
            await session(self._pipe)
        except OSError as exc:
            # A pipe over a host socket reports a broken connection this way.
            raise LinkLost(Cause.SOCKET, str(exc) or type(exc).__name__) from exc
        finally:
            await self._close_pipe()

    async def _diagnose(self, exc: ModemError) -> Cause:
        """Why the session failed; asks the module when the relay is suspect."""
        cause = self._cause_of(exc)
        modem = self.modem
        if modem is None or not self._relay_side(exc, cause):
            return cause
        try:
            bearer_up = await modem.bearer_active()
        except ModemError as probe_exc:
            _LOGGER.debug(
                "card[%s]: module did not say whether its bearer is up: %s",
                self.card,
                probe_exc,
            )
            return cause
        return Cause.RELAY if bearer_up else Cause.BEARER

    def _relay_side(self, exc: ModemError, cause: Cause) -> bool:
        """Whether the relay refused or timed out the connect, or closed it at once."""
        if cause not in (Cause.ERROR, Cause.SOCKET):
            return False  # the module reported what went wrong on its side
        if self._phase is _Phase.REGISTERING:
            # The module carried the connect both ways; what failed is the relay.
            relay_errors = (RelayClosed, RelayProtocolError, RelayTimeout)
            return isinstance(exc, relay_errors) or cause is Cause.SOCKET
        if self._phase is not _Phase.OPENING or self.modem is None:
            return False
        codes = RELAY_UNREACHABLE.get(self.modem.facts.family, frozenset())
        return isinstance(exc, SocketError) and exc.code in codes

    def _cause_of(self, exc: ModemError) -> Cause:
        if isinstance(exc, PortVanished):
            return Cause.PORT
        if self._event_cause is not None:
            return self._event_cause
        if isinstance(exc, LinkLost):
            return exc.cause
        if isinstance(exc, BearerError):
            return Cause.BEARER
        return Cause.ERROR

    async def _recover(self, cause: Cause, exc: Exception) -> None:
        """Count the failure, wait the backoff, apply remedies until one works."""
        while True:
            remedy = self._count_failure(cause, exc)
            self._set_state(LinkState.RECOVERING, f"{cause.value}: {exc}")
            await asyncio.sleep(self.policy.backoff(self.failures))
            # What fails from here on is the remedy's own doing.
            self._phase, self._event_cause = _Phase.RECOVERING, None
            try:
                await self._apply(cause, remedy)
            except RelayRefused:
                raise
            except ModemError as retry_exc:
                cause, exc = await self._diagnose(retry_exc), retry_exc
            else:
                return

    def _count_failure(self, cause: Cause, exc: Exception) -> Remedy | None:
        """Count one failure; the remedy it calls for (None: wait for the port)."""
        if self.failures == 0:
            self._cycle_started = time.monotonic()
        self.failures += 1
        remedy = self._climb(cause)
        if cause is Cause.RELAY:
            self._relay_down(exc)
            return remedy
        action = "wait for the port" if remedy is None else remedy.name.lower()
        level = logging.WARNING if self.failures == 1 else logging.DEBUG
        _LOGGER.log(
            level,
            "card[%s]: link failed (%s: %s), failure %d, next: %s",
            self.card,
            cause.value,
            exc,
            self.failures,
            action,
        )
        return remedy

    def _relay_down(self, exc: Exception) -> None:
        """Say once a cycle that only the relay fails; the repeats go to DEBUG."""
        level = logging.DEBUG if self._relay_down_said else logging.WARNING
        self._relay_down_said = True
        _LOGGER.log(
            level,
            "card[%s]: relay %s:%d unreachable (%s), failure %d; the module and its "
            "bearer are up, so only the socket is retried, at most every %g s",
            self.card,
            self.relay[0],
            self.relay[1],
            exc,
            self.failures,
            self.policy.backoff_max,
        )

    def _climb(self, cause: Cause) -> Remedy | None:
        if cause is Cause.PORT:
            return None
        if cause is Cause.RELAY:
            # Nothing on the module's side is wrong: stay on the first rung.
            return Remedy.REOPEN_SOCKET
        first = _FIRST_RUNG[cause]
        if first > self._remedy:
            self._remedy, self._rung_failures = first, 0
        self._rung_failures += 1
        exhausted = self._rung_failures > self.policy.attempts_per_remedy
        if exhausted and self._remedy < Remedy.RESET_MODULE:
            self._remedy, self._rung_failures = Remedy(self._remedy + 1), 1
        return self._remedy

    async def _apply(self, cause: Cause, remedy: Remedy | None) -> None:
        if remedy is None:
            await self._reopen_port()
            return
        modem = self.modem
        if modem is None:
            raise LinkLost(Cause.PORT, f"{self.port} is not open")
        _LOGGER.debug("card[%s]: applying %s", self.card, remedy.name.lower())
        if remedy is Remedy.REOPEN_SOCKET:
            return
        if remedy is Remedy.RESET_MODULE:
            with contextlib.suppress(PortVanished):
                await modem.reset()
            await self._port_gone(RESET_VANISH_WAIT)
            await self._reopen_port()
            return
        if remedy is Remedy.CYCLE_RADIO:
            await modem.radio_off()
            await modem.radio_on()
        elif cause is not Cause.REBOOTED:
            with contextlib.suppress(ModemError):
                await modem.bearer_down()
        await modem.prepare()
        await self._bring_up(modem)

    async def _reopen_port(self) -> None:
        """Close the port, wait until its name is back, open it, bring up."""
        self._set_state(LinkState.WAITING_FOR_PORT, self.watched)
        await self._close_modem()
        attempt = 0
        while True:
            attempt += 1
            if port_present(self.watched):
                self.port = device_of(self.watched)
                try:
                    modem = await self._open(self.port)
                except (ModemError, OSError) as exc:
                    _LOGGER.debug(
                        "card[%s]: %s not ready: %s", self.card, self.port, exc
                    )
                else:
                    await self._bring_up(modem)
                    return
            await asyncio.sleep(self.policy.backoff(attempt))

    async def _port_gone(self, within: float) -> None:
        """Give a resetting module time to take its port away (if it does)."""
        for _ in range(round(within / 0.1)):
            if not port_present(self.watched):
                return
            await asyncio.sleep(0.1)

    async def _open(self, port: str) -> Modem:
        modem = await self._open_modem(port)
        self.modem = modem
        self._unsubscribe = modem.subscribe(self._event_received)
        return modem

    def _event_received(self, event: ModemEvent) -> None:
        cause = {
            EventKind.SOCKET_CLOSED: Cause.SOCKET,
            EventKind.BEARER_LOST: Cause.BEARER,
            EventKind.REBOOTED: Cause.REBOOTED,
        }.get(event.kind)
        if cause is None or self._pipe is None:
            return
        link = getattr(self._pipe, "link", None)
        if cause is Cause.SOCKET and event.link not in (None, link):
            return
        _LOGGER.info(
            "card[%s]: module reports %s (%s)", self.card, cause.value, event.urc
        )
        if (
            self._event_cause is None
            or _FIRST_RUNG[cause] > _FIRST_RUNG[self._event_cause]
        ):
            self._event_cause = cause
        # Closing the pipe ends the session's read, which ends the session.
        task = asyncio.get_running_loop().create_task(self._close_pipe())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_pipe(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            with contextlib.suppress(ModemError, OSError):
                await pipe.close()

    async def _close_modem(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        modem, self.modem = self.modem, None
        if modem is not None:
            with contextlib.suppress(ModemError, OSError):
                await modem.close()

    def _set_state(self, state: LinkState, detail: str) -> None:
        self.state = state
        if self._on_state is not None:
            self._on_state(state, detail)


def port_present(path: str) -> bool:
    """Whether a device node (or the link naming it) exists at ``path`` now."""
    return os.path.exists(path)


def stable_path(port: str) -> str:
    """The name to wait for when ``port`` vanishes: its udev rules' name if it has one.

    A path that is itself a link (a ``--link`` of the simulator, a by-id name) already
    follows the device and is kept.
    """
    if os.path.islink(port):
        return port
    device = os.path.realpath(port)
    for module_port in find_module_ports(with_holders=False):
        stable = module_port.stable_name
        if stable is not None and os.path.realpath(module_port.device) == device:
            _LOGGER.info("%s: known to udev as %s", modem_name(port), stable)
            return stable
    return port


def device_of(path: str) -> str:
    """The device node a udev name points at now; other paths unchanged."""
    if path.startswith(f"/dev/{udev.LINK_DIR}/"):
        return os.path.realpath(path)
    return path
