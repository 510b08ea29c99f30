"""What the relay writes to a card, in the two protocol versions.

Version 1 replies are bare ASCII words with no delimiter, exactly as deployed cards
expect them. Version 2 writes one JSON object per line: acknowledgements
``{"ok": <action>}``, errors ``{"error": <what>}``, deliveries ``{"from": <card>}``
and heartbeats ``{"heartbeat": <unix time>}``; every reply to a request carries its
``id`` when the request had one. ``docs/protocol.md`` is the reference.
"""

from __future__ import annotations

import base64
import json
from json.encoder import encode_basestring_ascii

from relayserver.requests import RequestId

CONNECT_SUCCESS = b"connect_success"
SEND_SUCCESS = b"send_success"
WRONG_FORMAT = b"wrong format"
HEARTBEAT = b"heartbeat"
CONNECT_FIRST = b"connect first"

SEND_OK = b'{"ok":"send"}\n'
_SEND_OK_ID = b'{"ok":"send","id":%d}\n'
_DELIVERY_TEXT = b'{"from":%s,"message":%s}\n'
_DELIVERY_BINARY = b'{"from":%s,"message_b64":"%s"}\n'


def not_connected(to: str) -> bytes:
    """Version 1: the target card holds no connection."""
    return to.encode("utf-8", "surrogateescape") + b" not connect"


def not_authorized(name: str) -> bytes:
    """Version 1: the connect named a card without presenting its token."""
    return name.encode("utf-8", "surrogateescape") + b" not authorized"


def name_json(name: str | None) -> bytes:
    """A card name as a JSON value, for the ``from`` of deliveries."""
    return b"null" if name is None else encode_basestring_ascii(name).encode()


def send_ok(request_id: RequestId) -> bytes:
    """Version 2: the message was written to the target card's connection."""
    if request_id is None:
        return SEND_OK
    if type(request_id) is int:
        return _SEND_OK_ID % request_id
    return line({"ok": "send", "id": request_id})


def delivery(sender: bytes, payload: bytes, *, binary: bool) -> bytes:
    """Version 2: a message from ``sender`` (already JSON); text stays text when it is
    UTF-8 and was sent as text, anything else travels as base64."""
    if not binary:
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            pass
        else:
            return _DELIVERY_TEXT % (sender, encode_basestring_ascii(text).encode())
    return _DELIVERY_BINARY % (sender, base64.b64encode(payload))


def heartbeat_line(now: float) -> bytes:
    """Version 2: the heartbeat, which no delivery can look like."""
    return b'{"heartbeat":%d}\n' % int(now)


def ok(action: str, request_id: RequestId, **fields: object) -> bytes:
    """Version 2: ``action`` succeeded."""
    return line({"ok": action, **fields}, request_id)


def error(what: str, request_id: RequestId, **fields: object) -> bytes:
    """Version 2: the request with ``request_id`` failed because of ``what``."""
    return line({"error": what, **fields}, request_id)


def line(reply: dict[str, object], request_id: RequestId = None) -> bytes:
    """One JSON object on one line, with the request's id when it had one."""
    if request_id is not None:
        reply["id"] = request_id
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def presence(card: str, *, online: bool) -> bytes:
    """Version 2: a card this one watches came online or went offline."""
    state = "online" if online else "offline"
    return line({"presence": state, "card": card})
