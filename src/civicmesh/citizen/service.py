"""The citizen desk's domain: intake, dispatch, duplicates, the state machine, supervision and scores.

States: received -> dispatched -> accepted (or returned -> re-dispatched) -> in_progress -> resolved ->
(return visit) -> closed. Open311 shows the first five as `open` and the last two as `closed`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from civicmesh.citizen.catalogue import Catalogue, District, Service
from civicmesh.citizen.classifier import DispatchClassifier
from civicmesh.citizen.entity import request_to_entity
from civicmesh.citizen.workdays import due_at, parse_offset, shift_working_days
from civicmesh.store.citizen import CitizenStore, Milestones
from civicmesh.store.db import Event

log = logging.getLogger("civicmesh.citizen")

OPEN_STATES = ("received", "dispatched", "accepted", "returned", "in_progress")
CLOSED_STATES = ("resolved", "closed")
TRIAGE_STATES = ("received", "returned")
_HTML = re.compile(r"<\s*/?\s*[A-Za-z][^>]*>")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


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


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def text_similarity(a: str | None, b: str | None) -> float:
    """Jaccard similarity of character bigrams: works for Chinese without segmentation."""
    if not a or not b:
        return 1.0  # nothing to compare: same category and place decide alone

    def grams(s: str) -> set[str]:
        s = re.sub(r"\s+", " ", s.lower())
        return {s[i : i + 2] for i in range(len(s) - 1)} or {s}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb)


@dataclass
class SubmitInput:
    """A POST Service Request as parsed from the form (all values as strings, attributes as lists)."""

    api_key: str | None = None
    jurisdiction_id: str | None = None
    service_code: str | None = None
    lat: str | None = None
    long: str | None = None
    address_string: str | None = None
    address_id: str | None = None
    email: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    description: str | None = None
    media_url: str | None = None
    zipcode: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Dispatch:
    lead: str | None
    co: tuple[str, ...]
    method: str
    confidence: float | None
    note: str


class CitizenDesk:
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
        self.store = store
        # Each state a request reaches is a milestone event (citizen.<state>), committed with the change; the
        # ledger records them.
        self.milestones = milestones
        self.catalogue = catalogue
        self._classifier = classifier
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

    # --- intake ---
    async def check_jurisdiction(self, jurisdiction_id: str | None) -> None:
        if jurisdiction_id and jurisdiction_id != self.catalogue.jurisdiction_id:
            raise CitizenError(
                404,
                f"jurisdiction_id {jurisdiction_id!r} is not served here; "
                f"this endpoint serves {self.catalogue.jurisdiction_id!r}",
            )

    def service(self, code: str) -> Service:
        service = self.catalogue.services.get(code)
        if service is None:
            raise CitizenError(404, f"service_code {code!r} not found; GET services.json lists the codes")
        return service

    async def submit(self, form: SubmitInput) -> dict[str, Any]:
        now = self.clock()
        limits = self.catalogue.limits
        if not form.api_key:
            raise CitizenError(403, "api_key is missing -- can't proceed with create_request")
        key = await self.store.get_api_key(form.api_key)
        if key is None:
            raise CitizenError(403, "Invalid api_key received -- can't proceed with create_request")
        await self.check_jurisdiction(form.jurisdiction_id)
        if not form.service_code:
            raise CitizenError(400, "service_code is required")
        service = self.service(form.service_code)
        per_hour = key.get("per_hour") or int(limits.get("requests_per_hour_per_key", 120))
        recent = await self.store.count_requests_by_key(form.api_key, utc_text(now - dt.timedelta(hours=1)))
        if recent >= per_hour:
            raise CitizenError(
                429,
                f"rate limit: this api_key filed {recent} requests in the last hour "
                f"(limit {per_hour}); try again later",
            )

        lat, lon, district = self._location(form)
        attributes = self._attributes(service, form.attributes)
        description = (form.description or "").strip() or None
        max_chars = int(limits.get("max_description_chars", 4000))
        if description and len(description) > max_chars:
            raise CitizenError(400, f"description has {len(description)} characters; at most {max_chars}")
        if description and _HTML.search(description):
            raise CitizenError(400, "description may not contain HTML markup")
        media_url = (form.media_url or "").strip() or None
        if media_url:
            max_url = int(limits.get("max_media_url_chars", 2048))
            if len(media_url) > max_url:
                raise CitizenError(400, f"media_url is {len(media_url)} characters long; at most {max_url}")
            if not media_url.startswith(("http://", "https://")):
                raise CitizenError(400, "media_url must be an http:// or https:// URL")
        if form.email and not _EMAIL.match(form.email.strip()):
            raise CitizenError(400, f"email {form.email!r} is not an e-mail address")
        if form.phone and not re.fullmatch(r"[+\d][\d \-()]{4,24}", form.phone.strip()):
            raise CitizenError(400, "phone must contain digits only (with optional +, spaces, dashes)")

        row: dict[str, Any] = {
            "token": secrets.token_urlsafe(12),
            "jurisdiction_id": self.catalogue.jurisdiction_id,
            "service_code": service.code,
            "service_name": service.name,
            "kind": service.kind,
            "description": description,
            "lat": lat,
            "lon": lon,
            "address_string": (form.address_string or "").strip() or None,
            "address_id": (form.address_id or "").strip() or None,
            "zipcode": (form.zipcode or "").strip() or None,
            "district": district.code if district else None,
            "media_url": media_url,
            "email": (form.email or "").strip() or None,
            "phone": (form.phone or "").strip() or None,
            "first_name": (form.first_name or "").strip() or None,
            "last_name": (form.last_name or "").strip() or None,
            "device_id": form.device_id or None,
            "account_id": form.account_id or None,
            "api_key": form.api_key,
            "attributes": attributes,
            "requested_at": utc_text(now),
            "updated_at": utc_text(now),
            "escalation_level": 0,
            "returned_by": [],
        }
        events: list[tuple[str, str | None, str]] = [
            ("received", None, f"via Open311 client {key['client']}")
        ]
        master = await self._find_master(service.code, lat, lon, description, now)
        if master is not None:
            row.update(
                state=master["state"],
                master_id=master["id"],
                lead_department=master["lead_department"],
                co_departments=master["co_departments"],
                dispatch_method="duplicate",
                expected_at=master["expected_at"],
                district=row["district"] or master["district"],
                status_notes=master.get("status_notes"),
                service_notice=f"并单：与工单 {master['id']} 合并办理 / merged with request {master['id']}",
            )
            events.append(("merged", master["lead_department"], f"duplicate of request {master['id']}"))
        else:
            choice = self._dispatch(service, district, description, row["address_string"], set())
            row["expected_at"] = utc_text(due_at(now, self.catalogue.limit_days(service.kind), self.tz))
            row.update(
                lead_department=choice.lead,
                co_departments=list(choice.co),
                dispatch_method=choice.method,
                confidence=choice.confidence,
            )
            if choice.lead:
                row.update(
                    state="dispatched",
                    dispatched_at=utc_text(now),
                    service_notice=f"已派单至{self.catalogue.department_name(choice.lead)} / dispatched",
                )
                events.append(("dispatched", choice.lead, choice.note))
            else:
                row.update(state="received", service_notice="等待人工分派 / waiting for manual triage")
                events.append(("triage", None, choice.note))
        created = await self.store.create_request(row, events, self.milestone_events(None))
        await self.publish(created)
        return created

    def _location(self, form: SubmitInput) -> tuple[float | None, float | None, District | None]:
        has_lat, has_lon = bool(form.lat and form.lat.strip()), bool(form.long and form.long.strip())
        if has_lat != has_lon:
            raise CitizenError(400, "lat and long must be given together")
        if not has_lat and not (form.address_string or "").strip() and not (form.address_id or "").strip():
            raise CitizenError(400, "a location is required: lat and long, address_string or address_id")
        if not has_lat:
            text = form.address_string or ""
            return None, None, self.catalogue.district_named_in(text) if text else None
        try:
            lat, lon = float(form.lat or ""), float(form.long or "")
        except ValueError as exc:
            raise CitizenError(
                400, f"lat/long must be decimal degrees, got {form.lat!r}, {form.long!r}"
            ) from exc
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or math.isnan(lat) or math.isnan(lon):
            raise CitizenError(400, f"lat/long out of range: {lat}, {lon}")
        district = self.catalogue.district_at(lat, lon)
        if district is None:
            raise CitizenError(
                400, f"location {lat}, {lon} is outside the jurisdiction {self.catalogue.jurisdiction_id}"
            )
        return lat, lon, district

    def _attributes(self, service: Service, given: dict[str, list[str]]) -> dict[str, Any]:
        known = {a.code: a for a in service.attributes}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise CitizenError(400, f"service {service.code} has no attribute {', '.join(unknown)}")
        out: dict[str, Any] = {}
        for attr in service.attributes:
            values = [v for v in given.get(attr.code, []) if v.strip()]
            if not values:
                if attr.required:
                    raise CitizenError(
                        400,
                        f"attribute[{attr.code}] is required for service {service.code}: {attr.description}",
                    )
                continue
            keys = {k for k, _ in attr.values}
            if attr.datatype == "multivaluelist":
                bad = [v for v in values if v not in keys]
                if bad:
                    raise CitizenError(400, f"attribute[{attr.code}] value(s) {bad} not in {sorted(keys)}")
                out[attr.code] = values
                continue
            if len(values) > 1:
                raise CitizenError(400, f"attribute[{attr.code}] takes one value, got {len(values)}")
            value = values[0]
            if attr.datatype == "singlevaluelist" and value not in keys:
                raise CitizenError(400, f"attribute[{attr.code}] value {value!r} not in {sorted(keys)}")
            if attr.datatype == "number":
                try:
                    float(value)
                except ValueError as exc:
                    raise CitizenError(400, f"attribute[{attr.code}] must be a number") from exc
            if attr.datatype == "datetime":
                try:
                    parse_time(value)
                except ValueError as exc:
                    raise CitizenError(400, f"attribute[{attr.code}]: {exc}") from exc
            out[attr.code] = value
        return out

    async def _find_master(
        self,
        service_code: str,
        lat: float | None,
        lon: float | None,
        description: str | None,
        now: dt.datetime,
    ) -> dict[str, Any] | None:
        if lat is None or lon is None:
            return None
        rules = self.catalogue.duplicates
        radius = float(rules.get("radius_m", 50))
        since = utc_text(now - dt.timedelta(hours=float(rules.get("window_hours", 72))))
        dlat = radius / 111_320
        dlon = radius / (111_320 * max(math.cos(math.radians(lat)), 0.01))
        candidates = await self.store.duplicate_candidates(
            service_code, since, lat - dlat, lat + dlat, lon - dlon, lon + dlon, OPEN_STATES
        )
        threshold = float(rules.get("min_text_similarity", 0.25))
        best: tuple[float, dict[str, Any]] | None = None
        for cand in candidates:
            distance = haversine_m(lat, lon, cand["lat"], cand["lon"])
            if distance > radius or text_similarity(description, cand["description"]) < threshold:
                continue
            if best is None or distance < best[0]:
                best = (distance, cand)
        return best[1] if best else None

    # --- dispatch ---
    def _dispatch(
        self,
        service: Service,
        district: District | None,
        description: str | None,
        address: str | None,
        exclude: set[str],
    ) -> Dispatch:
        if district is None and address:
            district = self.catalogue.district_named_in(address)
        district_dept = district.department if district else None
        # "district" among the co-departments means the district's department, when the place is known.
        resolved = [(district_dept or "") if c == "district" else c for c in service.co]
        co: tuple[str, ...] = tuple(dict.fromkeys(c for c in resolved if c))
        if service.lead == "district" and district_dept and district_dept not in exclude:
            return Dispatch(
                district_dept,
                tuple(c for c in co if c != district_dept),
                "district",
                None,
                f"catalogue: {service.code} -> district {district.code if district else ''}",
            )
        if service.lead not in ("district", "classifier") and service.lead not in exclude:
            return Dispatch(
                service.lead,
                tuple(c for c in co if c != service.lead),
                "catalogue",
                None,
                f"catalogue: {service.code} -> {service.lead}",
            )
        # Free text, a district-led request without a district, or a catalogue lead that returned it.
        text = " ".join(x for x in (description, service.name if service.lead != "classifier" else None) if x)
        if not text:
            return Dispatch(None, co, "triage", None, "no description to classify: manual triage")
        prediction = self._classifier().predict(text, exclude=exclude)
        threshold = float(self.catalogue.dispatch.get("confidence_threshold", 0.45))
        if prediction.department in self.catalogue.departments and prediction.confidence >= threshold:
            return Dispatch(
                prediction.department,
                tuple(c for c in co if c != prediction.department),
                "classifier",
                round(prediction.confidence, 4),
                f"classifier: {prediction.department} ({prediction.confidence:.2f})",
            )
        return Dispatch(
            None,
            co,
            "triage",
            round(prediction.confidence, 4),
            f"classifier unsure: best {prediction.department} ({prediction.confidence:.2f}) "
            f"< {threshold}: manual triage",
        )

    # --- department workflow ---
    async def get(self, request_id: int) -> dict[str, Any]:
        row = await self.store.get_request(request_id)
        if row is None:
            raise CitizenError(404, f"service_request_id {request_id} not found")
        return row

    def _department(self, code: str) -> None:
        if code not in self.catalogue.departments:
            raise CitizenError(404, f"department {code!r} is not in the dispatch catalogue")

    async def _move(
        self,
        row: dict[str, Any],
        changes: dict[str, Any],
        event: tuple[str, str | None, str],
        expect: tuple[str, ...],
        mirror: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        now = utc_text(self.clock())
        changes = {**changes, "updated_at": now}
        children = {k: changes[k] for k in (*mirror, "state", "updated_at") if k in changes}
        updated = await self.store.update_request(
            row["id"], changes, event, children=children, expect_state=expect,
            milestones=self.milestone_events(row.get("state"))
        )
        if updated is None:
            raise CitizenError(409, f"request {row['id']} changed meanwhile; reload and retry")
        await self.publish(updated)
        if children:
            for child in await self.store.query_requests(master_id=row["id"]):
                await self.publish(child)
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
        row = await self.get(request_id)
        self._department(department)
        self._require(row, TRIAGE_STATES, "assign")
        if row["lead_department"]:
            raise CitizenError(409, f"request {request_id} is already dispatched to {row['lead_department']}")
        now = utc_text(self.clock())
        return await self._move(
            row,
            {
                "state": "dispatched",
                "lead_department": department,
                "dispatch_method": "manual",
                "dispatched_at": now,
                "service_notice": f"已派单至{self.catalogue.department_name(department)} / dispatched",
            },
            ("dispatched", department, note or "manual triage"),
            TRIAGE_STATES,
            ("lead_department", "service_notice"),
        )

    async def accept(self, request_id: int, department: str) -> dict[str, Any]:
        row = await self.get(request_id)
        self._require(row, ("dispatched",), "accept")
        self._owner(row, department)
        return await self._move(
            row,
            {"state": "accepted", "accepted_at": utc_text(self.clock())},
            ("accepted", department, ""),
            ("dispatched",),
        )

    async def return_request(self, request_id: int, department: str, reason: str) -> dict[str, Any]:
        """A department returns a misdispatched request (退单) with a reason; it goes elsewhere."""
        row = await self.get(request_id)
        self._require(row, ("dispatched", "accepted"), "return")
        self._owner(row, department)
        if not reason or not reason.strip():
            raise CitizenError(400, "a reason is required to return a request")
        returned_by = [*(row.get("returned_by") or []), department]
        service = self.service(row["service_code"])
        district = self.catalogue.districts.get(row["district"] or "")
        choice = self._dispatch(
            service, district, row["description"], row["address_string"], set(returned_by)
        )
        now = utc_text(self.clock())
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
                service_notice=f"改派至{self.catalogue.department_name(choice.lead)} / re-dispatched",
            )
        else:
            changes.update(
                state="returned", service_notice="退单，等待人工分派 / returned, waiting for triage"
            )
        await self.store.add_event(row["id"], now, ("returned", department, reason.strip()))
        return await self._move(
            row,
            changes,
            ("redispatched" if choice.lead else "triage", choice.lead, choice.note),
            ("dispatched", "accepted"),
            ("lead_department", "service_notice"),
        )

    async def progress(self, request_id: int, department: str, note: str) -> dict[str, Any]:
        row = await self.get(request_id)
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
        row = await self.get(request_id)
        self._require(row, ("accepted", "in_progress"), "resolve")
        self._owner(row, department)
        if not note or not note.strip():
            raise CitizenError(400, "a reply to the citizen (note) is required to resolve a request")
        now = utc_text(self.clock())
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
        row = await self.get(request_id)
        self._require(row, ("resolved",), "record a return visit for")
        now = utc_text(self.clock())
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
        rows = await self.store.query_requests(states=TRIAGE_STATES, only_masters=True)
        return [r for r in rows if not r["lead_department"]]

    # --- supervision ---
    async def supervise(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Reminders before the deadline (催办), escalation when overdue (督办), censure when long overdue."""
        now = now or self.clock()
        rules = self.catalogue.supervision
        before = int(rules.get("remind_working_days_before", 1))
        after = int(rules.get("escalate_working_days_after", 5))
        actions: list[dict[str, Any]] = []
        for row in await self.store.query_requests(states=OPEN_STATES, only_masters=True, limit=100_000):
            if not row["expected_at"] or not row["lead_department"]:
                continue
            deadline = parse_time(row["expected_at"])
            action = None
            changes: dict[str, Any] = {}
            if now > shift_working_days(deadline, after, self.tz) and row["escalation_level"] < 2:
                action, changes = "censure", {"escalation_level": 2}
            elif now > deadline and row["escalation_level"] < 1:
                action, changes = "overdue", {"escalation_level": 1}
            elif now <= deadline and not row["reminded_at"] and now >= self._reminder_start(deadline, before):
                action, changes = "reminder", {"reminded_at": utc_text(now)}
            if action is None:
                continue
            note = {
                "reminder": f"due {self.local_text(row['expected_at'])}",
                "overdue": f"overdue since {self.local_text(row['expected_at'])}: supervision notice",
                "censure": f"still open {after} working days after the deadline: written censure",
            }[action]
            updated = await self.store.update_request(
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
        first = shift_working_days(deadline, -(max(before, 1) - 1), self.tz)
        return dt.datetime.combine(first.date(), dt.time(0, 0), tzinfo=self.tz)

    # --- scores ---
    async def kpis(self, month: str | None = None) -> dict[str, Any]:
        """Per-department response, resolution and satisfaction rates for the month's requests."""
        now = self.clock()
        local_now = now.astimezone(self.tz)
        month = month or f"{local_now.year:04d}-{local_now.month:02d}"
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise CitizenError(400, f"month must look like 2026-10, got {month!r}")
        year, mon = int(month[:4]), int(month[5:])
        start = dt.datetime(year, mon, 1, tzinfo=self.tz)
        end = dt.datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=self.tz)
        rows = await self.store.query_requests(
            start=utc_text(start),
            end=utc_text(end - dt.timedelta(seconds=1)),
            only_masters=True,
            limit=1_000_000,
        )
        response_days = int(self.catalogue.supervision.get("response_working_days", 1))
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
                if accepted <= shift_working_days(parse_time(row["dispatched_at"]), response_days, self.tz):
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
                "name": self.catalogue.department_name(d),
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
                "expected_datetime": self.local_text(r["expected_at"]),
                "escalation_level": r["escalation_level"],
            }
            for r in await self.store.query_requests(states=OPEN_STATES, only_masters=True, limit=100_000)
            if r["expected_at"] and parse_time(r["expected_at"]) < now
        ]
        all_rows = await self.store.query_requests(
            start=utc_text(start), end=utc_text(end - dt.timedelta(seconds=1)), limit=1_000_000
        )
        counts = Counter(r["service_code"] for r in all_rows)
        top = [
            {
                "service_code": c,
                "service_name": self.catalogue.services[c].name if c in self.catalogue.services else c,
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
