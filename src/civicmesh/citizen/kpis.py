"""KPIs: each department's response, resolution and satisfaction rates for a month, the overdue list and
the month's top problems."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from typing import Any

from civicmesh.citizen.context import OPEN_STATES, CitizenError, DeskContext, parse_time, utc_text
from civicmesh.citizen.workdays import shift_working_days


class Kpis:
    def __init__(self, desk: DeskContext) -> None:
        self.desk = desk

    async def kpis(self, month: str | None = None) -> dict[str, Any]:
        """Per-department response, resolution and satisfaction rates for the month's requests."""
        now = self.desk.clock()
        local_now = now.astimezone(self.desk.tz)
        month = month or f"{local_now.year:04d}-{local_now.month:02d}"
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise CitizenError(400, f"month must look like 2026-10, got {month!r}")
        year, mon = int(month[:4]), int(month[5:])
        start = dt.datetime(year, mon, 1, tzinfo=self.desk.tz)
        end = dt.datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=self.desk.tz)
        rows = await self.desk.store.query_requests(
            start=utc_text(start),
            end=utc_text(end - dt.timedelta(seconds=1)),
            only_masters=True,
            limit=1_000_000,
        )
        response_days = int(self.desk.catalogue.supervision.get("response_working_days", 1))
        per: dict[str, dict[str, int]] = {}
        for row in rows:
            dept = row["lead_department"]
            if not dept or not row["dispatched_at"]:
                continue
            s = per.setdefault(
                dept,
                {
                    "dispatched": 0,
                    "responded_in_time": 0,
                    "visited": 0,
                    "resolved_by_citizen": 0,
                    "satisfied": 0,
                    "overdue": 0,
                },
            )
            s["dispatched"] += 1
            if row["accepted_at"] or row["state"] in ("in_progress", "resolved", "closed"):
                accepted = parse_time(row["accepted_at"] or row["updated_at"])
                if accepted <= shift_working_days(parse_time(row["dispatched_at"]), response_days, self.desk.tz):
                    s["responded_in_time"] += 1
            if row["satisfaction"] is not None:
                s["visited"] += 1
                s["resolved_by_citizen"] += int(bool(row["citizen_resolved"]))
                s["satisfied"] += int(row["satisfaction"] >= 4)
            if row["state"] in OPEN_STATES and row["expected_at"] and parse_time(row["expected_at"]) < now:
                s["overdue"] += 1

        def rate(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        departments = [
            {
                "department": d,
                "name": self.desk.catalogue.department_name(d),
                **s,
                "response_rate": rate(s["responded_in_time"], s["dispatched"]),
                "resolution_rate": rate(s["resolved_by_citizen"], s["visited"]),
                "satisfaction_rate": rate(s["satisfied"], s["visited"]),
            }
            for d, s in sorted(per.items())
        ]
        overdue = [
            {
                "service_request_id": r["id"],
                "department": r["lead_department"],
                "service_code": r["service_code"],
                "expected_datetime": self.desk.local_text(r["expected_at"]),
                "escalation_level": r["escalation_level"],
            }
            for r in await self.desk.store.query_requests(states=OPEN_STATES, only_masters=True, limit=100_000)
            if r["expected_at"] and parse_time(r["expected_at"]) < now
        ]
        all_rows = await self.desk.store.query_requests(
            start=utc_text(start), end=utc_text(end - dt.timedelta(seconds=1)), limit=1_000_000
        )
        counts = Counter(r["service_code"] for r in all_rows)
        top = [
            {
                "service_code": c,
                "service_name": self.desk.catalogue.services[c].name if c in self.desk.catalogue.services else c,
                "requests": n,
            }
            for c, n in counts.most_common(5)
        ]
        return {
            "month": month,
            "departments": departments,
            "overdue": overdue,
            "top_problems": top,
            "definitions": {
                "response_rate": f"accepted within {response_days} working day(s) of dispatch / dispatched",
                "resolution_rate": "citizen said solved at the return visit / return visits",
                "satisfaction_rate": "satisfaction 4 or 5 / return visits",
            },
        }
