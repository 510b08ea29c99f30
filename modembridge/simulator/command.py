"""Parsing of one AT command line into the commands it carries.

A line is ``AT`` followed by basic commands (``E0``, ``I``, ``&D2``, ``S0=1``,
``D...``) and extended commands (``+CSQ``, ``+CPIN?``, ``+CMEE=2``,
``+CGDCONT=?``), extended ones separated by ``;``. Names are matched in upper case;
quoted arguments keep their case and lose their quotes. Bad syntax yields ``None``,
which the module answers with ``ERROR``, never an exception.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Form(enum.Enum):
    """The four shapes of an extended command."""

    EXEC = ""
    READ = "?"
    TEST = "=?"
    SET = "="


@dataclass(frozen=True)
class Command:
    """One command of a line: its upper-case name, form and arguments."""

    name: str
    form: Form = Form.EXEC
    args: tuple[str, ...] = ()

    def arg(self, index: int, default: str = "") -> str:
        """The argument at ``index``, or ``default`` when it is absent or empty."""
        if index < len(self.args) and self.args[index] != "":
            return self.args[index]
        return default

    def int_arg(self, index: int, default: int | None = None) -> int | None:
        """The argument at ``index`` as an integer; ``default`` if absent or not one."""
        text = self.arg(index)
        if not text:
            return default
        try:
            return int(text)
        except ValueError:
            return default

    def __str__(self) -> str:
        joined = ",".join(self.args)
        return f"{self.name}{self.form.value}{joined}"


def parse_line(line: str) -> list[Command] | None:
    """The commands of one line without its CR, or None when it is not valid AT."""
    text = line.strip()
    if len(text) < 2 or text[:2].upper() != "AT":
        return None
    body = text[2:]
    commands: list[Command] = []
    position = 0
    while position < len(body):
        if body[position] in "; ":
            position += 1
            continue
        parsed = _parse_one(body, position)
        if parsed is None:
            return None
        command, position = parsed
        commands.append(command)
    return commands


def _parse_one(body: str, start: int) -> tuple[Command, int] | None:
    """One command starting at ``start`` and the index just after it."""
    if body[start] == "+":
        return _parse_extended(body, start)
    return _parse_basic(body, start)


def _parse_extended(body: str, start: int) -> tuple[Command, int] | None:
    end = start + 1
    while end < len(body) and (body[end].isalnum() or body[end] == "_"):
        end += 1
    name = body[start:end].upper()
    if len(name) < 2:
        return None
    rest = body[end:]
    if rest.startswith("=?"):
        return Command(name, Form.TEST), end + 2
    if rest.startswith("?"):
        return Command(name, Form.READ), end + 1
    if rest.startswith("="):
        return _parse_set(name, body, end + 1)
    return Command(name, Form.EXEC), end


def _parse_set(name: str, body: str, start: int) -> tuple[Command, int] | None:
    stop = _end_of_arguments(body, start)
    args = split_arguments(body[start:stop]) if stop is not None else None
    if stop is None or args is None:
        return None
    return Command(name, Form.SET, tuple(args)), stop


def _parse_basic(body: str, start: int) -> tuple[Command, int] | None:
    position = start
    prefix = ""
    if body[position] == "&":
        prefix = "&"
        position += 1
    if position >= len(body) or not body[position].isalpha():
        return None
    name = prefix + body[position].upper()
    position += 1
    if name == "D":
        return Command(name, Form.SET, (body[position:],)), len(body)
    digits = _digits_at(body, position)
    if name == "S":
        return _parse_register(body, position, digits)
    position += len(digits)
    args = (digits,) if digits else ()
    return Command(name, Form.SET if digits else Form.EXEC, args), position


def _parse_register(
    body: str, position: int, digits: str
) -> tuple[Command, int] | None:
    if not digits:
        return None
    position += len(digits)
    name = f"S{int(digits)}"
    if body[position : position + 1] == "?":
        return Command(name, Form.READ), position + 1
    if body[position : position + 1] == "=":
        value = _digits_at(body, position + 1)
        return Command(name, Form.SET, (value,)), position + 1 + len(value)
    return None


def _digits_at(body: str, position: int) -> str:
    end = position
    while end < len(body) and body[end].isdigit():
        end += 1
    return body[position:end]


def _end_of_arguments(body: str, start: int) -> int | None:
    """Index of the ``;`` ending the arguments (or the line end); None if unquoted."""
    quoted = False
    for index in range(start, len(body)):
        char = body[index]
        if char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            return index
    return None if quoted else len(body)


def split_arguments(text: str) -> list[str] | None:
    """Comma separated arguments, quotes removed; None on an unterminated quote."""
    args: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if quoted:
        return None
    args.append("".join(current).strip())
    return args
