"""The requests a card may make, built from a parsed dict literal.

Keys a request does not need are ignored, as a version 1 relay ignores ``proto``, so
newer cards can add fields. ``id`` (an integer or a string) is echoed in version 2
replies so a card can match them to its requests.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from relayserver.errors import DecodeError

RequestId = int | str | None

MAX_NAME_BYTES = 256
PROTOCOLS = (1, 2)


@dataclass(slots=True)
class Connect:
    """Claim ``name`` for this connection, optionally with a token and version 2."""

    name: str
    proto: int = 1
    token: str | None = None
    id: RequestId = None


@dataclass(slots=True)
class Send:
    """Deliver ``payload`` to card ``to``; ``binary`` when it came as base64."""

    to: str
    payload: bytes
    binary: bool = False
    id: RequestId = None


@dataclass(slots=True)
class Ping:
    """Keep the connection alive and ask for an answer."""

    id: RequestId = None


@dataclass(slots=True)
class Who:
    """Version 2: which of ``names`` are online."""

    names: list[str]
    id: RequestId = None


@dataclass(slots=True)
class Watch:
    """Version 2: tell this card when one of ``names`` comes online or goes offline."""

    names: list[str]
    id: RequestId = None


@dataclass(slots=True)
class Unwatch:
    """Version 2: stop telling this card about ``names``."""

    names: list[str]
    id: RequestId = None


Presence = Who | Watch | Unwatch
Request = Connect | Send | Ping | Who | Watch | Unwatch

_PRESENCE: dict[str, type[Presence]] = {"who": Who, "watch": Watch, "unwatch": Unwatch}


def from_dict(fields: dict[str, object]) -> Request:
    """Build the request ``fields`` describes, or raise :class:`DecodeError`."""
    request_id = _request_id(fields)
    action = fields.get("action")
    try:
        if action == "send":
            return _send(fields, request_id)
        if action == "connect":
            return _connect(fields, request_id)
        if action == "ping":
            return Ping(request_id)
        if isinstance(action, str) and action in _PRESENCE:
            return _PRESENCE[action](_names(fields), request_id)
    except DecodeError as error:
        error.request_id = request_id
        raise
    raise DecodeError(f"unknown action {action!r}", request_id=request_id)


def _send(fields: dict[str, object], request_id: RequestId) -> Send:
    to = _name(fields, "to")
    message = fields.get("message")
    if isinstance(message, str):
        return Send(to, encode_text(message), binary=False, id=request_id)
    encoded = fields.get("message_b64")
    if isinstance(encoded, str):
        return Send(to, _from_base64(encoded), binary=True, id=request_id)
    raise DecodeError("'message' must be a string (or 'message_b64' base64)")


def _connect(fields: dict[str, object], request_id: RequestId) -> Connect:
    name = _name(fields, "from")
    proto = fields.get("proto", 1)
    if not isinstance(proto, int) or isinstance(proto, bool) or proto < 1:
        raise DecodeError("'proto' must be a positive integer")
    token = fields.get("token")
    if token is not None and not isinstance(token, str):
        raise DecodeError("'token' must be a string")
    # A card asking for a newer version gets the newest this relay speaks.
    return Connect(name, min(proto, PROTOCOLS[-1]), token, request_id)


def _name(fields: dict[str, object], key: str) -> str:
    name = fields.get(key)
    if not isinstance(name, str) or not name:
        raise DecodeError(f"{key!r} must be a non-empty string")
    if len(name) > MAX_NAME_BYTES:
        raise DecodeError(f"{key!r} is longer than {MAX_NAME_BYTES} characters")
    return name


def _names(fields: dict[str, object]) -> list[str]:
    """The card names of a presence request; how many is the relay's to judge."""
    names = fields.get("names")
    if not isinstance(names, list) or not names:
        raise DecodeError("'names' must be a list of card names")
    for name in names:
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_BYTES:
            raise DecodeError(
                f"'names' must hold card names of 1 to {MAX_NAME_BYTES} characters"
            )
    return names


def _request_id(fields: dict[str, object]) -> RequestId:
    value = fields.get("id")
    if isinstance(value, bool) or not isinstance(value, int | str | None):
        return None
    return value


def encode_text(text: str) -> bytes:
    """The bytes a text message stands for; raw bytes that were not UTF-8 survive."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as error:
        raise DecodeError("message holds a lone surrogate escape") from error


def _from_base64(encoded: str) -> bytes:
    try:
        return binascii.a2b_base64(encoded.encode("ascii"), strict_mode=True)
    except (ValueError, binascii.Error) as error:
        raise DecodeError("'message_b64' is not valid base64") from error
