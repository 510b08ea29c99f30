"""Facts about each supported module family, shared by the driver and the simulator.

Everything here is a property of the hardware (USB identity, socket count, per-send
limit, the bytes of the send prompt, boot URCs), not of our code. The dialects and the
simulator both read this table, so a limit changed here changes on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UsbId:
    """A USB vendor/product pair and the interface number of the primary AT port."""

    vendor: int
    product: int
    at_interface: int


@dataclass(frozen=True)
class ModelFacts:
    """What a module family is and what it can do."""

    family: str
    manufacturer: str
    usb_ids: tuple[UsbId, ...]
    socket_count: int
    max_send: int
    max_read: int
    prompt: bytes
    boot_urcs: tuple[str, ...]


SIM7600 = ModelFacts(
    family="sim7600",
    manufacturer="SIMCOM INCORPORATED",
    usb_ids=(UsbId(0x1E0E, 0x9001, 2),),
    socket_count=10,
    max_send=1500,
    max_read=1500,
    prompt=b"\r\n>",
    boot_urcs=("RDY", "+CPIN: READY", "SMS DONE", "PB DONE"),
)

EC20 = ModelFacts(
    family="ec20",
    manufacturer="Quectel",
    usb_ids=(UsbId(0x2C7C, 0x0125, 2), UsbId(0x05C6, 0x9215, 2)),
    socket_count=12,
    max_send=1460,
    max_read=1500,
    prompt=b"\r\n> ",
    boot_urcs=(
        "RDY",
        "+CFUN: 1",
        "+CPIN: READY",
        "+QUSIM: 1",
        "+QIND: SMS DONE",
        "+QIND: PB DONE",
    ),
)

MODELS: dict[str, ModelFacts] = {facts.family: facts for facts in (SIM7600, EC20)}


def facts_for_usb(vendor: int, product: int) -> ModelFacts | None:
    """The module family with this USB identity, or None for any other device."""
    for facts in MODELS.values():
        if any(u.vendor == vendor and u.product == product for u in facts.usb_ids):
            return facts
    return None
