"""A parser for the dict literals cards send, in Python or JSON spelling, never eval.

The grammar is the intersection cards need: dicts, lists, strings in single or double
quotes with the usual backslash escapes, integers, floats, ``True``/``False``/``None``
and their JSON spellings ``true``/``false``/``null``. Anything else (a name, a call,
an operator) is a :class:`~relayserver.errors.DecodeError`. Nesting is bounded so a
hostile request cannot exhaust the stack. Of Python's string prefixes only ``u`` is
accepted (Python 2 prints it); other prefixes, implicit string concatenation and
triple quotes are not part of the grammar.
"""

from __future__ import annotations

import json
import re

from relayserver.errors import DecodeError

MAX_DEPTH = 16

_SPACE = re.compile(r"[ \t\r\n\f\v]*")
_STRING = {
    "'": re.compile(r"'((?:[^'\\\n]|\\.)*)'", re.DOTALL),
    '"': re.compile(r'"((?:[^"\\\n]|\\.)*)"', re.DOTALL),
}
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9_]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORDS: dict[str, object] = {
    "True": True,
    "true": True,
    "False": False,
    "false": False,
    "None": None,
    "null": None,
}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPE = re.compile(
    r"\\(u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}"
    r"|U[0-9a-fA-F]{8}|[0-7]{1,3}|.)",
    re.DOTALL,
)
_SIMPLE_ESCAPES = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "/": "/",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "a": "\a",
    "\n": "",
}
MAX_NUMBER_DIGITS = 64


def parse_dict(text: str) -> dict[str, object]:
    """Parse ``text`` (one whole literal) as a dict with string keys."""
    if text.startswith('{"'):
        # JSON is the common spelling of newer cards; the C decoder is quickest.
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            pass
        else:
            if isinstance(value, dict):
                return value
    parser = _Parser(text)
    value = parser.whole()
    if not isinstance(value, dict):
        raise DecodeError("a request must be a dict")
    return value


class _Parser:
    """Recursive descent over one literal; ``pos`` is the next unread character."""

    __slots__ = ("depth", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def whole(self) -> object:
        value = self.value()
        self.skip_space()
        if self.pos != len(self.text):
            raise self.error("unexpected text after the request")
        return value

    def value(self) -> object:
        self.skip_space()
        char = self.text[self.pos : self.pos + 1]
        if char == "{":
            return self.dict_()
        if char == "[":
            return self.list_()
        if char in ("'", '"') or self.unicode_prefix():
            return self.string()
        if char == "-" or char.isdigit():
            return self.number()
        return self.word()

    def dict_(self) -> dict[str, object]:
        self.enter()
        result: dict[str, object] = {}
        while not self.closes("}"):
            key = self.string_key()
            self.expect(":")
            result[key] = self.value()
            self.after_item("}")
        self.depth -= 1
        return result

    def list_(self) -> list[object]:
        self.enter()
        result: list[object] = []
        while not self.closes("]"):
            result.append(self.value())
            self.after_item("]")
        self.depth -= 1
        return result

    def enter(self) -> None:
        self.pos += 1
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH}")

    def closes(self, closer: str) -> bool:
        self.skip_space()
        if self.text.startswith(closer, self.pos):
            self.pos += 1
            return True
        return False

    def after_item(self, closer: str) -> None:
        self.skip_space()
        if self.text.startswith(",", self.pos):
            self.pos += 1
        elif not self.text.startswith(closer, self.pos):
            raise self.error(f"expected ',' or {closer!r}")

    def expect(self, char: str) -> None:
        self.skip_space()
        if not self.text.startswith(char, self.pos):
            raise self.error(f"expected {char!r}")
        self.pos += 1

    def string_key(self) -> str:
        self.skip_space()
        quoted = self.text[self.pos : self.pos + 1] in ("'", '"')
        if not quoted and not self.unicode_prefix():
            raise self.error("a key must be a quoted string")
        return self.string()

    def unicode_prefix(self) -> bool:
        """Step over the ``u`` of ``u'text'``, which Python 2 cards print."""
        prefix = self.text[self.pos : self.pos + 2]
        if prefix[:1] in ("u", "U") and prefix[1:] in ("'", '"'):
            self.pos += 1
            return True
        return False

    def string(self) -> str:
        match = _STRING[self.text[self.pos]].match(self.text, self.pos)
        if match is None:
            raise self.error("unterminated string")
        self.pos = match.end()
        body = match.group(1)
        return unescape(body) if "\\" in body else body

    def number(self) -> int | float:
        match = _NUMBER.match(self.text, self.pos)
        if match is None or match.end() - match.start() > MAX_NUMBER_DIGITS:
            raise self.error("not a number")
        self.pos = match.end()
        digits = match.group().replace("_", "")
        if match.group(1) or match.group(2):
            return float(digits)
        return int(digits)

    def word(self) -> object:
        match = _WORD.match(self.text, self.pos)
        if match is None or match.group() not in _WORDS:
            raise self.error("not a literal")
        self.pos = match.end()
        return _WORDS[match.group()]

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()

    def error(self, reason: str) -> DecodeError:
        return DecodeError(f"{reason} at offset {self.pos}")


def unescape(body: str) -> str:
    """Resolve the backslash escapes Python and JSON string literals share."""
    return _ESCAPE.sub(_resolve_escape, body)


def _resolve_escape(match: re.Match[str]) -> str:
    code = match.group(1)
    head = code[0]
    if head in "xuU" and len(code) > 1:
        if len(code) == 11:
            return _surrogate_pair(code)
        return _code_point(int(code[1:], 16))
    if head in "01234567":
        return chr(int(code, 8))
    # Python keeps an unknown escape as it stands, backslash included.
    return _SIMPLE_ESCAPES.get(code, "\\" + code)


def _surrogate_pair(code: str) -> str:
    """A JSON escape pair (high then low surrogate) as the one character it encodes."""
    high, low = int(code[1:5], 16), int(code[7:11], 16)
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def _code_point(value: int) -> str:
    if value > 0x10FFFF:
        raise DecodeError(f"escape \\U{value:08x} is beyond Unicode")
    return chr(value)
