"""Supervision: the periodic check of open requests against their time limits -- a reminder before the
deadline, escalation when overdue, censure when long overdue."""

from __future__ import annotations

import datetime as dt
from typing import Any

from civicmesh.citizen.context import OPEN_STATES, DeskContext, parse_time, utc_text
from civicmesh.citizen.workdays import shift_working_days


class Supervision:
    def __init__(self, desk: DeskContext) -> None:
        self.desk = desk

    async def supervise(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Reminders before the deadline (催办), escalation when overdue (督办), censure when long overdue."""
        now = now or self.desk.clock()
        rules = self.desk.catalogue.supervision
        before = int(rules.get("remind_working_days_before", 1))
        after = int(rules.get("escalate_working_days_after", 5))
        actions: list[dict[str, Any]] = []
        for row in await self.desk.store.query_requests(states=OPEN_STATES, only_masters=True, limit=100_000):
            if not row["expected_at"] or not row["lead_department"]:
                continue
            deadline = parse_time(row["expected_at"])
            action = None
            changes: dict[str, Any] = {}
            if now > shift_working_days(deadline, after, self.desk.tz) and row["escalation_level"] < 2:
                action, changes = "censure", {"escalation_level": 2}
            elif now > deadline and row["escalation_level"] < 1:
                action, changes = "overdue", {"escalation_level": 1}
            elif now <= deadline and not row["reminded_at"] and now >= self._reminder_start(deadline, before):
                action, changes = "reminder", {"reminded_at": utc_text(now)}
            if action is None:
                continue
            note = {
                "reminder": f"due {self.desk.local_text(row['expected_at'])}",
                "overdue": f"overdue since {self.desk.local_text(row['expected_at'])}: supervision notice",
                "censure": f"still open {after} working days after the deadline: written censure",
            }[action]
            updated = await self.desk.store.update_request(
                row["id"],
                changes,
                (action, row["lead_department"], note),
                expect_state=OPEN_STATES,
                expect={"reminded_at": row["reminded_at"], "escalation_level": row["escalation_level"]},
            )
            if updated is not None:
                actions.append(
                    {
                        "service_request_id": row["id"],
                        "action": action,
                        "department": row["lead_department"],
                        "note": note,
                    }
                )
        return actions

    def _reminder_start(self, deadline: dt.datetime, before: int) -> dt.datetime:
        """The start of the last `before` working days: with 1, the morning of the due day itself."""
        first = shift_working_days(deadline, -(max(before, 1) - 1), self.desk.tz)
        return dt.datetime.combine(first.date(), dt.time(0, 0), tzinfo=self.desk.tz)
