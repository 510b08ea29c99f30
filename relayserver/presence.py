"""Presence: which cards are online, and who wants to hear when that changes.

A version 2 card may ask ``who`` among some names is online, and ``watch`` names to
be told when each one comes online or goes offline. On a single relay node the
answers come from the node's own cards. On a cluster, the node also knows, for each
watched name, which node holds it: the backplane feeds it the online and offline
announcements of the other nodes, tells it when a node went silent (its cards are
then offline), and answers ``who`` for names held elsewhere by probing the cluster.

What a watcher hears is a change of state, never a repeat: a card that moves from
one node to another stays online, so nobody is told it went offline in between.
While the cluster is unreachable the state of names held elsewhere is frozen; the
backplane calls :meth:`Presence.resync` when it is back, and any change found then
is reported like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from relayserver.errors import RelayError

logger = logging.getLogger(__name__)

#: The most names one request (``who`` or ``watch``) may carry, and one card watch.
MAX_NAMES = 1000

# Rounds of learning a watch makes before it takes what this node knows.
_LEARN_ATTEMPTS = 3

#: Answers, for each name, the node that holds it, or ``None`` when none does.
ClusterProbe = Callable[[Sequence[str]], Awaitable[dict[str, str | None]]]


class PresenceError(RelayError):
    """A presence request cannot be answered: ``what`` in short, ``detail`` why."""

    def __init__(self, what: str, detail: str = "") -> None:
        super().__init__(what + (f": {detail}" if detail else ""))
        self.what = what
        self.detail = detail


class ClusterUnavailable(PresenceError):
    """The cluster cannot be asked right now (its messaging system is unreachable)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("cluster unavailable", detail)


class Watcher(Protocol):
    """Something told when a watched name comes online or goes offline."""

    def presence_changed(self, name: str, online: bool) -> None:
        """Called once per change of ``name``'s state."""


class Presence:
    """Online state of cards, for one relay node and, when clustered, its peers."""

    def __init__(self, node: str, held_here: Callable[[str], bool]) -> None:
        self.node = node
        self._held_here = held_here
        self._probe: ClusterProbe | None = None
        # For each watched name: the node that holds it, or None when offline.
        self._holder: dict[str, str | None] = {}
        # Bumped by every announcement, so a slower probe cannot undo a newer event.
        self._generation: dict[str, int] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        self._watching: dict[Watcher, set[str]] = {}
        # Names whose holder the cluster is being asked about, each with the
        # changes heard meanwhile (node, online), applied on top of the answer.
        self._learning: dict[str, asyncio.Future[None]] = {}
        self._missed: dict[str, list[tuple[str, bool]]] = {}

    def attach_cluster(self, probe: ClusterProbe | None) -> None:
        """Ask ``probe`` about names this node does not hold (``None``: stop)."""
        self._probe = probe

    async def who(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` that are online, in the order asked."""
        check_names(names)
        holders = await self._lookup(names)
        return [name for name in names if holders.get(name) is not None]

    async def watch(self, watcher: Watcher, names: Sequence[str]) -> list[str]:
        """Tell ``watcher`` about changes of ``names``; returns those online now.

        The watcher hears of changes after the state returned, never before it.
        """
        check_names(names)
        watched = self._watching.get(watcher, set())
        if len(watched | set(names)) > MAX_NAMES:
            raise PresenceError("too many names", f"a card watches {MAX_NAMES} at most")

        await self._learn_all(names)
        self._watching.setdefault(watcher, set()).update(names)
        for name in names:
            self._watchers.setdefault(name, set()).add(watcher)
            if name not in self._holder:
                # Forgotten while the cluster was asked; what this node knows.
                self._holder[name] = self.node if self._held_here(name) else None
        return [name for name in names if self._holder.get(name) is not None]

    def unwatch(self, watcher: Watcher, names: Iterable[str] | None = None) -> None:
        """Stop telling ``watcher`` about ``names`` (all of its names when ``None``)."""
        watched = self._watching.get(watcher, set())
        for name in list(watched if names is None else names):
            watched.discard(name)
            watchers = self._watchers.get(name)
            if watchers is None:
                continue
            watchers.discard(watcher)
            if not watchers:
                self._forget(name)
        if not watched:
            self._watching.pop(watcher, None)

    def card_online(self, name: str, node: str | None = None) -> None:
        """``name`` connected to ``node`` (this node when ``None``)."""
        if self._missed_while_learning(name, node or self.node, online=True):
            return
        if name not in self._holder:
            return
        self._bump(name)
        was = self._holder[name]
        self._holder[name] = node or self.node
        if was is None:
            self._tell(name, node or self.node, online=True)

    def card_offline(self, name: str, node: str | None = None) -> None:
        """``name`` left ``node``; ignored when another node has taken it since."""
        if self._missed_while_learning(name, node or self.node, online=False):
            return
        if self._holder.get(name) != (node or self.node):
            return
        self._bump(name)
        self._holder[name] = None
        self._tell(name, node or self.node, online=False)

    def node_gone(self, node: str) -> None:
        """``node`` stopped answering: every card it held is offline."""
        for missed in self._missed.values():
            missed.append((node, False))
        for name, holder in list(self._holder.items()):
            if holder == node:
                self.card_offline(name, node)

    async def resync(self) -> None:
        """Ask the cluster again about every watched name and report what changed."""
        names = list(self._holder)
        generations = {name: self._generation.get(name, 0) for name in names}
        holders = await self._lookup(names)
        for name in names:
            if self._generation.get(name, 0) != generations[name]:
                continue
            if name not in self._holder:
                continue
            if holders.get(name) is not None:
                self.card_online(name, holders[name])
            elif self._holder[name] is not None:
                self.card_offline(name, self._holder[name])

    def watched(self) -> list[str]:
        """Every name somebody watches, for diagnostics and tests."""
        return sorted(self._holder)

    async def _learn_all(self, names: Sequence[str]) -> None:
        """Learn the holder of every one of ``names`` not known yet.

        A name another watch is learning about is learnt once, by that watch; if
        it was forgotten again by the time that ended (its watcher left), it is
        asked about once more.
        """
        for _attempt in range(_LEARN_ATTEMPTS):
            others = {self._learning[name] for name in names if name in self._learning}
            await self._learn(
                [
                    name
                    for name in dict.fromkeys(names)
                    if name not in self._holder and name not in self._learning
                ]
            )
            for learnt in others:
                await asyncio.shield(learnt)
            if all(name in self._holder for name in names):
                return

    async def _learn(self, names: Sequence[str]) -> None:
        """Fill in the holder of newly watched ``names``: what the cluster says,
        updated by the changes heard while it was asked; unknown counts as offline."""
        if not names:
            return
        learnt = asyncio.get_running_loop().create_future()
        for name in names:
            self._learning[name] = learnt
            self._missed[name] = []
        holders: dict[str, str | None] = {}
        try:
            holders = await self._lookup(names)
        except ClusterUnavailable:
            # Names held here are known anyway; the rest is learnt at the resync.
            holders = {name: self.node for name in names if self._held_here(name)}
        finally:
            for name in names:
                missed = self._missed.pop(name, [])
                self._holder[name] = _replay(holders.get(name), missed)
                del self._learning[name]
            learnt.set_result(None)

    def _missed_while_learning(self, name: str, node: str, *, online: bool) -> bool:
        """Keep a change of ``name`` heard while its holder is being learnt."""
        missed = self._missed.get(name)
        if missed is None:
            return False
        missed.append((node, online))
        return True

    async def _lookup(self, names: Sequence[str]) -> dict[str, str | None]:
        """The holder of each name: this node, another one (probed), or ``None``."""
        holders: dict[str, str | None] = {}
        elsewhere = []
        for name in names:
            if self._held_here(name):
                holders[name] = self.node
            else:
                elsewhere.append(name)
        if elsewhere and self._probe is not None:
            holders.update(await self._probe(elsewhere))
        return holders

    def _bump(self, name: str) -> None:
        self._generation[name] = self._generation.get(name, 0) + 1

    def _forget(self, name: str) -> None:
        self._watchers.pop(name, None)
        self._holder.pop(name, None)
        self._generation.pop(name, None)

    def _tell(self, name: str, node: str, *, online: bool) -> None:
        state = "online" if online else "offline"
        logger.debug("card[%s]: %s (node %s)", name, state, node)
        for watcher in list(self._watchers.get(name, ())):
            try:
                watcher.presence_changed(name, online)
            except Exception:
                logger.exception("card[%s]: a presence watcher failed", name)


def _replay(holder: str | None, changes: list[tuple[str, bool]]) -> str | None:
    """The holder after ``changes`` (node, online), in order, starting at ``holder``."""
    for node, online in changes:
        if online:
            holder = node
        elif holder == node:
            holder = None
    return holder


def check_names(names: Sequence[str]) -> None:
    """Refuse a list of names that is empty, too long or holds something else."""
    if not names:
        raise PresenceError("wrong format", "names must list at least one card")
    if len(names) > MAX_NAMES:
        raise PresenceError("too many names", f"{MAX_NAMES} a request at most")
    if not all(isinstance(name, str) and name for name in names):
        raise PresenceError("wrong format", "names must be non-empty strings")
