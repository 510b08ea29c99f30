"""Bring a module from power-on to a data bearer, timing every stage.

The stages: ``prepare`` (``AT``, echo off, verbose errors), ``sim`` (``AT+CPIN?``
until ready, tolerating ``SIM busy`` and a SIM that reads as not inserted for a
moment after boot; then the identity), ``registration`` (home or roaming on any
domain), ``apn`` and ``bearer``. While a stage waits, ``on_progress(stage, seconds)``
is called about once a second, so a command line can show what it waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from modembridge.channel import modem_name
from modembridge.errors import ModemTimeout, SimNotReady
from modembridge.modem import Identity, Modem, Registration, Signal, SimState

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]

POLL_SECONDS = 1.0
PROGRESS_SECONDS = 1.0

# SIM states that right after boot turn into READY by themselves.
TRANSIENT_SIM_STATES = frozenset({SimState.BUSY, SimState.ABSENT, SimState.FAILURE})


@dataclass(frozen=True)
class StageTime:
    """How long one stage of the bring-up took."""

    stage: str
    seconds: float


@dataclass(frozen=True)
class BringUpReport:
    """What the module is, where it registered, its address, and the stage times."""

    identity: Identity
    registration: Registration
    operator: str | None
    signal: Signal
    address: str
    stages: tuple[StageTime, ...]

    def seconds(self, stage: str) -> float:
        """The time ``stage`` took."""
        return next(s.seconds for s in self.stages if s.stage == stage)

    @property
    def total_seconds(self) -> float:
        """The whole bring-up."""
        return sum(s.seconds for s in self.stages)


class _Stages:
    """Times the stages, logs each at INFO, and reports progress while waiting."""

    def __init__(self, name: str, on_progress: ProgressCallback | None) -> None:
        self.name = name
        self.times: list[StageTime] = []
        self._on_progress = on_progress

    @contextlib.asynccontextmanager
    async def stage(self, stage: str) -> AsyncIterator[None]:
        """Time the body as ``stage``, reporting progress while it runs."""
        started = time.monotonic()
        ticker = asyncio.create_task(self._tick(stage, started))
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        seconds = time.monotonic() - started
        self.times.append(StageTime(stage, seconds))
        log.info("%s: %s done in %.1f s", self.name, stage, seconds)

    async def _tick(self, stage: str, started: float) -> None:
        if self._on_progress is None:
            return
        while True:
            try:
                self._on_progress(stage, time.monotonic() - started)
            except Exception:
                log.exception("%s: progress callback failed", self.name)
            await asyncio.sleep(PROGRESS_SECONDS)


async def bring_up(
    modem: Modem,
    apn: str,
    *,
    on_progress: ProgressCallback | None = None,
    sim_timeout: float = 20.0,
    registration_timeout: float = 180.0,
    bearer_timeout: float = 150.0,
    user: str = "",
    password: str = "",
) -> BringUpReport:
    """Prepare, SIM ready, registered, APN written, bearer up; each stage timed."""
    stages = _Stages(modem_name(modem.port), on_progress)
    async with stages.stage("prepare"):
        await modem.prepare()
    async with stages.stage("sim"):
        await wait_for_sim(modem, sim_timeout)
        identity = await modem.identify()
    async with stages.stage("registration"):
        registration = await wait_for_registration(modem, registration_timeout)
        operator = await modem.operator()
        signal = await modem.signal()
    async with stages.stage("apn"):
        await modem.configure_apn(apn, user, password)
    async with stages.stage("bearer"):
        address = await activate_bearer(modem, bearer_timeout)
    return BringUpReport(
        identity, registration, operator, signal, address, tuple(stages.times)
    )


async def wait_for_sim(modem: Modem, seconds: float) -> None:
    """Ask ``AT+CPIN?`` until READY; a SIM needing a PIN or PUK fails at once."""
    name = modem_name(modem.port)
    deadline = time.monotonic() + seconds
    state: SimState | str = "no answer"
    attempt = 0
    while True:
        try:
            state = await modem.sim_state()
        except ModemTimeout as timeout:
            log.debug("%s: %s", name, timeout)
        if state is SimState.READY:
            return
        if isinstance(state, SimState) and state not in TRANSIENT_SIM_STATES:
            raise SimNotReady(modem.port, state.value)
        reason = state.value if isinstance(state, SimState) else state
        if time.monotonic() >= deadline:
            raise SimNotReady(modem.port, f"{reason} after {seconds:g} s")
        log.log(_level(attempt), "%s: waiting for the SIM (%s)", name, reason)
        attempt += 1
        await asyncio.sleep(POLL_SECONDS)


async def wait_for_registration(modem: Modem, seconds: float) -> Registration:
    """Poll CREG/CGREG/CEREG until home or roaming on any domain."""
    name = modem_name(modem.port)
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        registration = await modem.registration()
        if registration.registered:
            return registration
        if time.monotonic() >= deadline:
            raise ModemTimeout("AT+CREG?/AT+CGREG?/AT+CEREG?", seconds, "registration")
        level = _level(attempt)
        log.log(level, "%s: waiting for registration (%s)", name, registration)
        attempt += 1
        await asyncio.sleep(POLL_SECONDS)


def _level(attempt: int) -> int:
    # The first wait is worth a line; its repeats only when debugging.
    return logging.INFO if attempt == 0 else logging.DEBUG


async def activate_bearer(modem: Modem, seconds: float) -> str:
    """``bearer_up`` within ``seconds``; its address."""
    limit = asyncio.timeout(seconds)
    try:
        async with limit:
            return await modem.bearer_up()
    except TimeoutError:
        if limit.expired():
            raise ModemTimeout("bearer up", seconds, "the data bearer") from None
        raise
