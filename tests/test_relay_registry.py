"""The registry: the newest claim of a name wins, and only its holder releases it."""

from __future__ import annotations

import pytest

from relayserver.errors import DecodeError
from relayserver.literal import parse_dict
from relayserver.registry import Registry


def test_a_claim_returns_the_holder_it_displaced() -> None:
    registry: Registry[str] = Registry()
    assert registry.claim("A", "first") is None
    assert registry.claim("A", "second") == "first"
    assert registry.claim("A", "second") is None
    assert registry.get("A") == "second"


def test_only_the_current_holder_releases_a_name() -> None:
    registry: Registry[str] = Registry()
    registry.claim("A", "first")
    registry.claim("A", "second")
    assert not registry.release("A", "first")
    assert registry.names() == ["A"]
    assert registry.release("A", "second")
    assert registry.names() == []
    assert registry.get("A") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{'a': [1, -2, 3.5, 1e3, 1_000]}", {"a": [1, -2, 3.5, 1000.0, 1000]}),
        ("{'a': {'b': {'c': None}}}", {"a": {"b": {"c": None}}}),
        ('{"a": true, "b": false, "c": null}', {"a": True, "b": False, "c": None}),
        ("{ }", {}),
    ],
)
def test_the_literal_grammar(text: str, value: object) -> None:
    assert parse_dict(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "{'a': " + "[" * 20 + "]" * 20 + "}",
        "{'a': 1" + "0" * 100 + "}",
        "{'a': open}",
        "{'a': 1 + 1}",
        "{'a': (1, 2)}",
        "{'a': b'x'}",
        "['not', 'a', 'dict']",
        "{'a': '\\U00110000'}",
    ],
)
def test_what_the_literal_grammar_refuses(text: str) -> None:
    with pytest.raises(DecodeError):
        parse_dict(text)
