"""The modem interface that every dialect implements, and the values it returns.

A dialect (``sim7600``, ``ec20``) turns these calls into its own AT commands. The
agent, ``info``, ``doctor`` and the pytest plugin only ever see this interface.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from modembridge.models import ModelFacts
from modembridge.pipe import BytePipe


@dataclass(frozen=True)
class Identity:
    """Who the module is."""

    manufacturer: str
    model: str
    firmware: str
    imei: str
    iccid: str | None


class SimState(enum.Enum):
    """What ``AT+CPIN?`` (or its error) says about the SIM."""

    READY = "ready"
    BUSY = "busy"
    PIN_REQUIRED = "pin required"
    PUK_REQUIRED = "puk required"
    ABSENT = "not inserted"
    FAILURE = "failure"


@dataclass(frozen=True)
class Signal:
    """``+CSQ`` values; ``dbm`` is None while the module does not know."""

    rssi: int
    ber: int

    @property
    def dbm(self) -> int | None:
        """Received signal strength in dBm (27.007: -113 + 2 * rssi)."""
        if self.rssi == 99 or not 0 <= self.rssi <= 31:
            return None
        return -113 + 2 * self.rssi


class RegStat(enum.IntEnum):
    """Registration ``<stat>`` of CREG, CGREG and CEREG."""

    NOT_SEARCHING = 0
    HOME = 1
    SEARCHING = 2
    DENIED = 3
    UNKNOWN = 4
    ROAMING = 5
    SMS_ONLY_HOME = 6
    SMS_ONLY_ROAMING = 7
    EMERGENCY_ONLY = 8


@dataclass(frozen=True)
class Registration:
    """Registration state per domain; None where the module gave no answer."""

    creg: RegStat | None = None
    cgreg: RegStat | None = None
    cereg: RegStat | None = None

    @property
    def registered(self) -> bool:
        """Home or roaming on any domain counts, as working drivers do."""
        states = (self.creg, self.cgreg, self.cereg)
        return any(s in (RegStat.HOME, RegStat.ROAMING) for s in states)

    @property
    def roaming(self) -> bool:
        """Registered, and only through a roaming network."""
        states = (self.creg, self.cgreg, self.cereg)
        return self.registered and RegStat.HOME not in states


class EventKind(enum.Enum):
    """What the module reported on its own (from URCs)."""

    SOCKET_CLOSED = "socket closed"
    BEARER_LOST = "bearer lost"
    REBOOTED = "rebooted"
    REGISTRATION_CHANGED = "registration changed"
    SIM_CHANGED = "sim changed"


@dataclass(frozen=True)
class ModemEvent:
    """One thing the module reported: which kind, which socket, and the raw URC."""

    kind: EventKind
    urc: str
    link: int | None = None


EventCallback = Callable[[ModemEvent], None]


class ModemSocket(BytePipe, ABC):
    """A TCP client socket held by the module's own IP stack."""

    link: int


class Modem(ABC):
    """One module behind one AT port, whatever its dialect."""

    facts: ModelFacts
    port: str

    @abstractmethod
    async def prepare(self) -> None:
        """Make the port usable: answer to ``AT``, echo off, verbose errors."""

    @abstractmethod
    async def identify(self) -> Identity:
        """Model, firmware, IMEI and ICCID."""

    @abstractmethod
    async def sim_state(self) -> SimState:
        """The SIM's state now (``SIM busy`` right after power-on is BUSY)."""

    @abstractmethod
    async def signal(self) -> Signal:
        """Signal quality from ``AT+CSQ``."""

    @abstractmethod
    async def registration(self) -> Registration:
        """Registration on CS, PS and EPS domains."""

    @abstractmethod
    async def operator(self) -> str | None:
        """The network operator's name, None while unregistered."""

    @abstractmethod
    async def configure_apn(self, apn: str, user: str = "", password: str = "") -> None:
        """Write the APN into the context the bearer will use."""

    @abstractmethod
    async def bearer_up(self) -> str:
        """Activate the data bearer and return the module's IP address."""

    @abstractmethod
    async def bearer_down(self) -> None:
        """Deactivate the data bearer; closing an inactive bearer is not an error."""

    @abstractmethod
    async def bearer_active(self) -> bool:
        """Whether the data bearer is up now."""

    @abstractmethod
    async def open_socket(self, host: str, port: int) -> ModemSocket:
        """Open a TCP connection through the module's own stack."""

    @abstractmethod
    async def radio_off(self) -> None:
        """Switch the radio off (``AT+CFUN=0``)."""

    @abstractmethod
    async def radio_on(self) -> None:
        """Switch the radio on (``AT+CFUN=1``)."""

    @abstractmethod
    async def reset(self) -> None:
        """Reboot the module; its port vanishes and comes back."""

    @abstractmethod
    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback`` for every module event; returns the unsubscribe."""

    @abstractmethod
    async def close(self) -> None:
        """Close the serial port (the module keeps its state)."""
