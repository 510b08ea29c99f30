"""The exceptions of the relay: one root, subclasses that carry their data."""

from __future__ import annotations


class RelayError(Exception):
    """Root of everything the relay raises."""


class DecodeError(RelayError):
    """Bytes from a card that do not form a request.

    ``reason`` says what is wrong, ``data`` holds the first of the offending bytes, and
    ``request_id`` is the request's ``id`` when the request got far enough to have one.
    """

    def __init__(
        self, reason: str, data: bytes = b"", request_id: int | str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data
        self.request_id = request_id


class ConfigError(RelayError):
    """The relay's configuration (flags, token file) is unusable."""
