"""Which connection holds which card name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

Holder = TypeVar("Holder")


class Registry(Generic[Holder]):
    """Card name -> the one connection that holds it; the newest claim wins."""

    __slots__ = ("_holders", "get")

    def __init__(self) -> None:
        self._holders: dict[str, Holder] = {}
        # The lookup of every send: the dict's own method, with no call in between.
        self.get: Callable[[str], Holder | None] = self._holders.get

    def claim(self, name: str, holder: Holder) -> Holder | None:
        """Give ``name`` to ``holder``; return the holder it took the name from."""
        previous = self._holders.get(name)
        self._holders[name] = holder
        return None if previous is holder else previous

    def release(self, name: str, holder: Holder) -> bool:
        """Free ``name`` if ``holder`` still holds it; say whether it did."""
        if self._holders.get(name) is not holder:
            return False
        del self._holders[name]
        return True

    def names(self) -> list[str]:
        """The names held now."""
        return list(self._holders)

    def __len__(self) -> int:
        return len(self._holders)
