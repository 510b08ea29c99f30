"""Presence state on its own: who is online, and what watchers are told."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from relayserver.presence import MAX_NAMES, ClusterUnavailable, Presence, PresenceError


class Watcher:
    def __init__(self) -> None:
        self.changes: list[tuple[str, bool]] = []

    def presence_changed(self, name: str, online: bool) -> None:
        self.changes.append((name, online))


class Cluster:
    """The other nodes, as a probe answers for them."""

    def __init__(self) -> None:
        self.holders: dict[str, str] = {}
        self.reachable = True
        self.asked: list[list[str]] = []

    async def probe(self, names: Sequence[str]) -> dict[str, str | None]:
        self.asked.append(list(names))
        if not self.reachable:
            raise ClusterUnavailable("test")
        return {name: self.holders.get(name) for name in names}


@pytest.fixture
def here() -> set[str]:
    return set()


@pytest.fixture
def presence(here: set[str]) -> Presence:
    return Presence("n1", here.__contains__)


async def test_who_answers_from_this_nodes_cards(
    presence: Presence, here: set[str]
) -> None:
    here.update({"A", "C"})

    assert await presence.who(["C", "B", "A"]) == ["C", "A"]


async def test_who_asks_the_cluster_only_about_names_held_elsewhere(
    presence: Presence, here: set[str]
) -> None:
    cluster = Cluster()
    cluster.holders["B"] = "n2"
    presence.attach_cluster(cluster.probe)
    here.add("A")

    assert await presence.who(["A", "B", "Z"]) == ["A", "B"]
    assert cluster.asked == [["B", "Z"]]


async def test_who_fails_clearly_when_the_cluster_is_cut_off(
    presence: Presence,
) -> None:
    cluster = Cluster()
    cluster.reachable = False
    presence.attach_cluster(cluster.probe)

    with pytest.raises(ClusterUnavailable, match="cluster unavailable"):
        await presence.who(["B"])


async def test_a_watcher_hears_each_change_once(presence: Presence) -> None:
    watcher = Watcher()
    assert await presence.watch(watcher, ["B"]) == []

    presence.card_online("B")
    presence.card_online("B")
    presence.card_offline("B")
    presence.card_offline("B")

    assert watcher.changes == [("B", True), ("B", False)]


async def test_watch_answers_with_the_names_online_now(
    presence: Presence, here: set[str]
) -> None:
    cluster = Cluster()
    cluster.holders["B"] = "n2"
    presence.attach_cluster(cluster.probe)
    here.add("A")

    assert await presence.watch(Watcher(), ["A", "B", "C"]) == ["A", "B"]


async def test_a_card_moving_between_nodes_stays_online(presence: Presence) -> None:
    watcher = Watcher()
    await presence.watch(watcher, ["B"])

    presence.card_online("B", "n2")
    presence.card_online("B", "n3")
    # The old node releases it after the new one announced it: not offline.
    presence.card_offline("B", "n2")

    assert watcher.changes == [("B", True)]
    presence.card_offline("B", "n3")
    assert watcher.changes == [("B", True), ("B", False)]


async def test_a_gone_node_takes_only_its_own_cards_offline(
    presence: Presence,
) -> None:
    watcher = Watcher()
    await presence.watch(watcher, ["B", "C", "D"])
    presence.card_online("B", "n2")
    presence.card_online("C", "n3")
    presence.card_online("D", "n2")

    presence.node_gone("n2")

    assert sorted(watcher.changes) == [
        ("B", False),
        ("B", True),
        ("C", True),
        ("D", False),
        ("D", True),
    ]


async def test_unwatch_stops_the_changes_and_forgets_the_name(
    presence: Presence,
) -> None:
    one, two = Watcher(), Watcher()
    await presence.watch(one, ["B"])
    await presence.watch(two, ["B"])

    presence.unwatch(one, ["B"])
    presence.card_online("B")
    assert one.changes == []
    assert two.changes == [("B", True)]

    presence.unwatch(two)
    assert presence.watched() == []


async def test_a_watcher_may_watch_so_many_names_and_no_more(
    presence: Presence,
) -> None:
    watcher = Watcher()
    await presence.watch(watcher, [f"card{i}" for i in range(MAX_NAMES)])

    with pytest.raises(PresenceError, match="too many names"):
        await presence.watch(watcher, ["one more"])


@pytest.mark.parametrize("names", [[], ["B", ""], ["x"] * (MAX_NAMES + 1)])
async def test_bad_name_lists_are_refused(presence: Presence, names: list[str]) -> None:
    with pytest.raises(PresenceError):
        await presence.who(names)


async def test_a_failing_watcher_does_not_silence_the_others(
    presence: Presence,
) -> None:
    class Broken:
        def presence_changed(self, name: str, online: bool) -> None:
            raise RuntimeError("broken watcher")

    watcher = Watcher()
    await presence.watch(Broken(), ["B"])
    await presence.watch(watcher, ["B"])

    presence.card_online("B")

    assert watcher.changes == [("B", True)]


async def test_resync_reports_what_changed_while_the_cluster_was_away(
    presence: Presence,
) -> None:
    cluster = Cluster()
    cluster.holders.update({"B": "n2", "C": "n2"})
    presence.attach_cluster(cluster.probe)
    watcher = Watcher()
    assert await presence.watch(watcher, ["B", "C", "D"]) == ["B", "C"]

    cluster.holders = {"C": "n3", "D": "n2"}
    await presence.resync()

    assert sorted(watcher.changes) == [("B", False), ("D", True)]


async def test_a_slow_probe_does_not_undo_a_newer_announcement(
    presence: Presence,
) -> None:
    release = asyncio.Event()

    async def slow_probe(names: Sequence[str]) -> dict[str, str | None]:
        await release.wait()
        return dict.fromkeys(names)

    presence.attach_cluster(slow_probe)
    watcher = Watcher()
    watching = asyncio.create_task(presence.watch(watcher, ["B"]))
    await asyncio.sleep(0)

    presence.card_online("B", "n2")
    release.set()

    # The answer already says online: the watcher hears of later changes only.
    assert await watching == ["B"]
    presence.card_offline("B", "n2")
    assert watcher.changes == [("B", False)]


async def test_a_watch_while_the_cluster_is_away_knows_this_nodes_cards(
    presence: Presence, here: set[str]
) -> None:
    cluster = Cluster()
    cluster.reachable = False
    presence.attach_cluster(cluster.probe)
    here.add("A")

    assert await presence.watch(Watcher(), ["A", "B"]) == ["A"]


class SlowCluster(Cluster):
    """A cluster whose answers wait until the test lets them go."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.answering = asyncio.Event()

    async def probe(self, names: Sequence[str]) -> dict[str, str | None]:
        answer = await super().probe(names)
        self.answering.set()
        await self.release.wait()
        return answer


@pytest.fixture
def cluster(presence: Presence) -> SlowCluster:
    """A slow cluster in which node n2 holds card B."""
    slow = SlowCluster()
    slow.holders["B"] = "n2"
    presence.attach_cluster(slow.probe)
    return slow


async def test_two_watches_of_one_name_at_once_both_get_the_truth(
    presence: Presence, cluster: SlowCluster
) -> None:
    one, two = Watcher(), Watcher()

    first = asyncio.create_task(presence.watch(one, ["B"]))
    await cluster.answering.wait()
    second = asyncio.create_task(presence.watch(two, ["B"]))
    await asyncio.sleep(0)
    cluster.release.set()

    assert await first == ["B"]
    assert await second == ["B"]
    assert cluster.asked == [["B"]]
    presence.card_offline("B", "n2")
    assert one.changes == two.changes == [("B", False)]


async def test_a_change_heard_while_the_cluster_is_asked_is_not_lost(
    presence: Presence, cluster: SlowCluster
) -> None:
    watcher = Watcher()

    watching = asyncio.create_task(presence.watch(watcher, ["B"]))
    await cluster.answering.wait()
    # The answer says n2 holds B, but B left n2 before the answer arrives.
    presence.card_offline("B", "n2")
    cluster.release.set()

    assert await watching == []
    presence.card_online("B", "n3")
    assert watcher.changes == [("B", True)]


async def test_a_name_forgotten_while_a_second_watch_waited_is_asked_again(
    presence: Presence, cluster: SlowCluster
) -> None:
    one, two = Watcher(), Watcher()
    first = asyncio.create_task(presence.watch(one, ["B"]))
    await cluster.answering.wait()
    second = asyncio.create_task(presence.watch(two, ["B"]))
    await asyncio.sleep(0)

    cluster.release.set()
    assert await first == ["B"]
    # The first watcher leaves before the second watch resumes: B is forgotten.
    presence.unwatch(one)

    assert await second == ["B"]
    assert cluster.asked == [["B"], ["B"]]
