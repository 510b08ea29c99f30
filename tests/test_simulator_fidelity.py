"""Replaying recordings of real modules into the simulator: same shapes back.

For each recording in ``tests/data/transcripts`` whose commands the simulator
supports, the host's ``>`` lines are sent to a simulated module of the same family
and what it prints is compared with the recorded ``<`` lines of that exchange:

- line kinds in order (``OK``, ``ERROR``, ``+CME ERROR``, the ``+NAME`` prefix with
  its number of fields, ``RECV FROM``, bare text, the prompt), ignoring blank lines
  (most recordings do not show CR LF) and the echo of the command (recordings
  disagree on whether it was the module's echo or the terminal's);
- for byte-exact recordings, the bytes themselves with digits normalised.

Values may differ (signal, IMEI, addresses, registration state). Where a recording
shows something the simulator does not model, or its own header doubts a line, the
exchange is skipped or checked as a prefix, with the reason written next to it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from simulator_client import EchoServer, RawClient

from modembridge.simulator import SimConfig, SimulatedModem
from modembridge.simulator.command import split_arguments

# Copies of the recordings of real modules kept with the tests.
TRANSCRIPTS = Path(__file__).resolve().parent / "data" / "transcripts"


Action = Callable[["Replay"], Awaitable[None]]


@dataclass
class Exchange:
    """One host line and the module's recorded lines until the next host line."""

    command: str | None
    recorded: list[str] = field(default_factory=list)
    truncated: bool = False


@dataclass
class Spec:
    """How to replay one recording."""

    model: str
    config: dict[str, Any] = field(default_factory=dict)
    prelude: tuple[str, ...] = ()
    skip: dict[int, str] = field(default_factory=dict)
    prefix_only: dict[int, str] = field(default_factory=dict)
    before: dict[int, Action] = field(default_factory=dict)
    after_kinds: dict[int, tuple[int, Action]] = field(default_factory=dict)
    ignore: dict[str, str] = field(default_factory=dict)
    boot_lines: int = 0
    first_command: bytes | None = None
    payload_lines: tuple[str, ...] = ()


def unescape(text: str) -> str:
    """A recorded line with its ``\\r``, ``\\n`` and ``\\xNN`` escapes decoded."""
    return re.sub(
        r"\\(r|n|x[0-9A-Fa-f]{2})",
        lambda m: {"r": "\r", "n": "\n"}.get(m[1]) or chr(int(m[1][1:], 16)),
        text,
    )


def parse(path: Path) -> tuple[list[str], list[Exchange]]:
    """The lines before the first host line, and the exchanges after it."""
    preamble: list[str] = []
    exchanges: list[Exchange] = []
    body = [line for line in path.read_text().splitlines() if line.strip()]
    started = False
    for line in body:
        if line.startswith("#"):
            started = started or "> " in line
            if "excerpt ends" in line and exchanges:
                exchanges[-1].truncated = True
            continue
        started = True
        if line.startswith("> ") or line == ">":
            exchanges.append(Exchange(unescape(line[2:]).rstrip("\r")))
        elif line.startswith("<"):
            target = exchanges[-1].recorded if exchanges else preamble
            target.append(unescape(line[2:]))
    return preamble, exchanges


_PAYLOAD_HEADERS = (
    re.compile(r"^\+QIRD: (\d+)$"),
    re.compile(r"^\+CIPRXGET: [23],\d+,(\d+),\d+$"),
    re.compile(r'^\+QIURC: "recv",\d+,(\d+)$'),
    re.compile(r"^\+IPD(\d+)$"),
)


def split_output(data: bytes) -> list[str]:
    """The module's output as lines; counted payloads become one ``<payload>``."""
    lines: list[str] = []
    position = 0
    while position < len(data):
        end = data.find(b"\r\n", position)
        if end < 0:
            # The prompt, or the end of a truncated recording: no CR LF follows.
            lines.append(data[position:].decode("latin-1"))
            break
        line = data[position:end].decode("latin-1")
        lines.append(line)
        position = end + 2
        for header in _PAYLOAD_HEADERS:
            match = header.match(line.strip())
            if match:
                size = int(match[1])
                lines.append("<payload>")
                position += size
                break
    return lines


def kind(line: str) -> str | None:
    """The shape of one line, or None for lines that carry no shape."""
    text = line.strip()
    if not text or text == "<payload>":
        return None
    if text in ("OK", "ERROR", "SEND OK", "SEND FAIL", ">"):
        return text
    for fixed in ("+CME ERROR", "RECV FROM", "+IPD"):
        if text.startswith(fixed):
            return fixed
    if text.startswith("+"):
        return _information_kind(text)
    label = re.match(r"^([A-Za-z ]+): ", text)
    return label[1] if label else "text"


def _information_kind(text: str) -> str:
    """``+NAME/<field count>``; a ``+QIURC`` also keeps its first field."""
    name, _, rest = text.partition(":")
    fields = split_arguments(rest) or []
    if name == "+QIURC":
        return f"{name} {fields[0]}/{len(fields)}"
    return f"{name}/{len(fields)}"


def kinds(lines: list[str], command: str | None, ignore: dict[str, str]) -> list[str]:
    """The kinds of ``lines``, without the echo of ``command`` and ignored lines."""
    echo = (command or "").strip().upper()
    result = []
    for line in lines:
        if line.strip().upper() == echo or line.strip() in ignore:
            continue
        shape = kind(line)
        if shape is not None:
            result.append(shape)
    return result


def normalised(data: bytes) -> bytes:
    return re.sub(rb"\d+", b"0", data)


class Replay:
    """A simulated module, a client on its port, and a loopback TCP peer."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.server = EchoServer()
        self.sim = SimulatedModem(SimConfig(model=spec.model, **spec.config))
        self.client: RawClient | None = None
        self.output = b""

    async def start(self) -> RawClient:
        await self.server.start()
        await self.sim.start()
        self.client = RawClient(self.sim.path)
        return self.client

    async def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        await self.sim.stop()
        await self.server.stop()

    def localised(self, command: str) -> str:
        """Socket opens go to the loopback peer instead of the recorded host."""
        return re.sub(
            r'("(?:TCP)",)"[^"]*",\d+', rf'\1"127.0.0.1",{self.server.port}', command
        )

    async def collect(
        self, count: int, command: str | None, seconds: float = 2
    ) -> list[str]:
        """Output until it holds ``count`` kinds (then a short quiet), as lines."""
        assert self.client is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        data = b""
        while loop.time() < deadline:
            data += await self.client.read_quiet(0.01)
            if len(kinds(split_output(data), command, self.spec.ignore)) >= count:
                break
        data += await self.client.read_quiet(0.03)
        self.output = data
        return split_output(data)


def server_sends(data: bytes, link: int = 0) -> Action:
    async def action(replay: Replay) -> None:
        _reader, writer = await replay.server.peer(link)
        writer.write(data)
        await writer.drain()

    return action


async def drop_bearer(replay: Replay) -> None:
    replay.sim.drop_bearer()


async def wait_for_sim(replay: Replay) -> None:
    assert replay.client is not None
    await replay.client.read_until(b"PB DONE\r\n")


SIM7600_SOCKET = (
    "ATE0",
    "AT+CIPRXGET=1",
    "AT+NETOPEN",
    "@+NETOPEN: 0",
)


def specs() -> dict[str, Spec]:
    return {
        "ec20-01-ppp-chat-bringup.txt": Spec(
            "ec20",
            config={"registration_delay": 60.0},
            skip={4: "ATD*99# starts PPP, which is not simulated"},
        ),
        "ec21-06-brownout-reboot-echo-returns-qiact-error.txt": Spec(
            "ec20",
            skip={
                0: "before the brown-out; the replay starts from the fresh boot",
                1: "the brown-out reboot happened over a UART, where no tty vanishes",
                6: "AT+QIACT failed because the board browned out again",
            },
        ),
        "ec21-08-qiopen-qisend-prompt-send-ok-qird-empty.txt": Spec(
            "ec20", prelude=("ATE0", "AT+QIACT=1")
        ),
        "ec25-04-unsupported-command-error-echo.txt": Spec(
            "ec20", first_command=b"AT+MODE=2\r"
        ),
        "ec25-05-registration-queries-picocom.txt": Spec(
            "ec20",
            prelude=("ATE0",),
            skip={4: 'AT+QENG="servingcell" is not simulated'},
        ),
        "ec2x-02-bytelevel-echo-on-csq.txt": Spec("ec20"),
        "related-bg96-01-qiopen-qisend-qiurc-recv-qird-qiclose.txt": Spec(
            "ec20",
            prelude=("ATE0", "AT+QIACT=1"),
            after_kinds={5: (2, server_sends(b"\x20\x02\x00\x00"))},
        ),
        "sim7600-01-bringup-queries-netopen-error.txt": Spec(
            "sim7600",
            prelude=(
                "ATE0",
                'AT+CGDCONT=1,"IPV4V6","fast.t-mobile.com"',
                'AT+CGDCONT=3,"IPV4V6","sos"',
                'AT+CGDCONT=4,"IPV4V6","tmus"',
            ),
            skip={
                1: "the recording shows no reply to this 'at' (header doubt)",
                8: "the recording shows no OK after +CGACT (header doubt)",
                10: "this firmware refuses NETOPEN with a bare ERROR",
                11: "AT+CPING is not simulated",
                16: "this firmware refuses NETOPEN with a bare ERROR",
            },
        ),
        "sim7600-02-boot-urcs.txt": Spec(
            "sim7600", config={"boot_time": 0.1}, boot_lines=9, first_command=b"AT\r"
        ),
        "sim7600-03-boot-urcs-hexdump.txt": Spec(
            "sim7600", config={"boot_time": 0.1}, boot_lines=6
        ),
        "sim7600-04-sim-busy-registration-netopen.txt": Spec(
            "sim7600",
            config={"sim_busy_seconds": 0.3},
            prelude=('AT+CGDCONT=3,"IPV4V6",""',),
            before={2: wait_for_sim},
            prefix_only={
                2: "the recording shows no OK here (header doubt)",
                15: "the recording shows no OK after +CPSI (header doubt)",
                18: "the recording shows no OK after +IPADDR (header doubt)",
            },
            skip={12: "the recording lost this command's reply (header doubt)"},
        ),
        "sim7600-05-cipopen-ok-then-urc.txt": Spec("sim7600", prelude=SIM7600_SOCKET),
        "sim7600-06-udp-cipopen-fail.txt": Spec("sim7600", prelude=("ATE0",)),
        "sim7600-08-cipevent-during-polling.txt": Spec(
            "sim7600",
            prelude=(
                *SIM7600_SOCKET,
                'AT+CIPOPEN=1,"TCP","x",1',
                "@+CIPOPEN: 1,0",
                "ATE1",
            ),
            before={5: drop_bearer},
            ignore={"SMS DONE": "the module re-initialised afterwards; not simulated"},
        ),
        "sim7600-09-cipsend-prompt-ok-then-cipsend-urc.txt": Spec(
            "sim7600",
            prelude=(*SIM7600_SOCKET, 'AT+CIPOPEN=0,"TCP","x",1', "@+CIPOPEN: 0,0"),
            payload_lines=("0 topic/balance2424.00",),
            skip={
                4: "SMS is not simulated",
                5: "SMS is not simulated",
                6: "SMS is not simulated",
            },
        ),
        "sim7600-11-netopen-bare-error.txt": Spec(
            "sim7600",
            prelude=("ATE0",),
            skip={4: "this firmware refuses NETOPEN with a bare ERROR"},
        ),
        "sim7600-12-cipsend-ciperror-4.txt": Spec(
            "sim7600", prelude=("ATE0",), first_command=b"AT+CIPSEND=0,5\rhello\r"
        ),
    }


def test_every_recording_has_a_replay() -> None:
    assert sorted(p.name for p in TRANSCRIPTS.glob("*.txt")) == sorted(specs())


async def run_prelude(replay: Replay, client: RawClient) -> None:
    for line in replay.spec.prelude:
        if line.startswith("@"):
            await client.read_until(line[1:].encode() + b"\r\n")
            continue
        client.write(replay.localised(line).encode() + b"\r")
        await client.read_until(b"OK\r\n")
    await client.read_quiet(0.05)


async def check_preamble(
    replay: Replay, client: RawClient, preamble: list[str]
) -> None:
    spec = replay.spec
    boot, rest = preamble[: spec.boot_lines], preamble[spec.boot_lines :]
    if boot:
        await check_lines(replay, client, None, boot, prefix=True)
    if spec.first_command is not None:
        client.write(spec.first_command)
        await check_lines(
            replay, client, spec.first_command.split(b"\r")[0].decode(), rest
        )


async def check_lines(
    replay: Replay,
    client: RawClient,
    command: str | None,
    recorded: list[str],
    *,
    prefix: bool = False,
    after: tuple[int, Action] | None = None,
) -> None:
    """Compare the module's next output with ``recorded``."""
    if any("\n" in line or "\r" in line for line in recorded):
        await check_bytes(replay, client, recorded, prefix=prefix)
        return
    expected = kinds(recorded, command, replay.spec.ignore)
    if after is not None:
        count, action = after
        await replay.collect(count, command)
        await action(replay)
        lines = split_output(replay.output + await client.read_quiet(0.1))
    else:
        lines = await replay.collect(len(expected), command)
    got = kinds(lines, command, replay.spec.ignore)
    if prefix:
        got = got[: len(expected)]
    assert got == expected, f"{command!r}: {lines!r}"


async def check_bytes(
    replay: Replay, client: RawClient, recorded: list[str], *, prefix: bool
) -> None:
    expected = "".join(recorded).encode("latin-1")
    got = await client.read_quiet(0.15)
    if prefix:
        got = got[: len(expected)]
    assert normalised(got) == normalised(expected)


@pytest.mark.parametrize("name", sorted(specs()))
async def test_replay_gives_the_recorded_shapes(name: str) -> None:
    spec = specs()[name]
    preamble, exchanges = parse(TRANSCRIPTS / name)
    replay = Replay(spec)
    client = await replay.start()
    try:
        if not spec.boot_lines:
            await client.read_quiet(0.05)
        await run_prelude(replay, client)
        await check_preamble(replay, client, preamble)
        await replay_exchanges(replay, client, exchanges)
        assert (
            kinds(split_output(await client.read_quiet(0.05)), None, spec.ignore) == []
        )
    finally:
        await replay.stop()


async def replay_exchanges(
    replay: Replay, client: RawClient, exchanges: list[Exchange]
) -> None:
    spec = replay.spec
    for index, exchange in enumerate(exchanges):
        if index in spec.before:
            await spec.before[index](replay)
        if index in spec.skip:
            continue
        command = exchange.command or ""
        if command in spec.payload_lines:
            await check_lines(replay, client, None, exchange.recorded)
            continue
        client.write(replay.localised(command).encode("latin-1") + b"\r")
        recorded = exchange.recorded
        if (prompt := _prompt_index(recorded)) is not None:
            cut = prompt + 1
            await check_lines(replay, client, command, recorded[:cut])
            client.write(b"\x55" * int(command.rsplit(",", 1)[1]))
            recorded = recorded[cut:]
            if not recorded:
                continue
        await check_lines(
            replay,
            client,
            command,
            recorded,
            prefix=index in spec.prefix_only or exchange.truncated,
            after=spec.after_kinds.get(index),
        )


def _prompt_index(recorded: list[str]) -> int | None:
    for index, line in enumerate(recorded):
        if line.strip() == ">":
            return index
    return None
