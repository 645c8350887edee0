"""What waits for one page of the live stream: the newest change of each entity, bounded by entities, not updates."""

from __future__ import annotations

from typing import Any

from civicmesh.access import ANONYMOUS
from civicmesh.events import ENTITY_UPDATED, ChangeEvent
from civicmesh.web import live
from civicmesh.web.live import Listener


def change(seq: int, subject: str, value: Any = None) -> ChangeEvent:
    return ChangeEvent(seq, "", ENTITY_UPDATED, subject, "2026-11-29T03:00:00Z",
                       {"before": None, "after": {"id": subject, "value": value}})


def test_a_page_gets_the_newest_state_of_each_entity_once_with_how_many_changes_it_stands_for() -> None:
    page = Listener(ANONYMOUS, "")
    for seq, (subject, value) in enumerate([("a", 1), ("b", 1), ("a", 2), ("a", 3), ("c", 1)], start=1):
        page.offer(change(seq, subject, value))
    taken, counts = page.take()
    assert [(e.subject, e.data["after"]["value"]) for e in taken] == [("a", 3), ("b", 1), ("c", 1)]
    assert counts == {"a": 3, "b": 1, "c": 1}
    assert page.take() == ([], {})


def test_a_long_backlog_goes_out_in_messages_of_bounded_size() -> None:
    page = Listener(ANONYMOUS, "")
    for n in range(live.BATCH_LIMIT + 7):
        page.offer(change(n + 1, f"e{n}"))
    first, _ = page.take()
    assert len(first) == live.BATCH_LIMIT and page.wake.is_set()  # the sender comes back for the rest at once
    rest, counts = page.take()
    assert [e.subject for e in rest] == [f"e{n}" for n in range(live.BATCH_LIMIT, live.BATCH_LIMIT + 7)]
    assert sum(counts.values()) == 7


def test_a_page_behind_on_too_many_entities_is_told_to_reload() -> None:
    page = Listener(ANONYMOUS, "")
    for n in range(live.QUEUE_LIMIT):
        page.offer(change(n + 1, f"e{n}"))
    page.offer(change(live.QUEUE_LIMIT + 1, "e0"))  # a newer change of a waiting entity: still within the bound
    assert not page.overflowed
    page.offer(change(live.QUEUE_LIMIT + 2, "one-more"))
    assert page.overflowed and page.take() == ([], {})
