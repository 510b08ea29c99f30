"""Model detection: open a port, wait until the module answers, pick its dialect.

The module may still be booting when the port appears, so ``AT`` is repeated until
it answers ``OK``. ``ATE0`` follows (echo is on after every boot), then ``ATI``
names the module; ``AT+CGMM`` is asked only when ``ATI`` is not conclusive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from modembridge.channel import ATChannel
from modembridge.dialect import COMMON_COMMANDS, ATDialect
from modembridge.ec20 import Ec20
from modembridge.errors import CommandRefused, ModemTimeout, UnsupportedModem
from modembridge.modem import Modem
from modembridge.sim7600 import Sim7600

log = logging.getLogger(__name__)

PROBE_SECONDS = 30.0
PROBE_INTERVAL = 0.5

# Words in ATI / AT+CGMM answers, checked in this order.
FAMILIES: tuple[tuple[str, type[ATDialect]], ...] = (
    ("SIM7600", Sim7600),
    ("SIMCOM", Sim7600),
    ("QUECTEL", Ec20),
    ("EC20", Ec20),
    ("EC21", Ec20),
    ("EC25", Ec20),
    ("EG25", Ec20),
)


def dialect_for(description: str) -> type[ATDialect] | None:
    """The dialect whose family ``description`` (ATI or CGMM text) names."""
    text = description.upper()
    for word, dialect in FAMILIES:
        if word in text:
            return dialect
    return None


async def open_modem(
    port: str,
    *,
    wire_log: Path | None = None,
    baudrate: int = 115200,
    timeouts: Mapping[str, float] | None = None,
) -> Modem:
    """Open ``port``, wait for ``OK`` to ``AT`` and return the matching dialect.

    ``timeouts`` overrides per-command limits by their table names (``"netopen"``).
    """
    channel = await ATChannel.open(port, baudrate=baudrate, wire_log=wire_log)
    try:
        await wait_for_answer(channel)
        dialect = await detect(channel)
    except BaseException:
        await channel.close()
        raise
    log.info("%s: %s dialect", channel.name, dialect.facts.family)
    return dialect(channel, timeouts=timeouts)


async def wait_for_answer(channel: ATChannel, seconds: float = PROBE_SECONDS) -> None:
    """Repeat ``AT`` until the module answers ``OK``; a booting module is silent."""
    probe = COMMON_COMMANDS["probe"]
    deadline = time.monotonic() + seconds
    while True:
        try:
            await channel.command(probe.text(), seconds=probe.seconds)
        except (ModemTimeout, CommandRefused):
            if time.monotonic() >= deadline:
                raise ModemTimeout(
                    probe.text(), seconds, "OK from the module"
                ) from None
        else:
            return
        await asyncio.sleep(PROBE_INTERVAL)


async def detect(channel: ATChannel) -> type[ATDialect]:
    """Echo off, then the dialect named by ``ATI`` or else ``AT+CGMM``."""
    echo_off = COMMON_COMMANDS["echo_off"]
    await channel.command(echo_off.text(), seconds=echo_off.seconds)
    described = []
    for name in ("info", "model"):
        command = COMMON_COMMANDS[name]
        response = await channel.command(command.text(), seconds=command.seconds)
        described.append(" / ".join(response.info))
        dialect = dialect_for(described[-1])
        if dialect is not None:
            return dialect
    raise UnsupportedModem(channel.port, "; ".join(described))
