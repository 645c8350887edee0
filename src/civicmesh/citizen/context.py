"""What every role of the citizen desk shares: the store, catalogue, clock and time zone, the states, errors and
timestamps, reading a request, and showing a changed request to the broker and the ledger.

States: received -> dispatched -> accepted (or returned -> re-dispatched) -> in_progress -> resolved ->
(return visit) -> closed. Open311 shows the first five as `open` and the last two as `closed`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from civicmesh.citizen.catalogue import Catalogue, Service
from civicmesh.citizen.entity import request_to_entity
from civicmesh.citizen.workdays import parse_offset
from civicmesh.store.citizen import CitizenStore, Milestones
from civicmesh.store.db import Event

log = logging.getLogger("civicmesh.citizen")

OPEN_STATES = ("received", "dispatched", "accepted", "returned", "in_progress")
CLOSED_STATES = ("resolved", "closed")
TRIAGE_STATES = ("received", "returned")


class CitizenError(Exception):
    """A request the desk refuses; `status` is the HTTP status, `code` the Open311 error code."""

    def __init__(self, status: int, description: str, code: int | str | None = None) -> None:
        self.status = status
        self.code = code if code is not None else status
        self.description = description
        super().__init__(description)


def utc_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 timestamp that must carry a time zone (Open311 requires one)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO 8601 datetime") from exc
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add Z or an offset such as +08:00")
    return moment



class DeskContext:
    """The state the desk's roles share; `CitizenDesk` is one, and each role reads it through `desk`."""

    def __init__(
        self,
        store: CitizenStore,
        catalogue: Catalogue,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        entities: Any = None,
        milestones: bool = False,
    ) -> None:
        self.store = store
        # Each state a request reaches is a milestone event (citizen.<state>), committed with the change; the
        # ledger records them.
        self.milestones = milestones
        self.catalogue = catalogue
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.entities = entities
        self.tz = parse_offset(catalogue.timezone_offset)

    # --- presentation helpers ---
    def local_text(self, stored: str | None) -> str | None:
        """A stored UTC timestamp shown in the jurisdiction's offset, e.g. 2026-10-08T23:59:59+08:00."""
        if not stored:
            return None
        return parse_time(stored).astimezone(self.tz).isoformat()

    @staticmethod
    def open311_status(row: dict[str, Any]) -> str:
        return "closed" if row["state"] in CLOSED_STATES else "open"

    def service(self, code: str) -> Service:
        service = self.catalogue.services.get(code)
        if service is None:
            raise CitizenError(404, f"service_code {code!r} not found; GET services.json lists the codes")
        return service

    async def get(self, request_id: int) -> dict[str, Any]:
        row = await self.store.get_request(request_id)
        if row is None:
            raise CitizenError(404, f"service_request_id {request_id} not found")
        return row

    # --- the entity in the broker ---
    def entity(self, row: dict[str, Any]) -> dict[str, Any]:
        return request_to_entity(
            row,
            self.catalogue,
            open311_status=self.open311_status(row),
            expected_datetime=self.local_text(row.get("expected_at")),
            requested_datetime=self.local_text(row["requested_at"]) or "",
            updated_datetime=self.local_text(row["updated_at"]) or "",
        )

    def milestone_events(self, previous_state: str | None) -> Milestones | None:
        """The milestone a change owes (citizen.<new state>), for the store to commit with the change itself:
        a request never reaches a state the ledger does not hear of, nor the ledger a state never reached."""
        if not self.milestones:
            return None

        def events(row: dict[str, Any]) -> list[Event]:
            if row.get("state") == previous_state:
                return []
            data = {"request": row["id"], "milestone": row["state"], "previous": previous_state,
                    "department": row.get("lead_department"), "category": row.get("service_code"),
                    "actor": row.get("lead_department") or "citizen-desk"}
            return [(f"citizen.{row['state']}", str(row["id"]), data, self.catalogue.entity_tenant)]
        return events

    async def publish(self, row: dict[str, Any]) -> None:
        if self.entities is None or not hasattr(self.entities, "upsert"):
            return
        try:
            await self.entities.upsert(self.catalogue.entity_tenant, self.entity(row))
        except Exception:  # the request is stored; the broker copy is refreshed on the next change
            log.exception("could not publish request %s to the broker", row["id"])
