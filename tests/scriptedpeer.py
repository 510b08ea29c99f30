"""A scripted module on the master side of a real pseudo-terminal.

The code under test opens :attr:`ScriptedPeer.path` (the slave) with real pyserial.
The peer reads command lines ending in CR, answers each from its script, collects the
bytes written after a send prompt, can push URCs at any time, can deliver its output
one byte at a time, and can vanish (the master closes, so the slave reads fail with
EIO as on a USB reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tty
from collections import deque
from collections.abc import Callable

Reply = bytes | Callable[[str], bytes]

SEND_COMMAND = re.compile(r"AT\+(?:CIPSEND|QISEND)=\d+,(\d+)")


class ScriptedPeer:
    """Answers AT commands from a script over a pseudo-terminal."""

    def __init__(self, *, echo: bool = False, byte_at_a_time: bool = False) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.echo = echo
        self.byte_at_a_time = byte_at_a_time
        self.commands: list[str] = []
        self.payloads: list[bytes] = []
        self._rules: list[tuple[re.Pattern[str], deque[Reply]]] = []
        self._after_payload: list[tuple[re.Pattern[str], deque[Reply]]] = []
        self._inbox = bytearray()
        self._payload_left = 0
        self._payload_command = ""
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._arrived = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._master, self._readable)
        self._writer = asyncio.create_task(self._write_loop())
        self._open = True

    def on(self, command: str, *replies: Reply, regex: bool = False) -> None:
        """Answer ``command`` with ``replies`` in turn; the last one repeats."""
        self._rules.insert(0, (_pattern(command, regex), deque(replies)))

    def after_payload(self, command: str, *replies: Reply, regex: bool = False) -> None:
        """What to print once the bytes announced by a send ``command`` arrived."""
        self._after_payload.insert(0, (_pattern(command, regex), deque(replies)))

    def push(self, data: bytes) -> None:
        """Print ``data`` unsolicited (a URC, a boot message, garbage)."""
        self._outbox.put_nowait(data)

    def push_later(self, seconds: float, data: bytes) -> None:
        """Print ``data`` unsolicited after ``seconds`` (a result that comes later)."""
        self._loop.call_later(seconds, self.push, data)

    def then(self, reply: bytes, seconds: float, later: bytes) -> Reply:
        """A reply that prints ``reply`` now and ``later`` after ``seconds``."""

        def answer(command: str) -> bytes:
            self.push_later(seconds, later)
            return reply

        return answer

    async def wait_for(self, predicate: Callable[[list[str]], bool]) -> None:
        """Wait until the received commands satisfy ``predicate``."""
        while not predicate(self.commands):
            self._arrived.clear()
            await self._arrived.wait()

    async def drained(self) -> None:
        """Wait until everything queued for output was written."""
        await self._outbox.join()

    def stop_reading(self) -> None:
        """Read no more: the host's writes fill the port and then wait."""
        if self._open:
            self._loop.remove_reader(self._master)

    def vanish(self) -> None:
        """Close the master side at once: the port is gone for the host."""
        if not self._open:
            return
        self._open = False
        self._loop.remove_reader(self._master)
        os.close(self._master)

    async def close(self) -> None:
        """Stop answering and release both sides of the pseudo-terminal."""
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self.vanish()
        os.close(self._slave)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return
        self._inbox += data
        self._process()

    def _process(self) -> None:
        while True:
            if self._payload_left:
                if len(self._inbox) < self._payload_left:
                    return
                self._payload_received()
                continue
            end = self._inbox.find(b"\r")
            if end < 0:
                return
            line = self._inbox[:end].decode("latin-1").strip("\n")
            del self._inbox[: end + 1]
            if line:
                self._command_received(line)

    def _command_received(self, command: str) -> None:
        self.commands.append(command)
        self._arrived.set()
        if self.echo:
            self.push(command.encode("latin-1") + b"\r")
        reply = _next_reply(self._rules, command)
        self.push(b"\r\nERROR\r\n" if reply is None else reply)
        send = SEND_COMMAND.fullmatch(command)
        # A send answered with the prompt, or with nothing yet (the prompt is
        # pushed later), takes the announced bytes as its payload.
        prompted = reply is not None and (b">" in reply or reply == b"")
        if send and int(send.group(1)) > 0 and prompted:
            self._payload_left = int(send.group(1))
            self._payload_command = command

    def _payload_received(self) -> None:
        data = bytes(self._inbox[: self._payload_left])
        del self._inbox[: self._payload_left]
        self._payload_left = 0
        self.payloads.append(data)
        self._arrived.set()
        reply = _next_reply(self._after_payload, self._payload_command)
        if reply:
            self.push(reply)

    async def _write_loop(self) -> None:
        while True:
            data = await self._outbox.get()
            try:
                pieces = [data[i : i + 1] for i in range(len(data))]
                for piece in pieces if self.byte_at_a_time else [data]:
                    await self._write(piece)
            finally:
                self._outbox.task_done()

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._open:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                continue
            view = view[written:]
        if self.byte_at_a_time:
            await asyncio.sleep(0)


def _pattern(command: str, regex: bool) -> re.Pattern[str]:
    return re.compile(command if regex else re.escape(command))


def _next_reply(
    rules: list[tuple[re.Pattern[str], deque[Reply]]], command: str
) -> bytes | None:
    for pattern, replies in rules:
        if pattern.fullmatch(command) and replies:
            reply = replies.popleft() if len(replies) > 1 else replies[0]
            return reply(command) if callable(reply) else reply
    return None


OK = b"\r\nOK\r\n"


def script_common(peer: ScriptedPeer) -> None:
    """What both families answer alike, with a ready SIM and home registration."""
    for command in ("AT", "ATE0", "AT+CMEE=2", "AT+CFUN=0", "AT+CFUN=1"):
        peer.on(command, OK)
    peer.on("AT+CGSN", b"\r\n868822040061788\r\n" + OK)
    peer.on("AT+CPIN?", b"\r\n+CPIN: READY\r\n" + OK)
    peer.on("AT+CSQ", b"\r\n+CSQ: 20,99\r\n" + OK)
    peer.on("AT+CREG?", b"\r\n+CREG: 0,1\r\n" + OK)
    peer.on("AT+CGREG?", b"\r\n+CGREG: 0,1\r\n" + OK)
    peer.on("AT+CEREG?", b"\r\n+CEREG: 0,1\r\n" + OK)
    peer.on("AT+COPS?", b'\r\n+COPS: 0,0,"Mint",7\r\n' + OK)


def script_sim7600(peer: ScriptedPeer) -> None:
    """A SIM7600G-H that brings its bearer up and opens link 0 to the relay."""
    script_common(peer)
    peer.on(
        "ATI",
        b"\r\nManufacturer: SIMCOM INCORPORATED\r\nModel: SIMCOM_SIM7600G-H\r\n"
        b"Revision: SIM7600G_V2.0.2\r\nIMEI: 868822040061788\r\n+GCAP: +CGSM\r\n" + OK,
    )
    peer.on("AT+CGMI", b"\r\nSIMCOM INCORPORATED\r\n" + OK)
    peer.on("AT+CGMM", b"\r\nSIMCOM_SIM7600G-H\r\n" + OK)
    peer.on("AT+CGMR", b"\r\n+CGMR: LE20B04SIM7600M22\r\n" + OK)
    peer.on("AT+CICCID", b"\r\n+ICCID: 89883030000005421166\r\n" + OK)
    for command in ("AT+CSOCKSETPN=1", "AT+CIPMODE=0", "AT+CIPRXGET=1"):
        peer.on(command, OK)
    peer.on('AT+CGDCONT=1,"IP","internet"', OK)
    peer.on("AT+NETOPEN?", b"\r\n+NETOPEN: 0\r\n" + OK)
    peer.on("AT+NETOPEN", peer.then(OK, 0.05, b"\r\n+NETOPEN: 0\r\n"))
    peer.on("AT+IPADDR", b"\r\n+IPADDR: 10.23.156.36\r\n" + OK)
    peer.on(
        r'AT\+CIPOPEN=0,"TCP","127\.0\.0\.1",8888',
        peer.then(OK, 0.02, b"\r\n+CIPOPEN: 0,0\r\n"),
        regex=True,
    )
    peer.on("AT+CIPCLOSE=0", peer.then(OK, 0.02, b"\r\n+CIPCLOSE: 0,0\r\n"))


def script_ec20(peer: ScriptedPeer) -> None:
    """An EC25 that activates context 1 and opens socket 0 to the relay."""
    script_common(peer)
    peer.on("ATI", b"\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A06M4G\r\n" + OK)
    peer.on("AT+CGMI", b"\r\nQuectel\r\n" + OK)
    peer.on("AT+CGMM", b"\r\nEC25\r\n" + OK)
    peer.on("AT+CGMR", b"\r\nEC25EFAR06A06M4G\r\n" + OK)
    peer.on("AT+QCCID", b"\r\n+QCCID: 89860318760221345678\r\n" + OK)
    peer.on('AT+QICSGP=1,1,"internet","","",0', OK)
    peer.on("AT+QIACT?", OK, b'\r\n+QIACT: 1,1,1,"10.1.2.3"\r\n' + OK)
    peer.on("AT+QIACT=1", OK)
    peer.on(
        'AT+QIOPEN=1,0,"TCP","127.0.0.1",8888,0,0',
        peer.then(OK, 0.02, b"\r\n+QIOPEN: 0,0\r\n"),
    )
    peer.on("AT+QICLOSE=0", OK)
