"""HTTP: Open311 GeoReport v2 at /open311/v2/ and the departments' desk at /citizen/.

Open311 routes answer errors in the standard's own format (a list of {code, description}, XML or JSON);
the /citizen routes answer RFC 7807 ProblemDetails like the rest of the platform.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from starlette.responses import Response

from civicmesh.access import Caller, Rule, caller, is_admin, organization_of, public
from civicmesh.bodies import read_json, read_object
from civicmesh.citizen import open311
from civicmesh.citizen.catalogue import load_catalogue
from civicmesh.citizen.classifier import get_classifier
from civicmesh.citizen.open311 import FORMATS, FormError, errors, parse_submit_form, render
from civicmesh.citizen.privacy import mask_email, mask_phone
from civicmesh.citizen.service import OPEN_STATES, CitizenDesk, CitizenError, parse_time, utc_text
from civicmesh.errors import Problem
from civicmesh.platform import Platform, Room
from civicmesh.store.citizen import CitizenStore
from civicmesh.workers import Periodic

log = logging.getLogger("civicmesh.citizen")

T = TypeVar("T")

MAX_RANGE = dt.timedelta(days=90)
BODY_LIMIT = 65536  # bytes of a desk action's JSON body (a note or reason of a few thousand characters at most)
SUPERVISION_INTERVAL_S = 60.0
_PROBLEM_KINDS = {
    400: "BadRequestData",
    403: "Forbidden",
    404: "ResourceNotFound",
    409: "Conflict",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
}


def build(platform: Platform) -> Room:
    """Serve Open311 and the departments' desk; supervise time limits in the background while the app runs."""
    settings = platform.settings
    catalogue = load_catalogue(settings.citizen_catalogue or None)
    store = CitizenStore(platform.db)
    # Milestones (citizen.<state>) commit with the change they describe; the ledger records them.
    desk = CitizenDesk(store, catalogue, get_classifier, entities=platform.entities, milestones=True)

    async def supervise() -> None:
        for action in await desk.supervise():
            log.info("citizen supervision: %s", action)

    async def train_classifier() -> None:
        # Train the classifier off the event loop so the first free-text request does not wait for it.
        await asyncio.to_thread(get_classifier)

    supervision = Periodic("citizen-supervision", supervise, SUPERVISION_INTERVAL_S, setup=train_classifier)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await store.migrate()
        supervision.start()
        try:
            yield
        finally:
            await supervision.stop()

    def desk_of() -> CitizenDesk:
        return desk

    return Room("citizen", routers=[_open311_router(desk_of), _desk_router(desk_of)], lifespan=lifespan,
                services=[desk])


# --- Open311 -----------------------------------------------------------------------------------------------


def _open311_router(desk_of: Callable[[], CitizenDesk]) -> APIRouter:
    # Open311 is for residents and their apps: public, with its own API keys for submissions.
    router = APIRouter(prefix="/open311/v2", tags=["Open311 GeoReport v2"], dependencies=[public.depends()])

    def fmt_ok(fmt: str) -> Response | None:
        if fmt not in FORMATS:
            return errors("json", 400, f"format {fmt!r} is not supported; use .xml or .json")
        return None

    def failed(fmt: str, exc: CitizenError) -> Response:
        headers = {"Retry-After": "3600"} if exc.status == 429 else None
        return errors(fmt, exc.status, exc.description, exc.code, headers)

    @router.get("/discovery.{fmt}")
    async def discovery(fmt: str, request: Request) -> Response:
        if (bad := fmt_ok(fmt)) is not None:
            return bad
        base = str(request.base_url).rstrip("/") + "/open311/v2"
        return render(
            fmt,
            "discovery",
            None,
            {
                "changeset": "2026-01-01T00:00:00+08:00",
                "contact": "12345 citizen hotline",
                "key_service": "civicmesh citizen issue-key",
                "endpoints": [
                    {
                        "specification": "http://wiki.open311.org/GeoReport_v2",
                        "url": base,
                        "changeset": "2026-01-01T00:00:00+08:00",
                        "type": "production",
                        "formats": ["text/xml", "application/json"],
                    }
                ],
            },
        )

    @router.get("/services.{fmt}")
    async def services(fmt: str, jurisdiction_id: str | None = None) -> Response:
        if (bad := fmt_ok(fmt)) is not None:
            return bad
        try:
            await desk_of().check_jurisdiction(jurisdiction_id)
        except CitizenError as exc:
            return failed(fmt, exc)
        return render(fmt, "services", "service", open311.service_list(desk_of().catalogue))

    @router.get("/services/{service_code}.{fmt}")
    async def service_definition(service_code: str, fmt: str, jurisdiction_id: str | None = None) -> Response:
        if (bad := fmt_ok(fmt)) is not None:
            return bad
        try:
            await desk_of().check_jurisdiction(jurisdiction_id)
            service = desk_of().service(service_code)
        except CitizenError as exc:
            return failed(fmt, exc)
        return render(fmt, "service_definition", None, open311.service_definition(service))

    @router.post("/requests.{fmt}")
    async def create(fmt: str, request: Request) -> Response:
        if (bad := fmt_ok(fmt)) is not None:
            return bad
        desk = desk_of()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return errors(
                fmt,
                400,
                f"POST Service Request takes application/x-www-form-urlencoded, not "
                f"{content_type or 'a body without Content-Type'}",
            )
        limit = int(desk.catalogue.limits.get("max_body_bytes", 65536))
        body = await _read_capped(request, limit)
        if body is None:
            return errors(fmt, 413, f"the request body is larger than {limit} bytes; send media as media_url")
        try:
            form = parse_submit_form(body)
        except FormError as exc:
            return errors(fmt, 400, str(exc))
        if not form.api_key:
            form.api_key = request.headers.get("x-api-key")
        try:
            row = await desk.submit(form)
        except CitizenError as exc:
            return failed(fmt, exc)
        item: dict[str, Any]
        if row["lead_department"]:
            item = {"service_request_id": str(row["id"])}
        else:
            # Waiting for manual triage: the standard's token says "accepted, identifier to follow".
            item = {"token": row["token"]}
        item.update(service_notice=row.get("service_notice"), account_id=row.get("account_id"))
        return render(fmt, "service_requests", "request", [item])

    @router.get("/requests.{fmt}")
    async def list_requests(fmt: str, request: Request) -> Response:
        if (bad := fmt_ok(fmt)) is not None:
            return bad
        desk = desk_of()
        q = request.query_params
        try:
            await desk.check_jurisdiction(q.get("jurisdiction_id"))
            filters = _list_filters(q, desk)
        except CitizenError as exc:
            return failed(fmt, exc)
        rows = await desk.store.query_requests(**filters)
        return render(fmt, "service_requests", "request", [open311.public_request(desk, r) for r in rows])

    @router.get("/requests/{service_request_id}.{fmt}")
    async def get_request(service_request_id: str, fmt: str, jurisdiction_id: str | None = None) -> Response:
        if (bad := fmt_ok(fmt)) is not None:
            return bad
        desk = desk_of()
        try:
            await desk.check_jurisdiction(jurisdiction_id)
            row = await desk.get(_request_id(service_request_id))
        except CitizenError as exc:
            return failed(fmt, exc)
        return render(fmt, "service_requests", "request", [open311.public_request(desk, row)])

    @router.get("/tokens/{token}.{fmt}")
    async def token(token: str, fmt: str, jurisdiction_id: str | None = None) -> Response:
        if (bad := fmt_ok(fmt)) is not None:
            return bad
        desk = desk_of()
        try:
            await desk.check_jurisdiction(jurisdiction_id)
        except CitizenError as exc:
            return failed(fmt, exc)
        row = await desk.store.get_by_token(token)
        if row is None:
            return errors(fmt, 404, f"token {token!r} not found")
        return render(
            fmt,
            "service_requests",
            "request",
            [{"service_request_id": str(row["id"]), "token": row["token"]}],
        )

    @router.api_route(
        "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    async def unknown(rest: str, request: Request) -> Response:
        fmt = "xml" if rest.endswith(".xml") else "json"
        return errors(
            fmt,
            404,
            f"no Open311 resource {request.method} /open311/v2/{rest}; resources are "
            "discovery, services, services/{code}, requests, requests/{id}, tokens/{token} "
            "with .xml or .json",
        )

    return router


async def _read_capped(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _request_id(text: str) -> int:
    if not text.strip().isdigit():
        raise CitizenError(404, f"service_request_id {text!r} not found")
    return int(text)


def _list_filters(q: Any, desk: CitizenDesk) -> dict[str, Any]:
    ids = [t.strip() for t in (q.get("service_request_id") or "").split(",") if t.strip()]
    if ids:
        # The standard: service_request_id overrides every other parameter.
        bad = [t for t in ids if not t.isdigit()]
        if bad:
            raise CitizenError(400, f"service_request_id must be a comma-separated list of ids, got {bad}")
        return {"ids": [int(t) for t in ids]}
    filters: dict[str, Any] = {"limit": 1000}
    codes = [t.strip() for t in (q.get("service_code") or "").split(",") if t.strip()]
    if codes:
        filters["service_codes"] = codes
    statuses = [t.strip().lower() for t in (q.get("status") or "").split(",") if t.strip()]
    if statuses:
        bad = [s for s in statuses if s not in ("open", "closed")]
        if bad:
            raise CitizenError(400, f"status must be open and/or closed, got {bad}")
        states: list[str] = []
        if "open" in statuses:
            states += OPEN_STATES
        if "closed" in statuses:
            states += ["resolved", "closed"]
        filters["states"] = states
    try:
        start = parse_time(q["start_date"]) if q.get("start_date") else None
        end = parse_time(q["end_date"]) if q.get("end_date") else None
    except ValueError as exc:
        raise CitizenError(400, f"start_date/end_date: {exc}") from exc
    if start and end and end < start:
        raise CitizenError(400, "end_date is before start_date")
    if start and end and end - start > MAX_RANGE:
        raise CitizenError(400, f"the date range is {(end - start).days} days; at most 90 days")
    if start is None and end is None:
        end = desk.clock()
    if start is None:
        start = (end or desk.clock()) - MAX_RANGE
    if end is None:
        end = start + MAX_RANGE
    filters["start"], filters["end"] = utc_text(start), utc_text(end)
    return filters


# --- the departments' desk ----------------------------------------------------------------------------------


def _problem(exc: CitizenError) -> Problem:
    kind = _PROBLEM_KINDS.get(exc.status, "BadRequestData")
    return Problem(
        kind, exc.description, status=exc.status, title="Too many requests" if exc.status == 429 else None
    )


async def _json_body(request: Request) -> dict[str, Any]:
    return await read_object(request, BODY_LIMIT, empty={})


# -- who may use the desk: a city department, for itself; the hotline (platform admin) for everything ----------
async def _own_department(who: Caller, request: Request) -> str | None:
    if not who.may("citizen"):
        return f"the credential of {who.subject} lacks the scope 'citizen'"
    org = organization_of(request) or {}
    own = org.get("citizen_department")
    if org.get("kind") != "department" or not own:
        return f"the citizen desk is for city departments; {who.organization} is not one with a citizen_department"
    named = request.path_params.get("department")
    if named is not None and named != own:
        return f"{who.organization} may read only department {own!r}'s queue"
    if request.method == "POST":
        body = await read_json(request, BODY_LIMIT, empty={})
        named = body.get("department") if isinstance(body, dict) else None
        if named is not None and named != own:
            return f"{who.organization} may act only as department {own!r}, not {named!r}"
    return None


async def _hotline_only(who: Caller, request: Request) -> str | None:
    return "return visits and supervision are the hotline's (a platform admin), not a department's"


DEPARTMENT = Rule("citizen-department", check=_own_department)
HOTLINE = Rule("citizen-hotline", check=_hotline_only)


def _party_view(request: Request, desk: CitizenDesk, row: dict[str, Any]) -> dict[str, Any]:
    """The department view, with the reporter's contact only for the hotline and the departments handling the
    request: ids are sequential, so any other department walking them sees no more than Open311 publishes."""
    view = department_view(desk, row)
    who = caller(request)
    if is_admin(who):
        return view
    own = (organization_of(request) or {}).get("citizen_department")
    if own and own in {row["lead_department"], *(row["co_departments"] or [])}:
        return view
    reporter = view["contact"]
    view["contact"] = {"first_name": None, "last_name": None, "email": None, "phone": None,
                       "anonymous": reporter["anonymous"], "hidden": "only the departments handling this request "
                       "and the hotline see the reporter's contact"}
    return view


def _text(body: dict[str, Any], name: str, required: bool = True) -> str:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise Problem("BadRequestData", f"{name!r} is required")
        return ""
    if not isinstance(value, str):
        raise Problem("BadRequestData", f"{name!r} must be a string")
    return value


def department_view(desk: CitizenDesk, row: dict[str, Any]) -> dict[str, Any]:
    """What the handling department sees: everything, contact included, names even for anonymous reports."""
    public = open311.public_request(desk, row)
    return {
        **public,
        "state": row["state"],
        "lead_department": row["lead_department"],
        "co_departments": row["co_departments"] or [],
        "dispatch_method": row["dispatch_method"],
        "confidence": row["confidence"],
        "district": row["district"],
        "master_id": row["master_id"],
        "escalation_level": row["escalation_level"],
        "returned_by": row["returned_by"] or [],
        "satisfaction": row["satisfaction"],
        "attributes": row["attributes"] or {},
        "description": row["description"],
        "address": row["address_string"],
        "contact": {
            "first_name": row["first_name"],
            "last_name": row["last_name"],
            "email": row["email"],
            "phone": row["phone"],
            "anonymous": not (row["first_name"] or row["last_name"]),
        },
    }


def _desk_router(desk_of: Callable[[], CitizenDesk]) -> APIRouter:
    router = APIRouter(prefix="/citizen", tags=["citizen desk"])
    mine = [DEPARTMENT.depends()]

    async def act(coro: Awaitable[T]) -> T:
        try:
            return await coro
        except CitizenError as exc:
            raise _problem(exc) from exc

    @router.get("/catalogue", dependencies=mine)
    async def catalogue() -> dict[str, Any]:
        return desk_of().catalogue.to_dict()

    @router.get("/triage", dependencies=mine)
    async def triage(request: Request) -> list[dict[str, Any]]:
        desk = desk_of()
        return [_party_view(request, desk, r) for r in await desk.triage_queue()]

    @router.get("/requests/{request_id}", dependencies=mine)
    async def get_one(request_id: int, request: Request) -> dict[str, Any]:
        desk = desk_of()
        row = await act(desk.get(request_id))
        return {**_party_view(request, desk, row), "history": await desk.store.events(request_id)}

    @router.get("/requests/{request_id}/entity", dependencies=mine)
    async def entity(request_id: int) -> dict[str, Any]:
        desk = desk_of()
        return desk.entity(await act(desk.get(request_id)))

    @router.get("/public/requests/{request_id}", dependencies=[public.depends()])
    async def public_contact(request_id: int) -> dict[str, Any]:
        """The reporter's own view over the public API: contact details masked."""
        desk = desk_of()
        row = await act(desk.get(request_id))
        name = (
            "匿名 / anonymous"
            if not (row["first_name"] or row["last_name"])
            else ((row["last_name"] or "")[:1] + "**")
        )
        return {
            **open311.public_request(desk, row),
            "reporter": name,
            "email": mask_email(row["email"]) if row["email"] else None,
            "phone": mask_phone(row["phone"]) if row["phone"] else None,
        }

    @router.get("/departments/{department}/requests", dependencies=mine)
    async def department_queue(department: str, request: Request, state: str | None = None) -> list[dict[str, Any]]:
        desk = desk_of()
        if department not in desk.catalogue.departments:
            raise Problem("ResourceNotFound", f"department {department!r} is not in the dispatch catalogue")
        rows = await desk.store.query_requests(
            department=department, only_masters=True, states=[state] if state else None, limit=1000
        )
        return [_party_view(request, desk, r) for r in rows]

    @router.post("/requests/{request_id}/assign", dependencies=mine)
    async def assign(request_id: int, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        desk = desk_of()
        row = await act(desk.assign(request_id, _text(body, "department"), _text(body, "note", False)))
        return _party_view(request, desk, row)

    @router.post("/requests/{request_id}/accept", dependencies=mine)
    async def accept(request_id: int, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        desk = desk_of()
        return _party_view(request, desk, await act(desk.accept(request_id, _text(body, "department"))))

    @router.post("/requests/{request_id}/return", dependencies=mine)
    async def return_(request_id: int, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        desk = desk_of()
        row = await act(desk.return_request(request_id, _text(body, "department"), _text(body, "reason")))
        return _party_view(request, desk, row)

    @router.post("/requests/{request_id}/progress", dependencies=mine)
    async def progress(request_id: int, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        desk = desk_of()
        row = await act(desk.progress(request_id, _text(body, "department"), _text(body, "note")))
        return _party_view(request, desk, row)

    @router.post("/requests/{request_id}/resolve", dependencies=mine)
    async def resolve(request_id: int, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        desk = desk_of()
        row = await act(desk.resolve(request_id, _text(body, "department"), _text(body, "note")))
        return _party_view(request, desk, row)

    @router.post("/requests/{request_id}/visit", dependencies=[HOTLINE.depends()])
    async def visit(request_id: int, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        satisfaction, resolved = body.get("satisfaction"), body.get("resolved")
        if isinstance(satisfaction, bool) or not isinstance(satisfaction, int):
            raise Problem("BadRequestData", "'satisfaction' must be an integer from 1 to 5")
        if not isinstance(resolved, bool):
            raise Problem("BadRequestData", "'resolved' must be true or false")
        desk = desk_of()
        row = await act(desk.return_visit(request_id, satisfaction, resolved, _text(body, "comment", False)))
        return _party_view(request, desk, row)

    @router.post("/supervision/run", dependencies=[HOTLINE.depends()])
    async def supervise() -> list[dict[str, Any]]:
        return await desk_of().supervise()

    @router.get("/kpis", dependencies=mine)
    async def kpis(month: str | None = None) -> dict[str, Any]:
        return await act(desk_of().kpis(month))

    return router
