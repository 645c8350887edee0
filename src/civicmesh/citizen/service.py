"""The citizen desk: a thin facade over its four roles -- intake (new requests and their dispatch), workflow
(the state table), supervision (time limits) and KPIs (department scores) -- sharing one `DeskContext`.

States: received -> dispatched -> accepted (or returned -> re-dispatched) -> in_progress -> resolved ->
(return visit) -> closed. Open311 shows the first five as `open` and the last two as `closed`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from civicmesh.citizen.catalogue import Catalogue
from civicmesh.citizen.classifier import DispatchClassifier
from civicmesh.citizen.context import (
    CLOSED_STATES,
    OPEN_STATES,
    TRIAGE_STATES,
    CitizenError,
    DeskContext,
    parse_time,
    utc_text,
)
from civicmesh.citizen.intake import Dispatch, Intake, SubmitInput, haversine_m, text_similarity
from civicmesh.citizen.kpis import Kpis
from civicmesh.citizen.supervision import Supervision
from civicmesh.citizen.workflow import Workflow
from civicmesh.store.citizen import CitizenStore

__all__ = [
    "CLOSED_STATES",
    "OPEN_STATES",
    "TRIAGE_STATES",
    "CitizenDesk",
    "CitizenError",
    "Dispatch",
    "SubmitInput",
    "haversine_m",
    "parse_time",
    "text_similarity",
    "utc_text",
]


class CitizenDesk(DeskContext):
    def __init__(
        self,
        store: CitizenStore,
        catalogue: Catalogue,
        classifier: Callable[[], DispatchClassifier],
        *,
        clock: Callable[[], dt.datetime] | None = None,
        entities: Any = None,
        milestones: bool = False,
    ) -> None:
        super().__init__(store, catalogue, clock=clock, entities=entities, milestones=milestones)
        self._classifier = classifier
        self.intake = Intake(self, classifier)
        self.workflow = Workflow(self, self.intake)
        self.supervision = Supervision(self)
        self.scores = Kpis(self)

    # --- intake ---
    async def check_jurisdiction(self, jurisdiction_id: str | None) -> None:
        await self.intake.check_jurisdiction(jurisdiction_id)

    async def submit(self, form: SubmitInput) -> dict[str, Any]:
        return await self.intake.submit(form)

    # --- department workflow ---
    async def assign(self, request_id: int, department: str, note: str = "") -> dict[str, Any]:
        """Manual dispatch from the triage queue."""
        return await self.workflow.assign(request_id, department, note)

    async def accept(self, request_id: int, department: str) -> dict[str, Any]:
        return await self.workflow.accept(request_id, department)

    async def return_request(self, request_id: int, department: str, reason: str) -> dict[str, Any]:
        """A department returns a misdispatched request (退单) with a reason; it goes elsewhere."""
        return await self.workflow.return_request(request_id, department, reason)

    async def progress(self, request_id: int, department: str, note: str) -> dict[str, Any]:
        return await self.workflow.progress(request_id, department, note)

    async def resolve(self, request_id: int, department: str, note: str) -> dict[str, Any]:
        return await self.workflow.resolve(request_id, department, note)

    async def return_visit(
        self, request_id: int, satisfaction: int, resolved: bool, comment: str = ""
    ) -> dict[str, Any]:
        """The return visit (回访): the citizen rates 1-5 and says whether it is solved; then it closes."""
        return await self.workflow.return_visit(request_id, satisfaction, resolved, comment)

    async def triage_queue(self) -> list[dict[str, Any]]:
        return await self.workflow.triage_queue()

    # --- supervision ---
    async def supervise(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Reminders before the deadline (催办), escalation when overdue (督办), censure when long overdue."""
        return await self.supervision.supervise(now)

    # --- scores ---
    async def kpis(self, month: str | None = None) -> dict[str, Any]:
        """Per-department response, resolution and satisfaction rates for the month's requests."""
        return await self.scores.kpis(month)
