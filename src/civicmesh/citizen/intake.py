"""Intake: a new request is checked, placed, merged into a duplicate or dispatched to a department
(catalogue, district or classifier), and stored as received or dispatched."""

from __future__ import annotations

import datetime as dt
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from civicmesh.citizen.catalogue import District, Service
from civicmesh.citizen.classifier import DispatchClassifier
from civicmesh.citizen.context import OPEN_STATES, CitizenError, DeskContext, parse_time, utc_text
from civicmesh.citizen.workdays import due_at

_HTML = re.compile(r"<\s*/?\s*[A-Za-z][^>]*>")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


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



class Intake:
    def __init__(self, desk: DeskContext, classifier: Callable[[], DispatchClassifier]) -> None:
        self.desk = desk
        self._classifier = classifier

    async def check_jurisdiction(self, jurisdiction_id: str | None) -> None:
        if jurisdiction_id and jurisdiction_id != self.desk.catalogue.jurisdiction_id:
            raise CitizenError(
                404,
                f"jurisdiction_id {jurisdiction_id!r} is not served here; "
                f"this endpoint serves {self.desk.catalogue.jurisdiction_id!r}",
            )

    async def submit(self, form: SubmitInput) -> dict[str, Any]:
        now = self.desk.clock()
        limits = self.desk.catalogue.limits
        if not form.api_key:
            raise CitizenError(403, "api_key is missing -- can't proceed with create_request")
        key = await self.desk.store.get_api_key(form.api_key)
        if key is None:
            raise CitizenError(403, "Invalid api_key received -- can't proceed with create_request")
        await self.check_jurisdiction(form.jurisdiction_id)
        if not form.service_code:
            raise CitizenError(400, "service_code is required")
        service = self.desk.service(form.service_code)
        per_hour = key.get("per_hour") or int(limits.get("requests_per_hour_per_key", 120))
        recent = await self.desk.store.count_requests_by_key(form.api_key, utc_text(now - dt.timedelta(hours=1)))
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
            "jurisdiction_id": self.desk.catalogue.jurisdiction_id,
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
            choice = self.dispatch(service, district, description, row["address_string"], set())
            row["expected_at"] = utc_text(due_at(now, self.desk.catalogue.limit_days(service.kind), self.desk.tz))
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
                    service_notice=f"已派单至{self.desk.catalogue.department_name(choice.lead)} / dispatched",
                )
                events.append(("dispatched", choice.lead, choice.note))
            else:
                row.update(state="received", service_notice="等待人工分派 / waiting for manual triage")
                events.append(("triage", None, choice.note))
        created = await self.desk.store.create_request(row, events, self.desk.milestone_events(None))
        await self.desk.publish(created)
        return created

    def _location(self, form: SubmitInput) -> tuple[float | None, float | None, District | None]:
        has_lat, has_lon = bool(form.lat and form.lat.strip()), bool(form.long and form.long.strip())
        if has_lat != has_lon:
            raise CitizenError(400, "lat and long must be given together")
        if not has_lat and not (form.address_string or "").strip() and not (form.address_id or "").strip():
            raise CitizenError(400, "a location is required: lat and long, address_string or address_id")
        if not has_lat:
            text = form.address_string or ""
            return None, None, self.desk.catalogue.district_named_in(text) if text else None
        try:
            lat, lon = float(form.lat or ""), float(form.long or "")
        except ValueError as exc:
            raise CitizenError(
                400, f"lat/long must be decimal degrees, got {form.lat!r}, {form.long!r}"
            ) from exc
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or math.isnan(lat) or math.isnan(lon):
            raise CitizenError(400, f"lat/long out of range: {lat}, {lon}")
        district = self.desk.catalogue.district_at(lat, lon)
        if district is None:
            raise CitizenError(
                400, f"location {lat}, {lon} is outside the jurisdiction {self.desk.catalogue.jurisdiction_id}"
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
        rules = self.desk.catalogue.duplicates
        radius = float(rules.get("radius_m", 50))
        since = utc_text(now - dt.timedelta(hours=float(rules.get("window_hours", 72))))
        dlat = radius / 111_320
        dlon = radius / (111_320 * max(math.cos(math.radians(lat)), 0.01))
        candidates = await self.desk.store.duplicate_candidates(
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

    def dispatch(
        self,
        service: Service,
        district: District | None,
        description: str | None,
        address: str | None,
        exclude: set[str],
    ) -> Dispatch:
        if district is None and address:
            district = self.desk.catalogue.district_named_in(address)
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
        threshold = float(self.desk.catalogue.dispatch.get("confidence_threshold", 0.45))
        if prediction.department in self.desk.catalogue.departments and prediction.confidence >= threshold:
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

