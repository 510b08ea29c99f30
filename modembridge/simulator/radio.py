"""The cellular side of the simulated module: SIM, signal, registration, radio power.

Everything here is a function of time since boot and of the faults in force, so a
query answers what a real module would say at that moment. Changes that a real module
announces by itself (the SIM becoming ready, registration gained or lost) are
delivered through ``changed`` callbacks, scheduled on the loop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class SimState(enum.Enum):
    """What ``AT+CPIN?`` can tell."""

    READY = "ready"
    BUSY = "busy"
    ABSENT = "absent"


# Registration status values of +CREG/+CGREG/+CEREG (3GPP 27.007).
NOT_SEARCHING = 0
HOME = 1
SEARCHING = 2


class Radio:
    """SIM, signal and registration state, with the faults that change them."""

    def __init__(
        self,
        *,
        sim_absent: bool,
        sim_busy_seconds: float,
        no_signal: bool,
        registration_delay: float,
        signal: int,
    ) -> None:
        self.sim_absent = sim_absent
        self.sim_busy_seconds = sim_busy_seconds
        self.no_signal = no_signal
        self.registration_delay = registration_delay
        self.signal = signal
        self.name = "radio"
        self.powered = True
        self.sim_ready_changed: Callable[[], None] = lambda: None
        self.registration_changed: Callable[[int], None] = lambda _stat: None
        self._booted_at = 0.0
        self._lost_until = 0.0
        self._timers: list[asyncio.TimerHandle] = []
        self._last_stat = NOT_SEARCHING

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def boot(self) -> None:
        """Start a fresh boot's clock: SIM busy, then searching, then registered."""
        self.cancel_timers()
        self.powered = True
        self._booted_at = self._now()
        self._lost_until = 0.0
        self._last_stat = self.registration()
        if not self.sim_absent and self.sim_busy_seconds > 0:
            self._at(self.sim_busy_seconds, self._sim_ready)
        elif not self.sim_absent:
            self._sim_ready()
        self._at(self._registered_after(), self._check_registration)

    def _sim_ready(self) -> None:
        self.sim_ready_changed()
        self._check_registration()

    def cancel_timers(self) -> None:
        """Forget scheduled changes (the module lost power)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _at(self, delay: float, callback: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        # Timers that have run are dropped so that repeated faults keep no garbage.
        self._timers = [t for t in self._timers if t.when() > loop.time()]
        self._timers.append(loop.call_later(max(delay, 0.0), callback))

    def _registered_after(self) -> float:
        """Seconds after boot at which the module registers."""
        return self.sim_busy_seconds + self.registration_delay

    def sim_state(self) -> SimState:
        """The SIM's state now."""
        if self.sim_absent:
            return SimState.ABSENT
        if self._now() - self._booted_at < self.sim_busy_seconds:
            return SimState.BUSY
        return SimState.READY

    def registration(self) -> int:
        """The 27.007 registration status now."""
        if not self.powered or self.sim_state() is not SimState.READY:
            return NOT_SEARCHING
        now = self._now()
        if self.no_signal or now < self._lost_until:
            return SEARCHING
        if now - self._booted_at < self._registered_after():
            return SEARCHING
        return HOME

    @property
    def registered(self) -> bool:
        """True while packet data service is available."""
        return self.registration() == HOME

    def csq(self) -> tuple[int, int]:
        """``+CSQ`` values now: 99,99 with no signal or the radio off."""
        if not self.powered or self.no_signal:
            return 99, 99
        return self.signal, 99

    def set_signal(self, rssi: int) -> None:
        """Change the reported signal (0..31, or 99 for none)."""
        self.signal = rssi

    def set_no_signal(self, value: bool) -> None:
        """Lose or regain all signal, which loses or regains registration."""
        self.no_signal = value
        self._check_registration()

    def lose_registration(self, seconds: float) -> None:
        """Drop registration now and regain it ``seconds`` later."""
        self._lost_until = self._now() + seconds
        self._check_registration()
        self._at(seconds, self._check_registration)

    def set_power(self, on: bool) -> None:
        """``AT+CFUN=1`` / ``=0``: radio on or off."""
        self.powered = on
        self._check_registration()

    def _check_registration(self) -> None:
        stat = self.registration()
        if stat != self._last_stat:
            self._last_stat = stat
            logger.info("modem[%s]: registration status now %d", self.name, stat)
            self.registration_changed(stat)
