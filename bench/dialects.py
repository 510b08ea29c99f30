"""What a card says to each server, as fixed byte strings.

Every workload is written once against ``Dialect``: the bytes a card writes to
register or to send, and the exact bytes the server answers or delivers. Both the
relay's version 1 and MQTT at QoS 0 deliver a fixed-size message as fixed bytes, so
the load generator checks and counts deliveries by length and comparison only, the
same cheap work for both servers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from bench import mqtt


class Dialect(Protocol):
    """The byte-level job of one card, as one server kind expects it."""

    @property
    def name(self) -> str:
        """``relay`` or ``mosquitto``."""

    def register(self, card: str) -> bytes:
        """What card ``card`` writes once connected, to become reachable."""

    def registered(self, card: str) -> bytes:
        """What the server answers to ``register``, exactly."""

    def send(self, to: str, payload: bytes, seq: int = 0) -> bytes:
        """What a card writes to send ``payload`` to card ``to`` (``seq``: its
        number, for dialects whose requests carry one)."""

    def sent(self, seq: int = 0) -> bytes:
        """What the server answers the sender for send ``seq`` (may be empty)."""

    def delivery(self, to: str, payload: bytes, sender: str | None = None) -> bytes:
        """What card ``to`` receives for one message from card ``sender``."""


@dataclass(frozen=True)
class RelayV1:
    """The relay's version 1: dict-literal requests, raw deliveries."""

    name: str = "relay"

    def register(self, card: str) -> bytes:
        """A connect request."""
        return f"{{'action':'connect','from':'{card}'}}".encode()

    def registered(self, card: str) -> bytes:
        """``connect_success``, whoever the card is."""
        return b"connect_success"

    def send(self, to: str, payload: bytes, seq: int = 0) -> bytes:
        """A send request; the payload must be printable ASCII without quotes."""
        return (
            f"{{'action':'send','to':'{to}','message':'{payload.decode()}'}}".encode()
        )

    def sent(self, seq: int = 0) -> bytes:
        """``send_success``."""
        return b"send_success"

    def delivery(self, to: str, payload: bytes, sender: str | None = None) -> bytes:
        """The payload itself, with nothing around it."""
        return payload


@dataclass(frozen=True)
class RelayV2:
    """The relay's version 2: JSON requests with ids, JSON-line replies.

    Ids start at ``FIRST_ID`` so that every request and acknowledgement of a run
    has the same length (seven digits), as the load generator counts by length.
    """

    name: str = "relay-v2"
    heartbeat: float = 3600.0

    FIRST_ID = 1_000_000

    def register(self, card: str) -> bytes:
        """A connect request asking for version 2."""
        return _json_line({"action": "connect", "from": card, "proto": 2})

    def registered(self, card: str) -> bytes:
        """The connect acknowledgement, which names the heartbeat interval."""
        reply = {"ok": "connect", "card": card, "proto": 2}
        return _json_line({**reply, "heartbeat": self.heartbeat})

    def send(self, to: str, payload: bytes, seq: int = 0) -> bytes:
        """A send request with id ``FIRST_ID + seq``."""
        request = {"action": "send", "to": to, "message": payload.decode()}
        return _json_line({**request, "id": self.FIRST_ID + seq})

    def sent(self, seq: int = 0) -> bytes:
        """The acknowledgement of send ``seq``."""
        return _json_line({"ok": "send", "id": self.FIRST_ID + seq})

    def delivery(self, to: str, payload: bytes, sender: str | None = None) -> bytes:
        """A delivery line naming the sender."""
        if sender is None:
            raise ValueError("a version 2 delivery names its sender")
        return _json_line({"from": sender, "message": payload.decode()})


@dataclass(frozen=True)
class Mqtt:
    """MQTT 3.1.1 at QoS 0: card X subscribes to ``cards/X``, senders publish there."""

    name: str = "mosquitto"

    def register(self, card: str) -> bytes:
        """CONNECT and SUBSCRIBE in one write (the client need not await CONNACK)."""
        return mqtt.connect(card) + mqtt.subscribe(1, topic(card))

    def registered(self, card: str) -> bytes:
        """CONNACK then SUBACK."""
        return mqtt.connack() + mqtt.suback(1)

    def send(self, to: str, payload: bytes, seq: int = 0) -> bytes:
        """PUBLISH to the target's topic."""
        return mqtt.publish(topic(to), payload)

    def sent(self, seq: int = 0) -> bytes:
        """Nothing: QoS 0 is not acknowledged."""
        return b""

    def delivery(self, to: str, payload: bytes, sender: str | None = None) -> bytes:
        """The same PUBLISH, forwarded to the subscriber."""
        return mqtt.publish(topic(to), payload)


def topic(card: str) -> str:
    """The topic card ``card`` listens on."""
    return f"cards/{card}"


def _json_line(value: dict[str, object]) -> bytes:
    """``value`` as one compact JSON line."""
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def dialect_for(server_kind: str) -> Dialect:
    """The dialect spoken to a server of kind ``relay``, ``relay-v2`` or
    ``mosquitto``."""
    if server_kind == "relay":
        return RelayV1()
    if server_kind == "relay-v2":
        return RelayV2()
    if server_kind == "mosquitto":
        return Mqtt()
    raise ValueError(f"unknown server kind {server_kind!r}")


def payload_of(size: int, seed: int = 0) -> bytes:
    """A printable payload of ``size`` bytes that needs no quoting in any dialect."""
    alphabet = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return bytes(alphabet[(seed + index) % len(alphabet)] for index in range(size))
