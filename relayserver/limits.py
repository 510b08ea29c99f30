"""The bounds that keep one card from costing the relay without limit."""

from __future__ import annotations

from dataclasses import dataclass

from relayserver.codec import DEFAULT_MAX_SIZE

DEFAULT_MAX_CONNECTIONS = 10_000
DEFAULT_WRITE_HIGH_WATER = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """How much the relay accepts; each has a flag of the same name.

    ``idle_timeout`` counts heartbeat intervals: a card that sends nothing for that
    many is closed; 0 (the default) never closes one, since deployed version 1 cards
    stay silent between messages. ``write_high_water`` is the slow consumer policy:
    a card whose unsent bytes exceed it is dropped.
    """

    max_request_size: int = DEFAULT_MAX_SIZE
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: int = 0
    write_high_water: int = DEFAULT_WRITE_HIGH_WATER

    def __post_init__(self) -> None:
        if self.max_request_size < 64:
            raise ValueError("max_request_size must be at least 64 bytes")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.idle_timeout < 0:
            raise ValueError("idle_timeout must be 0 (off) or a number of heartbeats")
        if self.write_high_water < 1:
            raise ValueError("write_high_water must be positive")
