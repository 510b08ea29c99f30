"""The exceptions of the host side: one root, subclasses that carry their data."""

from __future__ import annotations


class ModemError(Exception):
    """Root of everything the host side raises about a modem or a relay link."""


class ATProtocolError(ModemError):
    """The modem printed bytes that break the AT framing rules we rely on."""

    def __init__(self, message: str, data: bytes = b"") -> None:
        super().__init__(message)
        self.data = data


class CommandRefused(ModemError):
    """The modem answered ``ERROR``, ``+CME ERROR`` or ``+CMS ERROR`` to a command.

    ``code`` is the numeric error when the modem gave one, ``text`` its words, and
    ``info`` the information lines it printed before the final result (for example
    ``+CIPOPEN: 1,3`` before ``ERROR``).
    """

    def __init__(
        self,
        command: str,
        result: str,
        *,
        code: int | None = None,
        text: str = "",
        info: tuple[str, ...] = (),
    ) -> None:
        detail = f"{result}" + (f" ({'; '.join(info)})" if info else "")
        super().__init__(f"{command!r} refused: {detail}")
        self.command = command
        self.result = result
        self.code = code
        self.text = text
        self.info = info


class ModemTimeout(ModemError, TimeoutError):
    """A command, prompt or asynchronous result did not arrive in time."""

    def __init__(self, command: str, seconds: float, waiting_for: str = "") -> None:
        what = f" waiting for {waiting_for}" if waiting_for else ""
        super().__init__(f"{command!r}: no answer in {seconds:g} s{what}")
        self.command = command
        self.seconds = seconds
        self.waiting_for = waiting_for


class PortVanished(ModemError):
    """The serial port went away (USB reset, unplug); it may come back."""

    def __init__(self, port: str) -> None:
        super().__init__(f"{port}: the port vanished")
        self.port = port


class SocketError(ModemError):
    """A module TCP socket could not be opened, or failed while in use."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class BearerError(ModemError):
    """The module's data bearer (PDP context) could not be brought up or was lost."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class RelayRefused(ModemError):
    """The relay refused the card (wrong token, bad name)."""


class SimNotReady(ModemError):
    """The SIM did not become ready (no SIM, PIN or PUK needed, or still busy)."""

    def __init__(self, port: str, state: str) -> None:
        super().__init__(f"{port}: SIM not ready: {state}")
        self.port = port
        self.state = state


class UnsupportedModem(ModemError):
    """The port answers AT, but the module is not one of the supported families."""

    def __init__(self, port: str, description: str) -> None:
        super().__init__(f"{port}: not a supported module: {description!r}")
        self.port = port
        self.description = description
