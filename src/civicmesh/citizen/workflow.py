"""Workflow: the state table a dispatched request moves through -- assign from triage, accept, return
(re-dispatch), progress, resolve, return visit (close) -- each a checked, atomic transition."""

from __future__ import annotations

from typing import Any

from civicmesh.citizen.context import TRIAGE_STATES, CitizenError, DeskContext, utc_text
from civicmesh.citizen.intake import Intake


class Workflow:
    def __init__(self, desk: DeskContext, intake: Intake) -> None:
        self.desk = desk
        self.intake = intake

    def _department(self, code: str) -> None:
        if code not in self.desk.catalogue.departments:
            raise CitizenError(404, f"department {code!r} is not in the dispatch catalogue")

    async def _move(
        self,
        row: dict[str, Any],
        changes: dict[str, Any],
        event: tuple[str, str | None, str],
        expect: tuple[str, ...],
        mirror: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        now = utc_text(self.desk.clock())
        changes = {**changes, "updated_at": now}
        children = {k: changes[k] for k in (*mirror, "state", "updated_at") if k in changes}
        updated = await self.desk.store.update_request(
            row["id"], changes, event, children=children, expect_state=expect,
            milestones=self.desk.milestone_events(row.get("state"))
        )
        if updated is None:
            raise CitizenError(409, f"request {row['id']} changed meanwhile; reload and retry")
        await self.desk.publish(updated)
        if children:
            for child in await self.desk.store.query_requests(master_id=row["id"]):
                await self.desk.publish(child)
        return updated

    def _require(self, row: dict[str, Any], states: tuple[str, ...], action: str) -> None:
        if row.get("master_id"):
            raise CitizenError(
                409,
                f"request {row['id']} is merged into request {row['master_id']}; act on the master request",
            )
        if row["state"] not in states:
            raise CitizenError(
                409,
                f"cannot {action} request {row['id']} in state {row['state']} "
                f"(allowed from: {', '.join(states)})",
            )

    def _owner(self, row: dict[str, Any], department: str) -> None:
        self._department(department)
        if row["lead_department"] != department:
            raise CitizenError(
                403, f"request {row['id']} is dispatched to {row['lead_department']}, not to {department}"
            )

    async def assign(self, request_id: int, department: str, note: str = "") -> dict[str, Any]:
        """Manual dispatch from the triage queue."""
        row = await self.desk.get(request_id)
        self._department(department)
        self._require(row, TRIAGE_STATES, "assign")
        if row["lead_department"]:
            raise CitizenError(409, f"request {request_id} is already dispatched to {row['lead_department']}")
        now = utc_text(self.desk.clock())
        return await self._move(
            row,
            {
                "state": "dispatched",
                "lead_department": department,
                "dispatch_method": "manual",
                "dispatched_at": now,
                "service_notice": f"已派单至{self.desk.catalogue.department_name(department)} / dispatched",
            },
            ("dispatched", department, note or "manual triage"),
            TRIAGE_STATES,
            ("lead_department", "service_notice"),
        )

    async def accept(self, request_id: int, department: str) -> dict[str, Any]:
        row = await self.desk.get(request_id)
        self._require(row, ("dispatched",), "accept")
        self._owner(row, department)
        return await self._move(
            row,
            {"state": "accepted", "accepted_at": utc_text(self.desk.clock())},
            ("accepted", department, ""),
            ("dispatched",),
        )

    async def return_request(self, request_id: int, department: str, reason: str) -> dict[str, Any]:
        """A department returns a misdispatched request (退单) with a reason; it goes elsewhere."""
        row = await self.desk.get(request_id)
        self._require(row, ("dispatched", "accepted"), "return")
        self._owner(row, department)
        if not reason or not reason.strip():
            raise CitizenError(400, "a reason is required to return a request")
        returned_by = [*(row.get("returned_by") or []), department]
        service = self.desk.service(row["service_code"])
        district = self.desk.catalogue.districts.get(row["district"] or "")
        choice = self.intake.dispatch(
            service, district, row["description"], row["address_string"], set(returned_by)
        )
        now = utc_text(self.desk.clock())
        changes: dict[str, Any] = {
            "returned_by": returned_by,
            "lead_department": choice.lead,
            "co_departments": list(choice.co),
            "dispatch_method": choice.method,
            "confidence": choice.confidence,
            "accepted_at": None,
        }
        if choice.lead:
            changes.update(
                state="dispatched",
                dispatched_at=now,
                service_notice=f"改派至{self.desk.catalogue.department_name(choice.lead)} / re-dispatched",
            )
        else:
            changes.update(
                state="returned", service_notice="退单，等待人工分派 / returned, waiting for triage"
            )
        await self.desk.store.add_event(row["id"], now, ("returned", department, reason.strip()))
        return await self._move(
            row,
            changes,
            ("redispatched" if choice.lead else "triage", choice.lead, choice.note),
            ("dispatched", "accepted"),
            ("lead_department", "service_notice"),
        )

    async def progress(self, request_id: int, department: str, note: str) -> dict[str, Any]:
        row = await self.desk.get(request_id)
        self._require(row, ("accepted", "in_progress"), "report progress on")
        self._owner(row, department)
        return await self._move(
            row,
            {"state": "in_progress", "status_notes": note},
            ("in_progress", department, note),
            ("accepted", "in_progress"),
            ("status_notes",),
        )

    async def resolve(self, request_id: int, department: str, note: str) -> dict[str, Any]:
        row = await self.desk.get(request_id)
        self._require(row, ("accepted", "in_progress"), "resolve")
        self._owner(row, department)
        if not note or not note.strip():
            raise CitizenError(400, "a reply to the citizen (note) is required to resolve a request")
        now = utc_text(self.desk.clock())
        return await self._move(
            row,
            {"state": "resolved", "status_notes": note, "resolved_at": now},
            ("resolved", department, note),
            ("accepted", "in_progress"),
            ("status_notes", "resolved_at"),
        )

    async def return_visit(
        self, request_id: int, satisfaction: int, resolved: bool, comment: str = ""
    ) -> dict[str, Any]:
        """The return visit (回访): the citizen rates 1-5 and says whether it is solved; then it closes."""
        if not isinstance(satisfaction, int) or not 1 <= satisfaction <= 5:
            raise CitizenError(400, f"satisfaction must be an integer from 1 to 5, got {satisfaction!r}")
        row = await self.desk.get(request_id)
        self._require(row, ("resolved",), "record a return visit for")
        now = utc_text(self.desk.clock())
        return await self._move(
            row,
            {
                "state": "closed",
                "satisfaction": satisfaction,
                "citizen_resolved": 1 if resolved else 0,
                "visit_comment": comment or None,
                "closed_at": now,
            },
            (
                "return_visit",
                row["lead_department"],
                f"satisfaction {satisfaction}/5, resolved={'yes' if resolved else 'no'}",
            ),
            ("resolved",),
            ("closed_at",),
        )

    async def triage_queue(self) -> list[dict[str, Any]]:
        rows = await self.desk.store.query_requests(states=TRIAGE_STATES, only_masters=True)
        return [r for r in rows if not r["lead_department"]]
