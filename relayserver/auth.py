"""Optional authentication: a TOML file that maps each card name to its token."""

from __future__ import annotations

import hmac
import tomllib
from collections.abc import Mapping
from pathlib import Path

from relayserver.errors import ConfigError


def load_tokens(path: Path) -> dict[str, str]:
    """Read ``path`` (``A = "secret"`` lines) into card name -> token."""
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read tokens from {path}: {error}") from error
    tokens = {name: token for name, token in table.items() if isinstance(token, str)}
    if len(tokens) != len(table) or not all(tokens.values()):
        raise ConfigError(f'{path}: every entry must be card = "non-empty token"')
    return tokens


class Authenticator:
    """Decides whether a connect may claim a name; without tokens, any may."""

    __slots__ = ("_tokens",)

    def __init__(self, tokens: Mapping[str, str] | None) -> None:
        self._tokens = None if tokens is None else dict(tokens)

    @property
    def enabled(self) -> bool:
        """Whether cards must present a token."""
        return self._tokens is not None

    def allows(self, name: str, token: str | None) -> bool:
        """Whether ``token`` is the one configured for card ``name``."""
        if self._tokens is None:
            return True
        expected = self._tokens.get(name)
        if expected is None or token is None:
            return False
        return hmac.compare_digest(expected.encode(), token.encode())
