"""An agreement's transition and its change event commit together or not at all, on both engines."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from civicmesh.store import Database, open_store
from civicmesh.store.exchange import ExchangeStore


async def _scenario(database_url: str) -> dict[str, Any]:
    db = Database.from_url(database_url)
    main = open_store(db)
    await main.open()  # the outbox lives in the main store's schema
    store = ExchangeStore(db)
    await store.migrate()
    try:
        start = await main.last_outbox_seq()
        doc = {"id": "urn:test:neg:1", "product": "p", "provider": "a", "consumer": "b", "state": "REQUESTED",
               "created_at": "2026-01-01T00:00:00Z"}
        step = {"negotiation": doc["id"], "at": "2026-01-01T00:00:00Z", "from": None, "to": "REQUESTED",
                "actor": "bob@b", "reason": "asked"}
        await store.add_negotiation(doc, step, [("exchange.negotiation.requested", doc["id"], {"state": "REQUESTED"})])
        # An event that cannot be written (not JSON) makes the whole transition fail: no half-recorded agreement.
        bad = dict(step, **{"from": "REQUESTED", "to": "AGREED", "reason": "approved"})
        with pytest.raises(TypeError, match="JSON serializable"):
            await store.move(doc["id"], ("REQUESTED",), "AGREED", bad,
                             events=[("exchange.negotiation.agreed", doc["id"], {"not json": {1, 2}})])
        after_failure = await store.get_negotiation(doc["id"])
        failed_steps = await store.transitions(doc["id"])
        moved = await store.move(doc["id"], ("REQUESTED",), "AGREED", bad,
                                 events=[("exchange.negotiation.agreed", doc["id"], {"state": "AGREED"})])
        events = await main.read_outbox(start, 100)
        return {"after_failure": after_failure, "failed_steps": failed_steps, "moved": moved,
                "steps": await store.transitions(doc["id"]), "events": events}
    finally:
        await main.close()
        await db.close()


def test_transition_and_event_are_one_transaction(database_url: str) -> None:
    out = asyncio.run(_scenario(database_url))
    assert out["after_failure"]["state"] == "REQUESTED"
    assert [s["to_state"] for s in out["failed_steps"]] == ["REQUESTED"]
    assert out["moved"]["state"] == "AGREED"
    assert [s["to_state"] for s in out["steps"]] == ["REQUESTED", "AGREED"]
    assert [(e.kind, e.subject) for e in out["events"]] == [
        ("exchange.negotiation.requested", "urn:test:neg:1"), ("exchange.negotiation.agreed", "urn:test:neg:1")]
    assert out["events"][1].data == {"state": "AGREED"}
