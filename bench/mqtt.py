"""The few MQTT 3.1.1 packets the benchmark needs, encoded and decoded by hand.

Mosquitto is driven over raw sockets with this codec rather than a client library,
so the load generator spends the same Python work per message on both servers:
a message is one pre-encoded ``bytes`` object going out and a fixed number of bytes
coming in. Only QoS 0 is spoken: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH,
PINGREQ/PINGRESP and DISCONNECT.

A packet is a fixed header (type in the high nibble of the first byte, flags in the
low nibble, then the remaining length as a base-128 varint of at most four bytes) and
a body of exactly that length. The reader is sans-IO: it is fed bytes split anywhere
and yields whole packets, or raises ``MqttError`` on a header it cannot accept.
"""

from __future__ import annotations

from dataclasses import dataclass

CONNECT = 1
CONNACK = 2
PUBLISH = 3
SUBSCRIBE = 8
SUBACK = 9
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

# The largest remaining length the varint can carry (four bytes of seven bits).
MAX_REMAINING = 268_435_455

PINGREQ_PACKET = b"\xc0\x00"
PINGRESP_PACKET = b"\xd0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


class MqttError(Exception):
    """Bytes from the broker that are not a packet this codec accepts."""


@dataclass(frozen=True)
class Packet:
    """One decoded packet: its type, the four flag bits and the body."""

    kind: int
    flags: int
    body: bytes


def encode_remaining_length(length: int) -> bytes:
    """The varint that announces ``length`` body bytes."""
    if not 0 <= length <= MAX_REMAINING:
        raise ValueError(f"remaining length {length} out of range")
    out = bytearray()
    while True:
        digit, length = length % 128, length // 128
        out.append(digit | 0x80 if length else digit)
        if not length:
            return bytes(out)


def encode_string(text: str) -> bytes:
    """A UTF-8 string with its two-byte length prefix."""
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def packet(kind: int, flags: int, body: bytes) -> bytes:
    """A whole packet from its type, flags and body."""
    return bytes([kind << 4 | flags]) + encode_remaining_length(len(body)) + body


def connect(client_id: str, keepalive: int = 0) -> bytes:
    """CONNECT with a clean session; keepalive 0 lets an idle client stay forever."""
    variable = encode_string("MQTT") + bytes([4, 0x02]) + keepalive.to_bytes(2, "big")
    return packet(CONNECT, 0, variable + encode_string(client_id))


def connack(return_code: int = 0) -> bytes:
    """CONNACK as the broker sends it to a clean-session client."""
    return packet(CONNACK, 0, bytes([0, return_code]))


def subscribe(packet_id: int, topic: str) -> bytes:
    """SUBSCRIBE to one topic filter at QoS 0."""
    body = packet_id.to_bytes(2, "big") + encode_string(topic) + b"\x00"
    return packet(SUBSCRIBE, 0b0010, body)


def suback(packet_id: int) -> bytes:
    """SUBACK granting QoS 0 to one filter."""
    return packet(SUBACK, 0, packet_id.to_bytes(2, "big") + b"\x00")


def publish(topic: str, payload: bytes) -> bytes:
    """PUBLISH at QoS 0 (no packet id)."""
    return packet(PUBLISH, 0, encode_string(topic) + payload)


def publish_parts(found: Packet) -> tuple[str, bytes]:
    """The topic and payload of a QoS 0 PUBLISH."""
    if found.kind != PUBLISH or found.flags & 0b0110:
        raise MqttError(f"not a QoS 0 PUBLISH: type {found.kind} flags {found.flags}")
    if len(found.body) < 2:
        raise MqttError("PUBLISH too short for its topic length")
    topic_length = int.from_bytes(found.body[:2], "big")
    if len(found.body) < 2 + topic_length:
        raise MqttError("PUBLISH topic runs past the packet")
    try:
        topic = found.body[2 : 2 + topic_length].decode()
    except UnicodeDecodeError as error:
        raise MqttError("PUBLISH topic is not UTF-8") from error
    return topic, found.body[2 + topic_length :]


class MqttReader:
    """Feed it bytes as they arrive; take whole packets out with ``maybe_packet``."""

    def __init__(self, max_body: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._max_body = max_body

    def feed(self, data: bytes) -> None:
        """Append bytes received from the broker."""
        self._buffer += data

    def maybe_packet(self) -> Packet | None:
        """The next whole packet, or ``None`` until enough bytes have arrived."""
        header = self._maybe_header()
        if header is None:
            return None
        first, header_length, body_length = header
        end = header_length + body_length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[header_length:end])
        del self._buffer[:end]
        return Packet(first >> 4, first & 0x0F, body)

    def _maybe_header(self) -> tuple[int, int, int] | None:
        """First byte, header length and body length, once the header is whole."""
        if not self._buffer:
            return None
        length, shift = 0, 0
        for index in range(1, 5):
            if index >= len(self._buffer):
                return None
            digit = self._buffer[index]
            length |= (digit & 0x7F) << shift
            if not digit & 0x80:
                if length > self._max_body:
                    raise MqttError(f"packet of {length} bytes exceeds the bound")
                return self._buffer[0], index + 1, length
            shift += 7
        raise MqttError("remaining length longer than four bytes")
