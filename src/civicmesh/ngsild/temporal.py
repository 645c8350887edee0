"""The NGSI-LD temporal API (/ngsi-ld/v1/temporal/...): attribute history recorded from the change events.

A durable relay subscriber writes one history row per attribute instance a change created, altered or removed;
the routes answer normalized, temporalValues (simplified) and aggregatedValues representations, page with
206 Partial Content and Content-Range, and accept temporal writes directly.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response

from civicmesh.errors import Problem
from civicmesh.events import ENTITY_DELETED, ChangeEvent
from civicmesh.ngsild.context import TermMap
from civicmesh.ngsild.http import body_call, json_response, read_call
from civicmesh.ngsild.model import (
    ATTRIBUTE_TYPES,
    NULL_URI,
    EntityParser,
    check_entity_id,
    check_name,
    is_datetime,
    now_iso,
)
from civicmesh.ngsild.render import View, render_instance
from civicmesh.ngsild.routes import PREFIX, _allow_params, _int, _names, _split, caller_of
from civicmesh.store.history import TIME_COLUMNS, History, HistoryRow

AGGREGATES = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
                       r"(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_READ_PARAMS = {"attrs", "timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "options", "format",
                "aggrMethods", "aggrPeriodDuration", "lang", "datasetId", "local", "pick", "omit"}
_QUERY_PARAMS = _READ_PARAMS | {"id", "idPattern", "type", "q", "georel", "geometry", "coordinates", "geoproperty",
                                "limit", "offset", "count", "scopeQ"}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text or "")
    if not match or text in ("P", "PT") or not any(match.groups()):
        raise Problem("BadRequestData", f"aggrPeriodDuration {text!r} is not an ISO 8601 duration such as PT1H")
    years, months, weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=years * 365 + months * 30 + weeks * 7 + days, hours=hours, minutes=minutes,
                     seconds=seconds)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown_time(row: tuple[Any, ...], timeproperty: str) -> str | None:
    """The time as the writer gave it (observedAt), else the broker's canonical stamp."""
    if timeproperty == "observedAt" and row[8]:
        written = orjson.loads(row[8]).get("observedAt")
        if isinstance(written, str):
            return written
    return row[9]


def _canonical(text: str) -> str:
    return _iso(_parse_time(text))


def _number(inst: dict[str, Any]) -> float | None:
    value = inst.get("value")
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


def _row(attr: str, inst: dict[str, Any], at: str, *, deleted: bool = False) -> HistoryRow:
    observed = inst.get("observedAt")
    return (attr, f"urn:ngsi-ld:Instance:{uuid.uuid4()}", inst.get("datasetId"),
            _canonical(observed) if observed else None, at, at, at if deleted else None,
            None if deleted else _number(inst), None if deleted else orjson.dumps(inst))


class Temporal:
    def __init__(self, platform: Any) -> None:
        self.history = History(platform.store)
        self.broker = platform.extras["broker"]
        self.resolver = platform.extras["contexts"]
        self.ngsi = platform.extras["ngsild"]
        self.page_size = platform.settings.temporal_page_size
        self.max_body = platform.settings.max_body_bytes

    # -- recording ------------------------------------------------------------------------------------------
    async def on_event(self, event: ChangeEvent) -> None:
        if not event.kind.startswith("entity."):
            return
        before, after = event.data.get("before"), event.data.get("after")
        doc = after or before
        if doc is None:
            return
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
        await self.history.add(event.tenant, doc["id"], orjson.dumps(doc["type"]).decode(), doc["createdAt"], rows,
                               deleted_at=at if event.kind == ENTITY_DELETED else None)

    # -- reading --------------------------------------------------------------------------------------------
    def _window(self, p: Any) -> tuple[str, str | None, str | None, str | None, int | None]:
        timeproperty = p.get("timeproperty", "observedAt")
        if timeproperty not in TIME_COLUMNS:
            raise Problem("BadRequestData", f"timeproperty {timeproperty!r} is not one of {', '.join(TIME_COLUMNS)}")
        timerel = p.get("timerel")
        start = end = None
        if timerel is not None:
            if timerel not in ("before", "after", "between"):
                raise Problem("BadRequestData", f"timerel {timerel!r} is not before, after or between")
            if not is_datetime(p.get("timeAt")):
                raise Problem("BadRequestData", "timerel needs timeAt as a DateTime")
            start = _canonical(p["timeAt"])
            if timerel == "between":
                if not is_datetime(p.get("endTimeAt")):
                    raise Problem("BadRequestData", "timerel=between needs endTimeAt as a DateTime")
                end = _canonical(p["endTimeAt"])
                if end <= start:
                    raise Problem("BadRequestData", "endTimeAt must be after timeAt")
        elif p.get("timeAt") or p.get("endTimeAt"):
            raise Problem("BadRequestData", "timeAt and endTimeAt need a timerel")
        last_n = _int(p.get("lastN"), "lastN", 0) or None
        return timeproperty, timerel, start, end, last_n

    def _form(self, p: Any) -> tuple[str, bool, list[str]]:
        options = set(_split(p.get("options")) or []) | set(_split(p.get("format")) or [])
        unknown = options - {"temporalValues", "simplified", "keyValues", "aggregatedValues", "sysAttrs",
                             "normalized", "concise"}
        if unknown:
            raise Problem("InvalidRequest", f"unknown option(s) {', '.join(sorted(unknown))}")
        form = "normalized"
        if "aggregatedValues" in options:
            form = "aggregated"
        elif options & {"temporalValues", "simplified", "keyValues"}:
            form = "simplified"
        methods: list[str] = []
        if form == "aggregated":
            methods = _split(p.get("aggrMethods")) or []
            if not methods or not set(methods) <= set(AGGREGATES):
                raise Problem("BadRequestData", f"aggregatedValues needs aggrMethods from {', '.join(AGGREGATES)}")
        return form, "sysAttrs" in options, methods

    async def _render(self, tenant: str, entity_id: str, types: str, terms: TermMap, p: Any,
                      budget: int | None, visible: set[str] | None = None,
                      ) -> tuple[dict[str, Any], tuple[str, str, str] | None, int]:
        """`visible`: the attributes the gate lets the caller see (None: all)."""
        timeproperty, timerel, start, end, last_n = self._window(p)
        form, sys_attrs, methods = self._form(p)
        attrs = [terms.expand(a) for a in _names(p.get("attrs")) or []] or None
        if visible is not None:
            attrs = [a for a in attrs if a in visible] if attrs else sorted(visible)
        rows = await self.history.rows(tenant, entity_id, attrs, timeproperty, timerel, start, end,
                                       last_n) if attrs is None or attrs else []
        truncated = None
        limit = budget if budget is not None else self.page_size
        if form != "aggregated" and len(rows) > limit:
            ordered = sorted(rows, key=lambda r: r[9] or "", reverse=bool(last_n))[:limit]
            times = [r[9] for r in ordered if r[9]]
            truncated = (min(times), max(times), str(last_n) if last_n else "*")
            if last_n:
                truncated = (max(times), min(times), str(last_n))
            rows = sorted(ordered, key=lambda r: (r[0], r[9] or ""))
        out: dict[str, Any] = {"id": entity_id, "type": _types(orjson.loads(types), terms)}
        by_attr: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_attr.setdefault(row[0], []).append(row)
        view = View(terms, sys_attrs=sys_attrs, lang=p.get("lang"))
        for attr, items in by_attr.items():
            name = terms.compact(attr)
            if form == "aggregated":
                out[name] = _aggregate(items, methods, p.get("aggrPeriodDuration"), start, end)
            elif form == "simplified":
                out[name] = _simplified(items, timeproperty)
            else:
                shown = []
                for row in items:
                    if row[8] is None:
                        inst = {"type": "Property", "value": NULL_URI, "instanceId": row[1], "deletedAt": row[6]}
                    else:
                        inst = render_instance(orjson.loads(row[8]), view)
                        if isinstance(inst, dict):
                            inst["instanceId"] = row[1]
                            if sys_attrs:
                                inst["createdAt"], inst["modifiedAt"] = row[4], row[5]
                    shown.append(inst)
                out[name] = shown[0] if len(shown) == 1 else shown
        return out, truncated, len(rows)

    async def retrieve(self, request: Request, entity_id: str) -> Response:
        _allow_params(request, _READ_PARAMS)
        call = read_call(request, self.resolver, allow_geojson=False)
        check_entity_id(entity_id)
        caller = caller_of(request)
        await self.broker.authorize(caller, call.tenant, "read")
        found = await self.history.entities(call.tenant, [entity_id])
        # EXCHANGE: history is screened like the entity itself (owner, agreements, masked attributes).
        readable = await self.broker.readable(call.tenant, [entity_id], caller, "temporal")
        if entity_id not in readable and (found or await self.broker.store.get(call.tenant, entity_id)):
            raise Problem("Forbidden", f"{entity_id}: no agreement lets this caller read its history",
                          extra={"explain": f"/exchange/explain?entity={entity_id}"})
        if not found:
            raise Problem("ResourceNotFound", f"entity {entity_id} has no history")
        body, truncated, _ = await self._render(call.tenant, entity_id, found[0][1], call.terms,
                                                request.query_params, None, readable[entity_id])
        if truncated:
            return json_response(call, body, status=206,
                                 headers={"Content-Range": f"date-time {truncated[0]}-{truncated[1]}/{truncated[2]}"})
        return json_response(call, body)

    async def query(self, request: Request) -> Response:
        _allow_params(request, _QUERY_PARAMS)
        call = read_call(request, self.resolver, allow_geojson=False)
        return await self._query(request, call, request.query_params)

    async def post_query(self, request: Request) -> Response:
        call, body = await body_call(request, self.resolver, self.max_body)
        if body.get("type") != "Query":
            raise Problem("BadRequestData", 'the body of a query must have "type": "Query"')
        params: dict[str, Any] = dict(request.query_params)
        temporal = body.get("temporalQ") or {}
        for key in ("timerel", "timeAt", "endTimeAt", "timeproperty", "lastN"):
            if key in temporal:
                params[key] = str(temporal[key])
        selectors = body.get("entities") or []
        if selectors:
            params["type"] = ",".join(s["type"] for s in selectors if isinstance(s, dict) and "type" in s)
            ids = [s["id"] for s in selectors if isinstance(s, dict) and "id" in s]
            if ids:
                params["id"] = ",".join(ids)
        if body.get("attrs"):
            params["attrs"] = ",".join(body["attrs"])
        if body.get("q"):
            params["q"] = body["q"]
        return await self._query(request, call, params)

    async def _query(self, request: Request, call: Any, p: Any) -> Response:
        self._window(p)
        self._form(p)  # bad options fail even when nothing matches
        caller = caller_of(request)
        await self.broker.authorize(caller, call.tenant, "query")
        if not any(p.get(k) for k in ("type", "attrs", "id", "idPattern", "q", "georel")):
            raise Problem("BadRequestData", "a temporal query needs type, attrs, id, idPattern, q or a geo-query")
        candidates = await self.history.entities(call.tenant, _split(p.get("id")))
        if p.get("type"):
            wanted = {call.terms.expand(t) for t in re.split(r"[,|;()]", p["type"]) if t}
            candidates = [c for c in candidates if wanted & set(orjson.loads(c[1]))]
        if p.get("idPattern"):
            try:
                pattern = re.compile(p["idPattern"])
            except re.error as exc:
                raise Problem("BadRequestData", f"idPattern is not a valid regular expression: {exc}") from None
            candidates = [c for c in candidates if pattern.search(c[0])]
        if p.get("q") or p.get("georel"):
            query = self.ngsi._build_query(
                call.terms, ids=[c[0] for c in candidates] or None, id_pattern=None, types=None, attrs=None,
                q=p.get("q"), georel=p.get("georel"), geometry=p.get("geometry"), coordinates=p.get("coordinates"),
                geoproperty=p.get("geoproperty"), scope_q=None, limit="1000", offset=None, count=None,
                require_selector=False)
            current = {d["id"] for d in (await self.broker.query(call.tenant, query, caller))[0]}
            candidates = [c for c in candidates if c[0] in current]
        # EXCHANGE: only the entities the caller may read, and of them only the attributes it may see.
        readable = await self.broker.readable(call.tenant, [c[0] for c in candidates], caller, "temporal")
        candidates = [c for c in candidates if c[0] in readable]
        limit, offset = _int(p.get("limit"), "limit", 20), _int(p.get("offset"), "offset", 0)
        page = candidates[offset:offset + limit]
        results, truncated_any = [], None
        budget = self.page_size
        for entity_id, types, _created, _deleted in page:
            body, truncated, used = await self._render(call.tenant, entity_id, types, call.terms, p, max(budget, 1),
                                                       readable[entity_id])
            budget -= used
            truncated_any = truncated_any or truncated
            if (p.get("attrs") or p.get("timerel")) and len(body) <= 2:
                continue  # nothing of it in the attributes or the time window asked for
            results.append(body)
        headers = {}
        if p.get("count") == "true":
            headers["NGSILD-Results-Count"] = str(len(candidates))
        if truncated_any:
            headers["Content-Range"] = f"date-time {truncated_any[0]}-{truncated_any[1]}/{truncated_any[2]}"
            return json_response(call, results, status=206, headers=headers)
        return json_response(call, results, headers=headers)

    # -- writing --------------------------------------------------------------------------------------------
    def _rows_from(self, body: dict[str, Any], terms: TermMap) -> list[HistoryRow]:
        parser = EntityParser(terms)
        rows: list[HistoryRow] = []
        at = now_iso()
        for name, raw in body.items():
            if name in ("id", "type", "@context", "scope", "createdAt", "modifiedAt"):
                continue
            check_name(name)
            # A temporal attribute lists instances over time, so one datasetId may appear many times.
            for item in raw if isinstance(raw, list) else [raw]:
                rows.append(_row(terms.expand(name), parser.instance(name, item), at))
        return rows

    async def create(self, request: Request) -> Response:
        _allow_params(request, set())
        call, body = await body_call(request, self.resolver, self.max_body)
        await self.broker.authorize(caller_of(request), call.tenant, "create")
        entity_id = check_entity_id(body.get("id"))
        if "type" not in body:
            raise Problem("BadRequestData", f"temporal entity {entity_id} has no type")
        types = EntityParser(call.terms).types(body["type"])
        rows = self._rows_from(body, call.terms)
        existed = bool(await self.history.entities(call.tenant, [entity_id]))
        await self.history.add(call.tenant, entity_id, orjson.dumps(types).decode(), now_iso(), rows)
        if existed:
            return Response(status_code=204)
        return Response(status_code=201, headers={"Location": f"{PREFIX}/temporal/entities/{entity_id}"})

    async def add_attrs(self, request: Request, entity_id: str) -> Response:
        _allow_params(request, set())
        call, body = await body_call(request, self.resolver, self.max_body)
        check_entity_id(entity_id)
        await self.broker.authorize(caller_of(request), call.tenant, "update")
        found = await self.history.entities(call.tenant, [entity_id])
        if not found:
            raise Problem("ResourceNotFound", f"entity {entity_id} has no history")
        await self.history.add(call.tenant, entity_id, found[0][1], found[0][2], self._rows_from(body, call.terms))
        return Response(status_code=204)

    async def delete(self, request: Request, entity_id: str) -> Response:
        _allow_params(request, set())
        call = read_call(request, self.resolver, allow_geojson=False)
        check_entity_id(entity_id)
        await self.broker.authorize(caller_of(request), call.tenant, "delete")
        if not await self.history.entities(call.tenant, [entity_id]):
            raise Problem("ResourceNotFound", f"entity {entity_id} has no history")
        await self.history.delete(call.tenant, entity_id)
        return Response(status_code=204)

    async def delete_attr(self, request: Request, entity_id: str, attr: str) -> Response:
        _allow_params(request, {"datasetId", "deleteAll"})
        call = read_call(request, self.resolver, allow_geojson=False)
        check_entity_id(entity_id)
        check_name(attr)
        await self.broker.authorize(caller_of(request), call.tenant, "delete")
        p = request.query_params
        removed = await self.history.delete(call.tenant, entity_id, attr=call.terms.expand(attr),
                                            dataset_id=p.get("datasetId"),
                                            all_datasets=p.get("deleteAll") == "true" or "datasetId" not in p)
        if not removed:
            raise Problem("ResourceNotFound", f"entity {entity_id} has no history of {attr!r}")
        return Response(status_code=204)

    async def modify_instance(self, request: Request, entity_id: str, attr: str, instance_id: str) -> Response:
        _allow_params(request, set())
        call, body = await body_call(request, self.resolver, self.max_body)
        check_entity_id(entity_id)
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
        call = read_call(request, self.resolver, allow_geojson=False)
        check_entity_id(entity_id)
        await self.broker.authorize(caller_of(request), call.tenant, "delete")
        if not await self.history.delete(call.tenant, entity_id, attr=call.terms.expand(attr), instance_id=instance_id):
            raise Problem("ResourceNotFound", f"no instance {instance_id} of {attr!r} in the history of {entity_id}")
        return Response(status_code=204)


def _types(types: list[str], terms: TermMap) -> Any:
    compact = [terms.compact(t) for t in types]
    return compact[0] if len(compact) == 1 else compact


def _simplified(items: list[tuple[Any, ...]], timeproperty: str) -> Any:
    """temporalValues: one object per datasetId, each with [value, time] pairs."""
    by_dataset: dict[Any, list[tuple[Any, ...]]] = {}
    for row in items:
        by_dataset.setdefault(row[2], []).append(row)
    shown = []
    for dataset_id, rows in by_dataset.items():
        first = next((orjson.loads(r[8]) for r in rows if r[8]), {"type": "Property"})
        kind = first.get("type", "Property")
        member = ATTRIBUTE_TYPES.get(kind, "value")
        key = {"object": "objects", "languageMap": "languageMaps"}.get(member, "values")
        values = []
        for row in rows:
            inst = orjson.loads(row[8]) if row[8] else None
            values.append([inst.get(member) if inst else NULL_URI, _shown_time(row, timeproperty)])
        entry: dict[str, Any] = {"type": kind, key: values}
        if dataset_id is not None:
            entry["datasetId"] = dataset_id
        shown.append(entry)
    return shown[0] if len(shown) == 1 else shown


def _aggregate(items: list[tuple[Any, ...]], methods: list[str], period: str | None, start: str | None,
               end: str | None) -> dict[str, Any]:
    stamped = [(_parse_time(r[9]), r[7], r[8]) for r in items if r[9]]
    out: dict[str, Any] = {"type": "Property"}
    if not stamped:
        return {**out, **{m: [] for m in methods}}
    first = _parse_time(start) if start else min(t for t, _, _ in stamped)
    last = _parse_time(end) if end else max(t for t, _, _ in stamped) + timedelta(microseconds=1)
    step = parse_duration(period) if period else (last - first)
    if step.total_seconds() <= 0:
        step = timedelta(seconds=1)
    buckets: dict[int, list[tuple[float | None, Any]]] = {}
    for moment, num, raw in stamped:
        index = int((moment - first) / step)
        buckets.setdefault(index, []).append((num, raw))
    for method in methods:
        series = []
        for index in sorted(buckets):
            values = buckets[index]
            numbers = [v for v, _ in values if v is not None]
            lo = first + index * step
            result: Any
            if method == "totalCount":
                result = len(values)
            elif method == "distinctCount":
                result = len({raw for _, raw in values})
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
            series.append([result, _iso(lo), _iso(lo + step)])
        out[method] = series
    return out


def mount(app: FastAPI, platform: Any) -> None:
    temporal = Temporal(platform)
    platform.relay.subscribe("temporal", temporal.on_event, durable=True)
    router = APIRouter(prefix=PREFIX + "/temporal")
    routes: list[tuple[str, list[str], Callable[..., Any]]] = [
        ("/entities", ["GET"], temporal.query), ("/entities", ["POST"], temporal.create),
        ("/entities/{entity_id}", ["GET"], temporal.retrieve), ("/entities/{entity_id}", ["DELETE"], temporal.delete),
        ("/entities/{entity_id}/attrs", ["POST"], temporal.add_attrs),
        ("/entities/{entity_id}/attrs/{attr}", ["DELETE"], temporal.delete_attr),
        ("/entities/{entity_id}/attrs/{attr}/{instance_id}", ["PATCH"], temporal.modify_instance),
        ("/entities/{entity_id}/attrs/{attr}/{instance_id}", ["DELETE"], temporal.delete_instance),
        ("/entityOperations/query", ["POST"], temporal.post_query),
    ]
    for path, methods, endpoint in routes:
        router.add_api_route(path, endpoint, methods=methods)
        router.add_api_route(path + "/", endpoint, methods=methods, include_in_schema=False)
    app.include_router(router)
