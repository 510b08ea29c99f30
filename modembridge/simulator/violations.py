"""Host-discipline problems the simulated module noticed on its port."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class ViolationKind(enum.Enum):
    """The rules of the AT dialogue a host can break."""

    SEND_BEFORE_PROMPT = "send before prompt"
    COMMAND_WHILE_BUSY = "command while another runs"
    PAYLOAD_TOO_LONG = "payload longer than announced"


@dataclass(frozen=True)
class Violation:
    """One broken rule: what, while which command ran, and the bytes that broke it."""

    kind: ViolationKind
    command: str
    data: bytes
    at: float = field(default_factory=time.monotonic)

    def __str__(self) -> str:
        return f"{self.kind.value} during {self.command!r}: {self.data[:40]!r}"
