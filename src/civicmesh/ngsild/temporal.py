"""The NGSI-LD temporal API (/ngsi-ld/v1/temporal/...): attribute history recorded from the change events.

A durable relay subscriber writes one history row per attribute instance a change created, altered or removed;
the routes answer normalized, temporalValues (simplified) and aggregatedValues representations, page with
206 Partial Content and Content-Range, and accept temporal writes directly. A temporal create of an entity the
broker does not know also creates the entity, holding the most recent instance of each attribute, so that q and
geo-queries, core deletes and the rest of the API see it as one entity.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from civicmesh import regex
from civicmesh.access import anonymous_data, authenticated
from civicmesh.errors import Problem
from civicmesh.events import ENTITY_DELETED, ChangeEvent
from civicmesh.ngsild.context import TermMap
from civicmesh.ngsild.http import body_call, json_response, location, read_call
from civicmesh.ngsild.linked import order, parse_order_by, parse_projection, selected
from civicmesh.ngsild.model import (
    ATTRIBUTE_TYPES,
    NULL_URI,
    EntityParser,
    check_entity_id,
    check_name,
    is_datetime,
    is_uri,
    now_iso,
    parse_scope,
)
from civicmesh.ngsild.render import View, render_instance, simple_value
from civicmesh.ngsild.routes import PREFIX, _allow_params, _int, _names, _split, caller_of
from civicmesh.platform import Platform, Room, Subscriber
from civicmesh.store.history import TIME_COLUMNS, History, HistoryRow

AGGREGATES = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
                       r"(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_READ_PARAMS = {"attrs", "timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "options", "format",
                "aggrMethods", "aggrPeriodDuration", "lang", "datasetId", "local", "pick", "omit"}
_QUERY_PARAMS = _READ_PARAMS | {"id", "idPattern", "type", "q", "georel", "geometry", "coordinates", "geoproperty",
                                "limit", "offset", "count", "scopeQ", "orderBy", "csf"}
_FORMS = {"temporalValues": "simplified", "simplified": "simplified", "keyValues": "simplified",
          "aggregatedValues": "aggregated", "normalized": "normalized", "concise": "normalized"}
# The member holding the values of a simplified (temporalValues) attribute, by attribute type.
_SIMPLIFIED_KEY = {"Property": "values", "GeoProperty": "values", "Relationship": "objects",
                   "LanguageProperty": "languageMaps", "JsonProperty": "jsons", "VocabProperty": "vocabs",
                   "ListProperty": "valueLists", "ListRelationship": "objectLists"}
# What a deleted instance holds in its value member, by attribute type.
_NULL_VALUE: dict[str, Any] = {"LanguageProperty": {"@none": NULL_URI}, "ListProperty": [NULL_URI],
                               "ListRelationship": [NULL_URI]}
SCOPE_IRI = "https://uri.etsi.org/ngsi-ld/scope"
_WHOLE = 1e12  # the period (seconds) of an aggregation over the whole window: longer than any history
# Row columns (see History.rows): attr, instance id, dataset id, observed, created, modified, deleted, num, JSON, time
_ATTR, _IID, _DATASET, _OBSERVED, _CREATED, _MODIFIED, _DELETED, _NUM, _JSON, _TIME = range(10)


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text or "")
    if not match or text in ("P", "PT") or not any(match.groups()):
        raise Problem("BadRequestData", f"aggrPeriodDuration {text!r} is not an ISO 8601 duration such as PT1H")
    years, months, weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=years * 365 + months * 30 + weeks * 7 + days, hours=hours, minutes=minutes,
                     seconds=seconds)


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):  # year 0, month 13: the shape was right, the date is not (was a 500)
        raise Problem("BadRequestData", f"{text!r} is not a date-time that exists") from None


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical(text: str) -> str:
    """Stored times have one fixed-width form, so text order is time order in both engines."""
    return _parse_time(text).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _shown(stored: str) -> str:
    return _iso(_parse_time(stored))


def _number(inst: dict[str, Any]) -> float | None:
    value = inst.get("value")
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


def _row(attr: str, inst: dict[str, Any], at: str, *, deleted: bool = False) -> HistoryRow:
    observed = inst.get("observedAt")
    if deleted:
        # A deletion keeps the type (and datasetId) of what was deleted, so it is shown as that type's Null.
        stub = {"type": inst.get("type", "Property")}
        if inst.get("datasetId"):
            stub["datasetId"] = inst["datasetId"]
        if attr == SCOPE_IRI:
            stub["value"] = []  # a removed scope is shown as the empty scope
        body, num = orjson.dumps(stub), None
    else:
        body, num = orjson.dumps(inst), _number(inst)
    return (attr, f"urn:ngsi-ld:Instance:{uuid.uuid4()}", inst.get("datasetId"),
            _canonical(observed) if observed else None, at, at, at if deleted else None, num, body)


def _history_change(event: ChangeEvent) -> tuple[str, str, str, str, list[HistoryRow], str | None] | None:
    """The history an entity change event adds: (tenant, entity_id, types, created_at, instances, deleted_at)."""
    if not event.kind.startswith("entity."):
        return None
    before: dict[str, Any] | None = event.data.get("before")
    after: dict[str, Any] | None = event.data.get("after")
    doc = after or before
    if doc is None:
        return None
    at = event.at
    rows: list[HistoryRow] = []
    if event.kind == ENTITY_DELETED:
        assert before is not None
        for attr, instances in before["attrs"].items():
            rows.extend(_row(attr, inst, at, deleted=True) for inst in instances)
    else:
        assert after is not None
        for attr in event.data.get("attributes") or []:
            new = after["attrs"].get(attr, [])
            old = before["attrs"].get(attr, []) if before else []
            rows.extend(_row(attr, inst, at) for inst in new if inst not in old)
            kept = {i.get("datasetId") for i in new}
            rows.extend(_row(attr, inst, at, deleted=True) for inst in old if inst.get("datasetId") not in kept)
    rows.extend(_scope_rows(before, None if event.kind == ENTITY_DELETED else after, at))
    if not rows and event.kind != ENTITY_DELETED:
        # Nothing to record (e.g. the bare entity a temporal create makes): writing its history entity anyway
        # would bring back a history that a temporal DELETE removed while this event was on its way.
        return None
    return (event.tenant, doc["id"], orjson.dumps(doc["type"]).decode(), doc["createdAt"], rows,
            at if event.kind == ENTITY_DELETED else None)


@dataclasses.dataclass
class Ask:
    """What a temporal read asks for, checked once."""

    timeproperty: str = "observedAt"
    timerel: str | None = None
    time_at: str | None = None
    end_time_at: str | None = None
    last_n: int | None = None
    form: str = "normalized"
    sys_attrs: bool = False
    methods: list[str] = dataclasses.field(default_factory=list)
    period: timedelta | None = None
    attrs: list[str] | None = None  # expanded
    dataset_ids: frozenset[str | None] | None = None
    pick: set[str] | None = None  # compact names and id/type
    omit: set[str] | None = None
    lang: str | None = None

    @property
    def lower(self) -> str | None:
        return self.time_at if self.timerel in ("after", "between") else None

    @property
    def upper(self) -> str | None:
        if self.timerel == "before":
            return self.time_at
        return self.end_time_at if self.timerel == "between" else None

    @property
    def filtering(self) -> bool:
        return bool(self.attrs or self.timerel or self.dataset_ids is not None or self.last_n)


def screened_ask(ask: Ask, visible: set[str] | None) -> Ask | None:
    """The read narrowed to the attributes the gate lets the caller see (None: all); None when none is left."""
    if visible is None:
        return ask
    attrs = [a for a in (ask.attrs or sorted(visible)) if a in visible]
    return dataclasses.replace(ask, attrs=attrs) if attrs else None


def parse_ask(p: Any, terms: TermMap) -> Ask:
    ask = Ask()
    ask.timeproperty = p.get("timeproperty") or "observedAt"
    if ask.timeproperty not in TIME_COLUMNS:
        raise Problem("BadRequestData", f"timeproperty {ask.timeproperty!r} is not one of {', '.join(TIME_COLUMNS)}")
    timerel = p.get("timerel")
    if timerel is not None:
        if timerel not in ("before", "after", "between"):
            raise Problem("BadRequestData", f"timerel {timerel!r} is not before, after or between")
        if not is_datetime(p.get("timeAt")):
            raise Problem("BadRequestData", "timerel needs timeAt as a DateTime")
        ask.timerel, ask.time_at = timerel, _canonical(p["timeAt"])
        if timerel == "between":
            if not is_datetime(p.get("endTimeAt")):
                raise Problem("BadRequestData", "timerel=between needs endTimeAt as a DateTime")
            ask.end_time_at = _canonical(p["endTimeAt"])
            if ask.end_time_at <= ask.time_at:
                raise Problem("BadRequestData", "endTimeAt must be after timeAt")
    elif p.get("timeAt") or p.get("endTimeAt"):
        raise Problem("BadRequestData", "timeAt and endTimeAt need a timerel")
    ask.last_n = _int(p.get("lastN"), "lastN", 0) or None
    options = set(_split(p.get("options")) or [])
    unknown = options - set(_FORMS) - {"sysAttrs"}
    if unknown:
        raise Problem("InvalidRequest", f"unknown option(s) {', '.join(sorted(unknown))}")
    fmt = p.get("format")
    if fmt is not None:
        if fmt not in _FORMS:
            raise Problem("InvalidRequest", f"format {fmt!r} is not one of {', '.join(_FORMS)}")
        ask.form = _FORMS[fmt]  # format takes precedence over options
    elif "aggregatedValues" in options:
        ask.form = "aggregated"
    elif options & {"temporalValues", "simplified", "keyValues"}:
        ask.form = "simplified"
    ask.sys_attrs = "sysAttrs" in options
    if ask.form == "aggregated":
        ask.methods = _split(p.get("aggrMethods")) or []
        if not ask.methods or not set(ask.methods) <= set(AGGREGATES):
            raise Problem("BadRequestData", f"aggregatedValues needs aggrMethods from {', '.join(AGGREGATES)}")
    if p.get("aggrPeriodDuration"):
        ask.period = parse_duration(p["aggrPeriodDuration"])
    names = _names(p.get("attrs"))
    ask.attrs = [terms.expand(a) for a in names] if names else None
    if "pick" in p:
        ask.pick = _top_level(p["pick"], "pick")
    if "omit" in p:
        ask.omit = _top_level(p["omit"], "omit")
    if names and (ask.pick is not None or ask.omit is not None):
        raise Problem("BadRequestData", "attrs cannot be combined with pick or omit")
    if ask.pick and ask.omit and ask.pick & ask.omit:
        raise Problem("BadRequestData", f"{', '.join(sorted(ask.pick & ask.omit))} cannot be both picked and omitted")
    if "datasetId" in p:
        ids = frozenset(None if d == "@none" else d for d in _split(p["datasetId"]) or [])
        for d in ids:
            if d is not None and not is_uri(d):
                raise Problem("BadRequestData", f"datasetId {d!r} is not a URI")
        ask.dataset_ids = ids
    ask.lang = p.get("lang")
    return ask


def _top_level(text: str, param: str) -> set[str]:
    """The names a pick/omit expression lists at the entity's level (attributes, id, type)."""
    names, members = selected(parse_projection(text, param), omit=param == "omit")
    return names | members


@dataclasses.dataclass
class Page:
    """The time range one response holds when the history is longer than a page (6.3.10)."""

    start: str
    end: str
    size: str

    def header(self) -> str:
        return f"date-time {_shown(self.start)}-{_shown(self.end)}/{self.size}"


def cut_page(rows_by_entity: dict[str, list[tuple[Any, ...]]], ask: Ask,
             page_size: int) -> tuple[dict[str, list[tuple[Any, ...]]], Page | None]:
    """Keep the oldest (or, with lastN, the newest) instances that fit a page, across all entities and attributes,
    as a time range: every instance inside the range is kept, none outside it."""
    timed = [r[_TIME] for rows in rows_by_entity.values() for r in rows if r[_TIME]]
    if len(timed) <= page_size:
        return rows_by_entity, None
    newest_first = bool(ask.last_n)
    timed.sort(reverse=newest_first)
    boundary = timed[page_size - 1]
    if newest_first:
        kept = {e: [r for r in rows if r[_TIME] and r[_TIME] >= boundary] for e, rows in rows_by_entity.items()}
        start = ask.end_time_at if ask.timerel == "between" else ask.time_at if ask.timerel == "before" else timed[0]
    else:
        kept = {e: [r for r in rows if r[_TIME] and r[_TIME] <= boundary] for e, rows in rows_by_entity.items()}
        start = ask.time_at if ask.timerel in ("after", "between") else timed[0]
    return kept, Page(start or timed[0], boundary, str(ask.last_n) if ask.last_n else "*")


class Temporal:
    def __init__(self, platform: Platform) -> None:
        self.history = History(platform.store)
        self.broker = platform.broker
        self.resolver = platform.contexts
        self.ngsi = platform.ngsi
        self.page_size = max(platform.settings.temporal_page_size, 1)
        self.max_body = platform.settings.max_body_bytes

    # -- recording ------------------------------------------------------------------------------------------
    async def on_events(self, events: list[ChangeEvent]) -> None:
        """The change-event consumer: a relayed run of events becomes history in one transaction."""
        changes = [change for change in map(_history_change, events) if change is not None]
        await self.history.add_many(changes)

    # -- reading --------------------------------------------------------------------------------------------
    async def _rows(self, tenant: str, entity_id: str, ask: Ask) -> list[tuple[Any, ...]]:
        return await self.history.rows(tenant, entity_id, ask.attrs, ask.timeproperty, ask.lower, ask.upper,
                                       ask.last_n, ask.dataset_ids)

    def _body(self, entity_id: str, types: str, terms: TermMap, ask: Ask, rows: list[tuple[Any, ...]],
              present: dict[str, str]) -> dict[str, Any]:
        """One entity's temporal representation from its rows; `present` names the attributes (with their type)
        that had instances before paging cut the range, so they are shown, empty, when the page holds none."""
        out: dict[str, Any] = {"id": entity_id, "type": _types(orjson.loads(types), terms)}
        by_attr: dict[str, list[tuple[Any, ...]]] = {attr: [] for attr in present}
        for row in rows:
            by_attr.setdefault(row[_ATTR], []).append(row)
        view = View(terms, sys_attrs=ask.sys_attrs, lang=ask.lang)
        for attr, items in by_attr.items():
            name = terms.compact(attr)
            if ask.form == "simplified":
                out[name] = _simplified(items, ask.timeproperty, view, present.get(attr, "Property"))
            else:
                out[name] = [_normalized(row, view) for row in items]
        return _project(out, ask)

    @staticmethod
    def _window(ask: Ask) -> tuple[float | None, float]:
        """The aggregation's origin (the window's start, else each attribute's first instance) and period; no
        aggrPeriodDuration (or PT0S) is one period over the whole window, or the whole history."""
        origin = _parse_time(ask.lower).timestamp() if ask.lower else None
        period = ask.period.total_seconds() if ask.period else 0.0
        return origin, period if period > 0 else _WHOLE

    async def _aggregated_body(self, tenant: str, entity_id: str, types: str, terms: TermMap,
                               ask: Ask) -> dict[str, Any]:
        origin, period = self._window(ask)
        found = await self.history.aggregate(tenant, entity_id, ask.attrs, ask.timeproperty, ask.lower, ask.upper,
                                             origin, period, ask.dataset_ids, distinct="distinctCount" in ask.methods)
        return await self._aggregated_from(tenant, entity_id, types, terms, ask, found)

    async def _aggregated_from(self, tenant: str, entity_id: str, types: str, terms: TermMap, ask: Ask,
                               found: list[tuple[Any, ...]]) -> dict[str, Any]:
        """aggregatedValues from the engine's per-period sums (see History.aggregate)."""
        out: dict[str, Any] = {"id": entity_id, "type": _types(orjson.loads(types), terms)}
        origin, period = self._window(ask)
        upper = ask.upper if period == _WHOLE else None
        by_attr: dict[str, list[tuple[Any, ...]]] = {}
        for row in found:
            by_attr.setdefault(row[0], []).append(row)
        for attr, buckets in by_attr.items():
            if any(b[3] != b[4] for b in buckets) and set(ask.methods) - {"totalCount"}:
                # Non-numeric values: aggregated from the instances themselves.
                rows = await self.history.rows(tenant, entity_id, [attr], ask.timeproperty, ask.lower, ask.upper,
                                               None, ask.dataset_ids)
                out[terms.compact(attr)] = _aggregate_rows(rows, ask.methods, origin, period, upper)
            else:
                out[terms.compact(attr)] = _aggregate_buckets(buckets, ask.methods, period, upper)
        return _project(out, ask)

    async def retrieve(self, request: Request, entity_id: str) -> Response:
        _allow_params(request, _READ_PARAMS)
        call = read_call(request, self.resolver, allow_geojson=False)
        check_entity_id(entity_id)
        ask = parse_ask(request.query_params, call.terms)
        caller = caller_of(request)
        await self.broker.authorize(caller, call.tenant, "read")
        # EXCHANGE: history is screened like the entity itself (owner, agreements, masked attributes).
        readable = await self.broker.readable(call.tenant, [entity_id], caller, "temporal")
        screened = screened_ask(ask, readable[entity_id]) if entity_id in readable else None
        if screened is None:
            if await self.history.entities(call.tenant, [entity_id]) or \
                    await self.broker.store.get(call.tenant, entity_id):
                raise Problem("Forbidden", f"{entity_id}: no agreement lets this caller read its history",
                              extra={"explain": f"/exchange/explain?entity={entity_id}"})
            raise Problem("ResourceNotFound", f"entity {entity_id} has no history")
        ask = screened
        page = None
        if ask.form == "aggregated":
            # The entity, its attributes and their aggregation come from one statement (one round trip).
            origin, period = self._window(ask)
            answer = await self.history.aggregate_entity(
                call.tenant, entity_id, ask.attrs, ask.timeproperty, ask.lower, ask.upper, origin, period,
                ask.dataset_ids, distinct="distinctCount" in ask.methods)
            if answer is None:
                raise Problem("ResourceNotFound", f"entity {entity_id} has no history")
            types, present, found = answer
            _check_attrs_present(entity_id, ask, present)
            body = await self._aggregated_from(call.tenant, entity_id, types, call.terms, ask, found)
        else:
            entity = await self.history.entities(call.tenant, [entity_id])
            if not entity:
                raise Problem("ResourceNotFound", f"entity {entity_id} has no history")
            if ask.attrs:
                _check_attrs_present(entity_id, ask, await self.history.attributes(call.tenant, entity_id))
            rows = await self._rows(call.tenant, entity_id, ask)
            present_kinds = _present(rows)
            kept, page = cut_page({entity_id: rows}, ask, self.page_size)
            body = self._body(entity_id, entity[0][1], call.terms, ask, kept[entity_id], present_kinds)
        if not body:
            raise Problem("ResourceNotFound", f"nothing of entity {entity_id} is left after pick and omit")
        if page:
            return json_response(call, body, status=206, headers={"Content-Range": page.header()})
        return json_response(call, body)

    async def query(self, request: Request) -> Response:
        _allow_params(request, _QUERY_PARAMS)
        call = read_call(request, self.resolver, allow_geojson=False)
        return await self._query(request, call, request.query_params)

    async def post_query(self, request: Request) -> Response:
        _allow_params(request, {"limit", "offset", "count", "options", "format", "lastN", "lang", "local",
                                "aggrMethods", "aggrPeriodDuration", "pick", "omit", "orderBy", "datasetId"})
        call, body = await body_call(request, self.resolver, self.max_body)
        if body.get("type") != "Query":
            raise Problem("BadRequestData", 'the body of a query must have "type": "Query"')
        params: dict[str, Any] = dict(request.query_params)
        temporal = body.get("temporalQ") or {}
        if not isinstance(temporal, dict):
            raise Problem("BadRequestData", "temporalQ must be a JSON object")
        for key in ("timerel", "timeAt", "endTimeAt", "timeproperty", "lastN"):
            if key in temporal:
                params[key] = str(temporal[key])
        selectors = body.get("entities") or []
        if not isinstance(selectors, list) or not all(isinstance(s, dict) for s in selectors):
            raise Problem("BadRequestData", "entities must be a list of entity selectors")
        types = [s["type"] for s in selectors if isinstance(s.get("type"), str)]
        if types:
            params["type"] = ",".join(types)
        ids = [s["id"] for s in selectors if isinstance(s.get("id"), str)]
        if ids:
            params["id"] = ",".join(ids)
        patterns = [s["idPattern"] for s in selectors if isinstance(s.get("idPattern"), str)]
        if patterns:
            params["idPattern"] = "|".join(f"(?:{p})" for p in patterns)
        for key in ("attrs", "q", "lang", "datasetId"):
            value = body.get(key)
            if not value:
                continue
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = ",".join(value)
            if not isinstance(value, str):
                raise Problem("BadRequestData", f"{key} must be a string or a list of strings")
            params[key] = value
        geo = body.get("geoQ")
        if isinstance(geo, dict):
            params.update({"georel": geo.get("georel"), "geometry": geo.get("geometry"),
                           "coordinates": orjson.dumps(geo.get("coordinates")).decode(),
                           "geoproperty": geo.get("geoproperty")})
            params = {k: v for k, v in params.items() if v is not None}
        return await self._query(request, call, params)

    async def _query(self, request: Request, call: Any, p: Any) -> Response:
        ask = parse_ask(p, call.terms)
        caller = caller_of(request)
        await self.broker.authorize(caller, call.tenant, "query")
        local = p.get("local") == "true"
        if not local and not any(p.get(k) for k in ("type", "attrs", "q", "georel")):
            raise Problem("BadRequestData", "a temporal query needs type, attrs, q or a geo-query (or local=true)")
        candidates = await self.history.entities(call.tenant, _split(p.get("id")))
        if p.get("type"):
            wanted = {call.terms.expand(t) for t in re.split(r"[,|;()]", p["type"]) if t}
            candidates = [c for c in candidates if wanted & set(orjson.loads(c[1]))]
        if p.get("idPattern"):
            pattern = regex.compile_pattern(p["idPattern"], "idPattern")
            candidates = [c for c in candidates if pattern.search(c[0])]
        current: dict[str, dict[str, Any]] | None = None
        if (p.get("q") or p.get("georel") or p.get("orderBy")) and candidates:
            query = self.ngsi._build_query(
                call.terms, ids=[c[0] for c in candidates], id_pattern=None, types=None, attrs=None,
                q=p.get("q"), georel=p.get("georel"), geometry=p.get("geometry"), coordinates=p.get("coordinates"),
                geoproperty=p.get("geoproperty"), scope_q=None, limit=str(len(candidates)), offset=None, count=None,
                require_selector=False)
            query.limit = len(candidates)
            current = {d["id"]: d for d in (await self.broker.query(call.tenant, query, caller))[0]}
            if p.get("q") or p.get("georel"):
                candidates = [c for c in candidates if c[0] in current]
        if p.get("orderBy"):
            keys = parse_order_by(p["orderBy"])
            docs = order(list((current or {}).values()), keys, call.terms.expand, call.terms.compact)
            rank = {d["id"]: i for i, d in enumerate(docs)}
            candidates.sort(key=lambda c: rank.get(c[0], len(rank)))
        # EXCHANGE: only the entities the caller may read, and of them only the attributes it may see.
        readable = await self.broker.readable(call.tenant, [c[0] for c in candidates], caller, "temporal")
        asks: dict[str, Ask] = {}
        for c in candidates:
            narrowed = screened_ask(ask, readable[c[0]]) if c[0] in readable else None
            if narrowed is not None:
                asks[c[0]] = narrowed
        candidates = [c for c in candidates if c[0] in asks]
        limit, offset = _int(p.get("limit"), "limit", 20), _int(p.get("offset"), "offset", 0)
        page_of = candidates[offset:offset + limit]
        results: list[dict[str, Any]] = []
        page = None
        if ask.form == "aggregated":
            for entity_id, types, _created, _deleted in page_of:
                mine = asks[entity_id]
                body = await self._aggregated_body(call.tenant, entity_id, types, call.terms, mine)
                if mine.filtering and not any(k not in ("id", "type") for k in body):
                    continue
                results.append(body)
        else:
            rows_by_entity = {c[0]: await self._rows(call.tenant, c[0], asks[c[0]]) for c in page_of}
            present = {e: _present(rows) for e, rows in rows_by_entity.items()}
            kept, page = cut_page(rows_by_entity, ask, self.page_size)
            for entity_id, types, _created, _deleted in page_of:
                mine = asks[entity_id]
                if mine.filtering and not rows_by_entity[entity_id]:
                    continue  # nothing of it in the attributes, datasets or time window asked for
                results.append(self._body(entity_id, types, call.terms, mine, kept[entity_id], present[entity_id]))
        headers = {}
        if p.get("count") == "true":
            headers["NGSILD-Results-Count"] = str(len(candidates))
        if page:
            headers["Content-Range"] = page.header()
            return json_response(call, results, status=206, headers=headers)
        return json_response(call, results, headers=headers)

    # -- writing --------------------------------------------------------------------------------------------
    def _parse_attributes(self, body: dict[str, Any], terms: TermMap,
                          at: str) -> tuple[list[HistoryRow], dict[str, list[dict[str, Any]]]]:
        """History rows for every instance of a temporal fragment, and the most recent instance of each
        attribute and datasetId (what the entity itself holds)."""
        parser = EntityParser(terms, at)
        rows: list[HistoryRow] = []
        latest: dict[str, dict[Any, dict[str, Any]]] = {}
        for name, raw in body.items():
            if name in ("id", "@id", "type", "@type", "@context", "scope", "createdAt", "modifiedAt"):
                continue
            check_name(name)
            iri = terms.expand(name)
            # A temporal attribute lists instances over time, so one datasetId may appear many times.
            for item in raw if isinstance(raw, list) else [raw]:
                inst = parser.instance(name, item)
                rows.append(_row(iri, inst, at))
                newest = latest.setdefault(iri, {})
                known = newest.get(inst.get("datasetId"))
                if known is None or (inst.get("observedAt") or "") >= (known.get("observedAt") or ""):
                    newest[inst.get("datasetId")] = inst
        return rows, {iri: list(by_dataset.values()) for iri, by_dataset in latest.items()}

    async def create(self, request: Request) -> Response:
        _allow_params(request, set())
        call, body = await body_call(request, self.resolver, self.max_body)
        caller = caller_of(request)
        await self.broker.authorize(caller, call.tenant, "create")
        entity_id = check_entity_id(body.get("id", body.get("@id")))
        if "type" not in body and "@type" not in body:
            raise Problem("BadRequestData", f"temporal entity {entity_id} has no type")
        at = now_iso()
        types = EntityParser(call.terms, at).types(body.get("type", body.get("@type")))
        scope = parse_scope(body["scope"]) if "scope" in body else None
        rows, latest = self._parse_attributes(body, call.terms, at)
        if scope:
            rows.append(_row(SCOPE_IRI, {"type": "Property", "value": scope}, at))
        existed = bool(await self.history.entities(call.tenant, [entity_id]))
        await self.history.add(call.tenant, entity_id, orjson.dumps(types).decode(), at, rows, replace_same_time=True)
        if not existed:
            doc: dict[str, Any] = {"id": entity_id, "type": types, "createdAt": at, "modifiedAt": at,
                                   "attrs": latest}
            if scope:
                doc["scope"] = scope
            await self.broker.create_if_absent(call.tenant, doc, caller)
            return Response(status_code=201, headers={"Location": location(f"{PREFIX}/temporal/entities/{entity_id}")})
        return Response(status_code=204)

    async def add_attrs(self, request: Request, entity_id: str) -> Response:
        _allow_params(request, set())
        check_entity_id(entity_id)
        call, body = await body_call(request, self.resolver, self.max_body)
        await self.broker.authorize(caller_of(request), call.tenant, "update")
        found = await self.history.entities(call.tenant, [entity_id])
        if not found:
            raise Problem("ResourceNotFound", f"entity {entity_id} has no history")
        rows, _ = self._parse_attributes(body, call.terms, now_iso())
        await self.history.add(call.tenant, entity_id, found[0][1], found[0][2], rows, deleted_at=found[0][3],
                               replace_same_time=True)
        return Response(status_code=204)

    async def delete(self, request: Request, entity_id: str) -> Response:
        _allow_params(request, set())
        call = read_call(request, self.resolver, allow_geojson=False)
        check_entity_id(entity_id)
        await self.broker.authorize(caller_of(request), call.tenant, "delete")
        # 5.6.16 removes the entity's temporal evolution, not the entity (5.6.6 does that; a temporal create that
        # made the entity does not change which operation removes it). ResourceNotFound only when neither is known.
        if not await self.history.delete(call.tenant, entity_id) and \
                await self.broker.store.get(call.tenant, entity_id) is None:
            raise Problem("ResourceNotFound", f"entity {entity_id} has neither history nor a current state")
        return Response(status_code=204)

    async def delete_attr(self, request: Request, entity_id: str, attr: str) -> Response:
        _allow_params(request, {"datasetId", "deleteAll"})
        check_entity_id(entity_id)
        check_name(attr)
        call = read_call(request, self.resolver, allow_geojson=False)
        await self.broker.authorize(caller_of(request), call.tenant, "delete")
        p = request.query_params
        dataset_id = p.get("datasetId") or None
        if dataset_id is not None and not is_uri(dataset_id):
            raise Problem("BadRequestData", f"datasetId {dataset_id!r} is not a URI")
        if p.get("deleteAll") not in (None, "true", "false"):
            raise Problem("BadRequestData", "deleteAll must be true or false")
        # Without deleteAll=true only one instance set goes: the one of datasetId, else the default one.
        removed = await self.history.delete(call.tenant, entity_id, attr=call.terms.expand(attr),
                                            dataset_id=dataset_id, all_datasets=p.get("deleteAll") == "true")
        if not removed:
            raise Problem("ResourceNotFound", f"entity {entity_id} has no history of {attr!r}")
        return Response(status_code=204)

    async def modify_instance(self, request: Request, entity_id: str, attr: str, instance_id: str) -> Response:
        _allow_params(request, set())
        _check_instance_path(entity_id, attr, instance_id)
        call, body = await body_call(request, self.resolver, self.max_body)
        await self.broker.authorize(caller_of(request), call.tenant, "update")
        iri = call.terms.expand(attr)
        fragment = {k: v for k, v in body.items() if k != "@context"}
        raw = fragment.get(attr, fragment)
        inst = EntityParser(call.terms).instance(attr, raw[0] if isinstance(raw, list) and raw else raw)
        replaced = await self.history.replace_instance(call.tenant, entity_id, iri, instance_id,
                                                       _row(iri, inst, now_iso()))
        if not replaced:
            raise Problem("ResourceNotFound", f"no instance {instance_id} of {attr!r} in the history of {entity_id}")
        return Response(status_code=204)

    async def delete_instance(self, request: Request, entity_id: str, attr: str, instance_id: str) -> Response:
        _allow_params(request, set())
        _check_instance_path(entity_id, attr, instance_id)
        call = read_call(request, self.resolver, allow_geojson=False)
        await self.broker.authorize(caller_of(request), call.tenant, "delete")
        if not await self.history.delete(call.tenant, entity_id, attr=call.terms.expand(attr), instance_id=instance_id):
            raise Problem("ResourceNotFound", f"no instance {instance_id} of {attr!r} in the history of {entity_id}")
        return Response(status_code=204)

    async def attribute_path(self, request: Request, entity_id: str, tail: str) -> Response:
        """/temporal/entities/{id}/attrs/{attr}[/{instanceId}] with an empty or extra segment somewhere: the
        routes above only match well-formed paths, so this one says precisely what is wrong."""
        parts = tail.split("/")
        if request.method == "PATCH":
            if len(parts) != 2 or not all(parts):
                raise Problem("MethodNotAllowed", "PATCH needs /temporal/entities/{id}/attrs/{attrId}/{instanceId}")
            return await self.modify_instance(request, entity_id, parts[0], parts[1])
        if len(parts) == 1 or (len(parts) == 2 and parts[1] == ""):
            check_entity_id(entity_id)
            if not parts[0]:
                raise Problem("BadRequestData", "the attribute name in the path is empty")
            return await self.delete_attr(request, entity_id, parts[0])
        if len(parts) != 2:
            raise Problem("BadRequestData", f"{tail!r} is not an attribute name and instance id")
        return await self.delete_instance(request, entity_id, parts[0], parts[1])


def _scope_rows(before: dict[str, Any] | None, after: dict[str, Any] | None, at: str) -> list[HistoryRow]:
    """The scope is an entity member, not an attribute, but its changes are history too (4.18)."""
    old, new = (before or {}).get("scope"), (after or {}).get("scope")
    if old == new:
        return []
    if new:
        return [_row(SCOPE_IRI, {"type": "Property", "value": new}, at)]
    return [_row(SCOPE_IRI, {"type": "Property"}, at, deleted=True)]


def _check_attrs_present(entity_id: str, ask: Ask, present: list[str]) -> None:
    if ask.attrs and not set(ask.attrs) & set(present):
        raise Problem("ResourceNotFound", f"entity {entity_id} has no history of the attributes asked for")


def _check_instance_path(entity_id: str, attr: str, instance_id: str) -> None:
    check_entity_id(entity_id)
    if not attr:
        raise Problem("BadRequestData", "the attribute name in the path is empty")
    check_name(attr)
    if not is_uri(instance_id):
        raise Problem("BadRequestData", f"instance id {instance_id!r} is not a URI")


def _types(types: list[str], terms: TermMap) -> Any:
    compact = [terms.compact(t) for t in types]
    return compact[0] if len(compact) == 1 else compact


def _kind(row: tuple[Any, ...]) -> str:
    if row[_JSON] is None:
        return "Property"
    return str(orjson.loads(row[_JSON]).get("type", "Property"))


def _present(rows: list[tuple[Any, ...]]) -> dict[str, str]:
    present: dict[str, str] = {}
    for row in rows:
        if row[_ATTR] not in present:
            present[row[_ATTR]] = _kind(row)
    return present


def _project(body: dict[str, Any], ask: Ask) -> dict[str, Any]:
    """pick / omit over id, type and the attributes (by their compact names)."""
    if ask.pick is not None:
        body = {k: v for k, v in body.items() if k in ask.pick}
    if ask.omit:
        body = {k: v for k, v in body.items() if k not in ask.omit}
    return body


def _null_of(row: tuple[Any, ...], kind: str) -> Any:
    member = ATTRIBUTE_TYPES.get(kind, "value")
    stub = orjson.loads(row[_JSON]) if row[_JSON] else {}
    return stub[member] if member in stub else _NULL_VALUE.get(kind, NULL_URI)


def _deleted_instance(row: tuple[Any, ...]) -> dict[str, Any]:
    kind = _kind(row)
    inst: dict[str, Any] = {"type": kind, ATTRIBUTE_TYPES.get(kind, "value"): _null_of(row, kind),
                            "instanceId": row[_IID], "deletedAt": _shown(row[_DELETED])}
    if row[_DATASET]:
        inst["datasetId"] = row[_DATASET]
    return inst


def _normalized(row: tuple[Any, ...], view: View) -> Any:
    if row[_DELETED] is not None:
        return _deleted_instance(row)
    inst = render_instance(orjson.loads(row[_JSON]), view)
    if isinstance(inst, dict):
        inst["instanceId"] = row[_IID]
        if view.sys_attrs:
            inst["createdAt"], inst["modifiedAt"] = row[_CREATED], row[_MODIFIED]
    return inst


def _shown_time(row: tuple[Any, ...], timeproperty: str) -> str | None:
    """The time as the writer gave it (observedAt), else the broker's stamp."""
    if timeproperty == "observedAt" and row[_DELETED] is None and row[_JSON]:
        written = orjson.loads(row[_JSON]).get("observedAt")
        if isinstance(written, str):
            return written
    return _shown(row[_TIME]) if row[_TIME] else None


def _simple(row: tuple[Any, ...], kind: str, view: View) -> Any:
    if row[_DELETED] is not None:
        null = _null_of(row, kind)
        return {ATTRIBUTE_TYPES[kind]: null} if kind in ("LanguageProperty", "JsonProperty", "VocabProperty") \
            else null
    inst = orjson.loads(row[_JSON])
    if kind == "JsonProperty":
        return {"json": inst["json"]}
    if kind == "VocabProperty":
        return {"vocab": simple_value(inst, view)}
    return simple_value(inst, view)


def _simplified(items: list[tuple[Any, ...]], timeproperty: str, view: View, kind: str) -> Any:
    """temporalValues: one object per datasetId, each with [value, time] pairs."""
    by_dataset: dict[Any, list[tuple[Any, ...]]] = {}
    for row in items:
        by_dataset.setdefault(row[_DATASET], []).append(row)
    if not by_dataset:
        return {"type": kind, _SIMPLIFIED_KEY.get(kind, "values"): []}
    shown = []
    for dataset_id, rows in by_dataset.items():
        kind = _kind(rows[0])
        entry: dict[str, Any] = {"type": kind, _SIMPLIFIED_KEY.get(kind, "values"): [
            [_simple(row, kind, view), _shown_time(row, timeproperty)] for row in rows]}
        if dataset_id is not None:
            entry["datasetId"] = dataset_id
        shown.append(entry)
    return shown[0] if len(shown) == 1 else shown


def _plain(inst: dict[str, Any]) -> Any:
    return inst.get(ATTRIBUTE_TYPES.get(inst.get("type", "Property"), "value"))


@functools.lru_cache(maxsize=65536)
def _epoch_text(seconds: float) -> str:
    """An epoch second as ISO 8601 UTC; periods repeat across requests, so their texts are cached."""
    whole = math.floor(seconds)
    micros = round((seconds - whole) * 1_000_000)
    if micros >= 1_000_000:
        whole, micros = whole + 1, 0
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{text}.{micros:06d}Z" if micros else f"{text}Z"


def _period_bounds(origin: float, index: int, period: float, last: float,
                   upper: str | None) -> tuple[str, str]:
    """The period's start and end; the single period of a whole-range aggregation ends at the window's end, or
    at the last instance."""
    lo = origin + index * period
    if period >= _WHOLE:
        return _epoch_text(lo), upper and _shown(upper) or _epoch_text(last)
    return _epoch_text(lo), _epoch_text(lo + period)


def _aggregate_buckets(buckets: list[tuple[Any, ...]], methods: list[str], period: float,
                       upper: str | None) -> dict[str, Any]:
    """aggregatedValues from the engine's per-period sums: (attr, period, origin, count, numeric count,
    distinct numbers, sum, min, max, sum of squares, last time)."""
    out: dict[str, Any] = {"type": "Property"}
    bounds = [_period_bounds(float(b[2]), int(b[1]), period, float(b[10]), upper) for b in buckets]
    for method in methods:
        series = []
        for (_attr, _index, _origin, count, numeric, distinct, total, low, high, squares, _last), (lo, hi) in zip(
                buckets, bounds, strict=True):
            result: Any
            if method == "totalCount":
                result = count
            elif method == "distinctCount":
                result = distinct
            elif not numeric:
                continue
            elif method == "sum":
                result = total
            elif method == "avg":
                result = total / numeric
            elif method == "min":
                result = low
            elif method == "max":
                result = high
            elif method == "sumsq":
                result = squares
            else:
                mean = total / numeric
                result = math.sqrt(max(squares / numeric - mean * mean, 0.0))
            series.append([result, lo, hi])
        out[method] = series
    return out


def _aggregate_rows(rows: list[tuple[Any, ...]], methods: list[str], origin: float | None,
                    period: float, upper: str | None) -> dict[str, Any]:
    """aggregatedValues of attributes with non-numeric values, from the instances."""
    stamped = [(_parse_time(r[_TIME]).timestamp(), r) for r in rows if r[_TIME]]
    out: dict[str, Any] = {"type": "Property"}
    if not stamped:
        return {**out, **{m: [] for m in methods}}
    first = origin if origin is not None else min(t for t, _ in stamped)
    last = max(t for t, _ in stamped)
    buckets: dict[int, list[tuple[Any, ...]]] = {}
    for moment, row in stamped:
        buckets.setdefault(int((moment - first) // period), []).append(row)
    for method in methods:
        series = []
        for index in sorted(buckets):
            values = buckets[index]
            numbers = [r[_NUM] for r in values if r[_NUM] is not None]
            plain = [orjson.dumps(_plain(orjson.loads(r[_JSON]))) if r[_DELETED] is None and r[_JSON] else b"null"
                     for r in values]
            result: Any
            if method == "totalCount":
                result = len(values)
            elif method == "distinctCount":
                result = len(set(plain))
            elif method in ("min", "max") and not numbers:
                texts = sorted(p.decode() for p in plain if p != b"null")
                if not texts:
                    continue
                result = orjson.loads(texts[0] if method == "min" else texts[-1])
            elif not numbers:
                continue
            elif method == "sum":
                result = sum(numbers)
            elif method == "avg":
                result = sum(numbers) / len(numbers)
            elif method == "min":
                result = min(numbers)
            elif method == "max":
                result = max(numbers)
            elif method == "sumsq":
                result = sum(v * v for v in numbers)
            else:
                mean = sum(numbers) / len(numbers)
                result = math.sqrt(sum((v - mean) ** 2 for v in numbers) / len(numbers))
            series.append([result, *_period_bounds(first, index, period, last, upper)])
        out[method] = series
    return out


def build(platform: Platform) -> Room:
    """Serve the temporal API and record every change event as history."""
    temporal = Temporal(platform)
    router = APIRouter(prefix=PREFIX + "/temporal")
    routes: list[tuple[str, list[str], Callable[..., Any]]] = [
        ("/entities", ["GET"], temporal.query), ("/entities", ["POST"], temporal.create),
        ("/entities/{entity_id}", ["GET"], temporal.retrieve), ("/entities/{entity_id}", ["DELETE"], temporal.delete),
        ("/entities/{entity_id:path}/attrs", ["POST"], temporal.add_attrs),
        ("/entities/{entity_id:path}/attrs/{attr}", ["DELETE"], temporal.delete_attr),
        ("/entities/{entity_id:path}/attrs/{attr}/{instance_id}", ["PATCH"], temporal.modify_instance),
        ("/entities/{entity_id:path}/attrs/{attr}/{instance_id}", ["DELETE"], temporal.delete_instance),
        ("/entities/{entity_id:path}/attrs/{tail:path}", ["PATCH", "DELETE"], temporal.attribute_path),
        ("/entityOperations/query", ["POST"], temporal.post_query),
    ]
    for path, methods, endpoint in routes:
        # History is city data: its reads are screened like current reads; its writes need a caller.
        rule = anonymous_data if methods == ["GET"] or path == "/entityOperations/query" else authenticated
        router.add_api_route(path, endpoint, methods=methods, dependencies=[rule.depends()])
        if not path.endswith(":path}"):
            router.add_api_route(path + "/", endpoint, methods=methods, include_in_schema=False,
                                 dependencies=[rule.depends()])
    return Room("temporal", routers=[router],
                subscribers=[Subscriber("temporal", on_events=temporal.on_events, durable=True)])
