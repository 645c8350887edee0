"""NGSI-LD API routes under /ngsi-ld/v1 (entities, batch operations, discovery, @contexts)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from civicmesh import inputs, regex
from civicmesh.access import (
    ANONYMOUS,
    Caller,
    Rule,
    anonymous_data,
    authenticated,
    platform_admin,
    public,
    when,
)
from civicmesh.errors import Problem
from civicmesh.exchange import limits
from civicmesh.ngsild import geoquery
from civicmesh.ngsild.broker import BatchResult, Broker, UpdateResult
from civicmesh.ngsild.context import (
    CORE_CONTEXT_URL,
    ContextResolver,
    HostedContext,
    TermMap,
    core_context_document,
)
from civicmesh.ngsild.http import (
    GEOJSON,
    JSONLD,
    Call,
    body_call,
    json_response,
    location,
    page_links,
    read_call,
)
from civicmesh.ngsild.linked import Projection, join, order, parse_order_by, parse_projection, selected
from civicmesh.ngsild.model import ENTITY_MEMBERS, EntityParser, check_entity_id, check_name, is_uri, now_iso
from civicmesh.ngsild.render import CONCISE, NORMALIZED, SIMPLIFIED, View, render_entity, to_geojson
from civicmesh.store.base import EntityQuery

PREFIX = "/ngsi-ld/v1"
CONTEXT_KIND = "jsonldContext"


def caller_of(request: Request) -> Caller:
    """Who is asking, as the identity layer put it on the request; anonymous when there is none."""
    return getattr(request.state, "caller", ANONYMOUS)
_CORE_CONTEXT_ID = "ngsi-ld-core-context"


class NgsiLd:
    """Binds the broker to HTTP. One instance per app."""

    def __init__(self, broker: Broker, resolver: ContextResolver, *, max_body: int, max_limit: int,
                 default_limit: int, max_vertices: int = geoquery.MAX_VERTICES) -> None:
        self.broker = broker
        self.max_vertices = max_vertices
        self.resolver = resolver
        self.max_body = max_body
        self.max_limit = max_limit
        self.default_limit = default_limit

    # -- helpers -----------------------------------------------------------------------------------------
    async def _body(self, request: Request, *, merge_patch: bool = False, expect: type = dict,
                    per_item_context: bool = False) -> tuple[Call, Any]:
        return await body_call(request, self.resolver, self.max_body, merge_patch=merge_patch, expect=expect,
                               per_item_context=per_item_context)

    def _presentation(self, request: Request, call: Call) -> Presentation:
        """attrs / pick / omit / format / options / lang / datasetId / join of a read request."""
        params = request.query_params
        form, sys_attrs = _representation(params.get("options"), params.get("format"))
        attrs = _names(params.get("attrs"))
        pick = parse_projection(params["pick"], "pick") if "pick" in params else None
        omit = parse_projection(params["omit"], "omit") if "omit" in params else None
        if attrs is not None and (pick is not None or omit is not None):
            raise Problem("BadRequestData", "attrs cannot be combined with pick or omit")
        if pick is not None and omit is not None:
            both = set(selected(pick, omit=False)[0] | selected(pick, omit=False)[1]) & set(
                selected(omit, omit=True)[0] | selected(omit, omit=True)[1])
            if both:
                raise Problem("BadRequestData", f"{', '.join(sorted(both))} cannot be both picked and omitted")
        if attrs is not None:
            pick = {name: None for name in attrs}
            pick.update({"id": None, "type": None, "scope": None})
        join = params.get("join")
        if join is not None and join not in ("inline", "flat", "@none"):
            raise Problem("BadRequestData", f"join {join!r} is not inline, flat or @none")
        level = _int(params.get("joinLevel"), "joinLevel", 1)
        if level < 1 and join:
            raise Problem("BadRequestData", "joinLevel must be at least 1")
        dataset_ids = None
        if "datasetId" in params:
            dataset_ids = frozenset(None if d == "@none" else d for d in _split(params["datasetId"]) or [])
            for d in dataset_ids:
                if d is not None and not is_uri(d):
                    raise Problem("BadRequestData", f"datasetId {d!r} is not a URI")
        view = View(call.terms, form, sys_attrs, lang=params.get("lang"), dataset_ids=dataset_ids)
        return Presentation(view, pick, omit, None if join == "@none" else join, level)

    def _view_for(self, base: View, pick: Projection | None, omit: Projection | None) -> View:
        terms = base.terms
        attrs = members = None
        if pick is not None:
            names, picked_members = selected(pick, omit=False)
            attrs = frozenset(terms.expand(n) for n in names)
            members = frozenset(picked_members)
        omitted: frozenset[str] = frozenset()
        if omit is not None:
            names, omitted_members = selected(omit, omit=True)
            omitted = frozenset({terms.expand(n) for n in names} | omitted_members)
        return dataclasses.replace(base, attrs=attrs, omit=omitted, pick_members=members)

    async def _shape(self, docs: list[dict[str, Any]], shown: Presentation, call: Call, caller: Caller) -> list[Any]:
        """Render entities for the caller, resolving linked entities when a join was asked for."""
        def render(doc: dict[str, Any], pick: Projection | None, omit: Projection | None) -> dict[str, Any]:
            return render_entity(doc, self._view_for(shown.view, pick, omit))

        roots = [(doc, render(doc, shown.pick, shown.omit)) for doc in docs]
        if not shown.join:
            return [r for _, r in roots]

        async def fetch(ids: list[str]) -> dict[str, dict[str, Any]]:
            found, _ = await self.broker.query(call.tenant, EntityQuery(ids=ids, limit=len(ids)), caller)
            return {d["id"]: d for d in found}

        return await join(roots, mode=shown.join, level=shown.level, simplified=shown.view.form == SIMPLIFIED,
                          compact=call.terms.compact, fetch=fetch, render=render, pick=shown.pick,
                          omit=shown.omit)

    # -- entities ----------------------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        _allow_params(request, {"local"})
        call, body = await self._body(request)
        doc = EntityParser(call.terms).entity(body)
        await self.broker.create(call.tenant, doc, caller_of(request))
        return Response(status_code=201, headers={"Location": location(f"{PREFIX}/entities/{doc['id']}")})

    async def retrieve(self, request: Request, entity_id: str) -> Response:
        _allow_params(request, RETRIEVE_PARAMS)
        call = read_call(request, self.resolver)
        check_entity_id(entity_id)
        shown = self._presentation(request, call)
        caller = caller_of(request)
        doc = await self.broker.retrieve(call.tenant, entity_id, caller)
        if "type" in request.query_params:
            types = {call.terms.expand(t) for t in _split(request.query_params["type"]) or []}
            if not types & set(doc["type"]):
                raise Problem("ResourceNotFound", f"entity {entity_id} has none of the types asked for")
        if call.accept == GEOJSON:
            geometry = call.terms.expand(request.query_params.get("geometryProperty") or "location")
            view = self._view_for(shown.view, shown.pick, shown.omit)
            feature = to_geojson(doc, view, geometry)
            return json_response(call, feature, media=GEOJSON)
        shaped = await self._shape([doc], shown, call, caller)
        body = shaped[0]
        asked = shown.pick is not None or shown.omit is not None
        if asked and not (set(body) - {"@context"}):
            raise Problem("ResourceNotFound", f"entity {entity_id} has none of the members asked for")
        if shown.pick is not None and "pick" not in request.query_params:
            wanted = {call.terms.expand(n) for n in selected(shown.pick, omit=False)[0]}
            if wanted and not wanted & set(doc["attrs"]):
                raise Problem("ResourceNotFound", f"entity {entity_id} has none of the attributes asked for")
        if shown.pick is not None and "pick" in request.query_params and set(body) <= {"@context"}:
            raise Problem("ResourceNotFound", f"entity {entity_id} has none of the members picked")
        return json_response(call, shaped if shown.join == "flat" and len(shaped) > 1 else body)

    async def query(self, request: Request) -> Response:
        _allow_params(request, QUERY_PARAMS)
        call = read_call(request, self.resolver)
        query = self._query_from_params(request, call)
        shown = self._presentation(request, call)
        return await self._answer_query(request, call, query, shown, request.query_params.get("orderBy"))

    async def _answer_query(self, request: Request, call: Call, query: EntityQuery, shown: Presentation,
                            order_by: str | None) -> Response:
        caller = caller_of(request)
        if order_by:
            keys = parse_order_by(order_by)
            wanted = dataclasses.replace(query, limit=self.max_limit * 10, offset=0, count=False)
            everything, _ = await self.broker.query(call.tenant, wanted, caller)
            ordered = order(everything, keys, call.terms.expand, call.terms.compact)
            docs = ordered[query.offset:query.offset + query.limit]
            total: int | None = len(ordered) if query.count else None
        else:
            docs, total = await self.broker.query(call.tenant, query, caller)
        headers: dict[str, str] = {}
        if total is not None:
            headers["NGSILD-Results-Count"] = str(total)
        links = page_links(request, query.offset, query.limit, len(docs), total)
        if call.accept == GEOJSON:
            geometry = call.terms.expand(request.query_params.get("geometryProperty") or "location")
            view = self._view_for(shown.view, shown.pick, shown.omit)
            features = [to_geojson(d, view, geometry) for d in docs]
            response = json_response(call, {"type": "FeatureCollection", "features": features}, headers=headers,
                                     media=GEOJSON)
        else:
            response = json_response(call, await self._shape(docs, shown, call, caller), headers=headers)
        if links:
            existing = response.headers.get("link")
            response.headers["Link"] = f"{existing}, {links}" if existing else links
        return response

    def _query_from_params(self, request: Request, call: Call) -> EntityQuery:
        p = request.query_params
        attrs = _names(p.get("attrs"))
        if attrs and set(attrs) & {"id", "type"}:
            raise Problem("BadRequestData", "attrs lists attribute names; id and type are entity members")
        if "id" in p and not any(k in p for k in ("type", "attrs", "q", "georel", "idPattern", "scopeQ", "local",
                                                   "pick", "omit")):
            raise Problem("BadRequestData", "a query by id alone is not allowed; add type, attrs, q or a geo-query")
        pick = parse_projection(p["pick"], "pick") if "pick" in p else None
        if pick is not None and attrs is None:
            # Picking only attributes selects the entities that have one; picking a member (id) keeps them all.
            picked, members = selected(pick, omit=False)
            attrs = sorted(picked) if picked and not members else None
        return self._build_query(
            call.terms, ids=_split(p.get("id")), id_pattern=p.get("idPattern"), types=p.get("type"),
            attrs=attrs, q=p.get("q"),
            georel=p.get("georel"), geometry=p.get("geometry"), coordinates=p.get("coordinates"),
            geoproperty=p.get("geoproperty"), scope_q=p.get("scopeQ"), limit=p.get("limit"),
            offset=p.get("offset"), count=p.get("count"),
            require_selector=not _flag(p.get("local"), "local") and pick is None)

    def _build_query(self, terms: TermMap, *, ids: list[str] | None, id_pattern: str | None, types: Any,
                     attrs: list[str] | None, q: str | None, georel: str | None, geometry: str | None,
                     coordinates: Any, geoproperty: str | None, scope_q: str | None, limit: Any, offset: Any,
                     count: Any, require_selector: bool) -> EntityQuery:
        from civicmesh.ngsild import geoquery, qlang, typequery

        if require_selector and not any([ids, id_pattern, types, attrs, q, georel, scope_q]):
            raise Problem("BadRequestData", "an entity query needs at least one of id, idPattern, type, attrs, q, "
                          "georel or scopeQ")
        for entity_id in ids or []:
            if not is_uri(entity_id):
                raise Problem("BadRequestData", f"id {entity_id!r} is not a URI")
        if id_pattern is not None:
            _check_regex(id_pattern, "idPattern")
        query = EntityQuery()
        query.ids = ids
        query.id_pattern = id_pattern
        if types:
            expr = typequery.parse_types(types) if isinstance(types, str) else types
            expr = typequery.map_terms(expr, terms.expand)
            query.types = typequery.as_disjunction(expr)
            if query.types is None:
                raise Problem("TooComplexQuery", f"type expression {types!r} expands to too many alternatives")
        if attrs:
            query.attrs_any = [terms.expand(a) for a in attrs if a not in ("id", "type")] or None
        if q:
            query.q = expand_q(qlang.parse_q(q), terms)
        geo = geoquery.parse_geoquery(georel, geometry, coordinates, geoproperty, max_vertices=self.max_vertices)
        if geo is not None:
            query.geo = dataclasses.replace(geo, geoproperty=terms.expand(geo.geoproperty))
        elif geometry or coordinates:
            raise Problem("BadRequestData", "geometry and coordinates need a georel")
        if scope_q:
            query.scopes = _scopes(scope_q)
        query.limit = _int(limit, "limit", self.default_limit)
        query.offset = _int(offset, "offset", 0)
        query.count = _flag(count, "count")
        if query.limit > self.max_limit:
            raise Problem("TooManyResults", f"limit {query.limit} is above this broker's maximum of {self.max_limit}")
        if query.limit == 0 and not query.count:
            raise Problem("BadRequestData", "limit=0 is only allowed together with count=true")
        return query

    async def missing_id(self, request: Request) -> Response:
        raise Problem("BadRequestData", f"{request.method} needs an entity id in the path: /entities/{{entityId}}")

    async def delete(self, request: Request, entity_id: str) -> Response:
        call = read_call(request, self.resolver)
        check_entity_id(entity_id)
        await self.broker.delete(call.tenant, entity_id, caller_of(request))
        return Response(status_code=204)

    async def purge(self, request: Request) -> Response:
        _allow_params(request, PURGE_PARAMS)
        call = read_call(request, self.resolver)
        p = request.query_params
        keep, drop = _names(p.get("keep")), _names(p.get("drop"))
        if keep is not None and drop is not None:
            raise Problem("BadRequestData", "keep and drop exclude each other")
        everything = _flag(p.get("local"), "local") and not any(
            k in p for k in ("id", "idPattern", "type", "q", "georel", "scopeQ"))
        query = self._build_query(call.terms, ids=_split(p.get("id")), id_pattern=p.get("idPattern"),
                                  types=p.get("type"), attrs=None, q=p.get("q"), georel=p.get("georel"),
                                  geometry=p.get("geometry"), coordinates=p.get("coordinates"),
                                  geoproperty=p.get("geoproperty"), scope_q=p.get("scopeQ"),
                                  limit=str(self.max_limit), offset=None, count=None, require_selector=not everything)
        caller = caller_of(request)
        if keep is None and drop is None:
            await self.broker.purge(call.tenant, query, caller)
        else:
            names = {call.terms.expand(n) for n in (keep or drop or [])}
            await self.broker.prune(call.tenant, query, names, keep=keep is not None, caller=caller)
        return Response(status_code=204)

    async def append(self, request: Request, entity_id: str) -> Response:
        _allow_params(request, {"options"})
        call, body = await self._body(request)
        check_entity_id(entity_id)
        parser = EntityParser(call.terms)
        fragment = _attributes_only(body, entity_id)
        attrs = parser.attributes(fragment)
        no_overwrite = "noOverwrite" in (_split(request.query_params.get("options")) or [])
        result = await self.broker.append(call.tenant, entity_id, attrs, no_overwrite=no_overwrite,
                                          caller=caller_of(request), **_scope_and_types(parser, body))
        return self._update_response(call, result)

    async def update_attrs(self, request: Request, entity_id: str) -> Response:
        _allow_params(request, {"options"})
        call, body = await self._body(request, merge_patch=True)
        check_entity_id(entity_id)
        parser = EntityParser(call.terms)
        attrs = parser.attributes(_attributes_only(body, entity_id), allow_null=True)
        result = await self.broker.update_attributes(call.tenant, entity_id, attrs, caller_of(request),
                                                     **_scope_and_types(parser, body))
        return self._update_response(call, result)

    def _update_response(self, call: Call, result: UpdateResult) -> Response:
        if not result.not_updated:
            return Response(status_code=204)
        body = {"updated": result.updated,
                "notUpdated": [{"attributeName": a, "reason": r} for a, r in result.not_updated]}
        return json_response(call, body, status=207, media="application/json")

    async def partial_update(self, request: Request, entity_id: str, attr: str) -> Response:
        call, body = await self._body(request, merge_patch=True)
        check_entity_id(entity_id)
        check_name(attr)
        iri = call.terms.expand(attr)
        fragment = EntityParser(call.terms).fragment(attr, body)
        await self.broker.partial_update(call.tenant, entity_id, iri, attr, fragment, caller_of(request))
        return Response(status_code=204)

    async def replace_attr(self, request: Request, entity_id: str, attr: str) -> Response:
        call, body = await self._body(request)
        check_entity_id(entity_id)
        check_name(attr)
        if attr in ("scope", "type", "id"):
            raise Problem("BadRequestData", f"{attr!r} is an entity member, not an attribute to replace")
        instances = EntityParser(call.terms).instances(attr, _strip_context(body))
        await self.broker.replace_attribute(call.tenant, entity_id, call.terms.expand(attr), attr, instances,
                                            caller_of(request))
        return Response(status_code=204)

    async def delete_attr(self, request: Request, entity_id: str, attr: str) -> Response:
        call = read_call(request, self.resolver)
        check_entity_id(entity_id)
        check_name(attr)
        p = request.query_params
        dataset_id = p.get("datasetId")
        if dataset_id is not None and not is_uri(dataset_id):
            raise Problem("BadRequestData", f"datasetId {dataset_id!r} is not a URI")
        await self.broker.delete_attribute(call.tenant, entity_id, call.terms.expand(attr), attr,
                                           dataset_id=dataset_id, delete_all=_flag(p.get("deleteAll"), "deleteAll"),
                                           caller=caller_of(request))
        return Response(status_code=204)

    async def merge(self, request: Request, entity_id: str) -> Response:
        call, body = await self._body(request, merge_patch=True)
        check_entity_id(entity_id)
        parser = EntityParser(call.terms)
        patch = {"id": entity_id, "type": parser.types(body["type"]) if "type" in body else [],
                 "attrs": parser.attributes(_attributes_only(body, entity_id), allow_null=True)}
        if "scope" in body:
            from civicmesh.ngsild.model import parse_scope
            patch["scope"] = parse_scope(body["scope"])
        await self.broker.merge(call.tenant, entity_id, patch, caller_of(request))
        return Response(status_code=204)

    async def replace(self, request: Request, entity_id: str) -> Response:
        call, body = await self._body(request)
        check_entity_id(entity_id)
        doc = EntityParser(call.terms).entity(body, require_type=False, entity_id=entity_id)
        await self.broker.replace(call.tenant, entity_id, doc, caller_of(request))
        return Response(status_code=204)

    # -- batch operations --------------------------------------------------------------------------------
    async def batch(self, request: Request, operation: str) -> Response:
        if operation == "query":
            return await self.post_query(request)
        if operation not in ("create", "upsert", "update", "delete", "merge"):
            raise Problem("ResourceNotFound", f"there is no batch operation {operation!r}")
        _allow_params(request, {"options", "local"})
        call, body = await self._body(request, expect=list, merge_patch=operation == "merge",
                                      per_item_context=True)
        if not body:
            raise Problem("BadRequestData", "the batch is empty")
        limits.check_batch(caller_of(request), len(body), request.app.state.platform.settings.max_batch_entities)
        options = _split(request.query_params.get("options")) or []
        if operation == "delete":
            bad: BatchResult = BatchResult()
            ids: list[str] = []
            for item in body:
                if isinstance(item, str) and is_uri(item):
                    ids.append(item)
                else:
                    bad.errors.append((str(item), Problem("BadRequestData", f"{item!r} is not an entity id (URI)")))
            result = await self.broker.batch_delete(call.tenant, ids, caller_of(request)) if ids else BatchResult()
            result.errors = bad.errors + result.errors
            return _batch_response(call, result, created_status=None)
        docs = []
        errors: list[tuple[str, Problem]] = []
        for item in body:
            entity_id = item.get("id", "") if isinstance(item, dict) else ""
            try:
                parser = EntityParser(self._item_terms(call, item))
                if operation in ("update", "merge"):
                    check_entity_id(entity_id)
                    doc = {"id": entity_id, "type": parser.types(item["type"]) if item.get("type") else [],
                           "attrs": parser.attributes(_attributes_only(item, entity_id),
                                                      allow_null=operation == "merge")}
                else:
                    doc = parser.entity({k: v for k, v in item.items() if k != "@context"})
                docs.append(doc)
            except Problem as problem:
                errors.append((str(entity_id), problem))
        option = None
        if operation == "upsert":
            option = "update" if "update" in options else "replace"
        elif operation == "update" and "noOverwrite" in options:
            option = "noOverwrite"
        result = (await self.broker.batch(call.tenant, operation, docs, option=option, caller=caller_of(request))
                  if docs else BatchResult())
        result.errors = errors + result.errors
        if operation == "create":
            return _batch_response(call, result, created_status=201)
        if operation == "upsert":
            return _batch_response(call, result, created_status=201, created_only=True, created=result.created)
        return _batch_response(call, result, created_status=None)

    def _item_terms(self, call: Call, item: Any) -> TermMap:
        """The @context of one batch item: its own under JSON-LD, the Link header's under plain JSON."""
        if not isinstance(item, dict):
            raise Problem("BadRequestData", "each batch item must be a JSON object")
        if call.media == JSONLD:
            if "@context" not in item:
                raise Problem("BadRequestData", "with Content-Type application/ld+json each entity needs @context")
            return self.resolver.term_map(item["@context"])
        if "@context" in item:
            raise Problem("BadRequestData", "with Content-Type application/json the @context goes in a Link "
                          "header, not in the entity")
        return call.terms

    async def post_query(self, request: Request) -> Response:
        call, body = await self._body(request)
        if body.get("type") != "Query":
            raise Problem("BadRequestData", "the body of a query must have \"type\": \"Query\"")
        entities = body.get("entities")
        ids: list[str] = []
        id_pattern = None
        types: list[str] = []
        for selector in entities or []:
            if not isinstance(selector, dict):
                raise Problem("BadRequestData", "each item of entities must be an object")
            if "id" in selector:
                ids.append(selector["id"])
            if "idPattern" in selector:
                id_pattern = selector["idPattern"]
            if "type" in selector:
                if not isinstance(selector["type"], str):
                    raise Problem("BadRequestData", "an entity selector's type must be a string")
                types.append(selector["type"] if len(entities or []) == 1 else f"({selector['type']})")
        geo_q = body.get("geoQ") or {}
        if not isinstance(geo_q, dict):
            raise Problem("BadRequestData", "geoQ must be an object")
        attrs = body.get("attrs")
        if attrs is not None and not (isinstance(attrs, list) and all(isinstance(a, str) for a in attrs)):
            raise Problem("BadRequestData", "attrs must be a list of attribute names")
        p = request.query_params
        coordinates = geo_q.get("coordinates")
        if coordinates is not None and not isinstance(coordinates, str):
            coordinates = orjson.dumps(coordinates).decode()
        query = self._build_query(
            call.terms, ids=ids or None, id_pattern=id_pattern, types="|".join(types) if types else None,
            attrs=attrs, q=body.get("q"), georel=geo_q.get("georel"), geometry=geo_q.get("geometry"),
            coordinates=coordinates, geoproperty=geo_q.get("geoproperty"), scope_q=body.get("scopeQ"),
            limit=p.get("limit"), offset=p.get("offset"), count=p.get("count"), require_selector=True)
        shown = self._presentation(request, call)
        if attrs:
            pick: Projection = {a: None for a in [*attrs, "id", "type", "scope"]}
            shown.pick = pick
        if body.get("lang"):
            shown.view = dataclasses.replace(shown.view, lang=body["lang"])
        if body.get("join"):
            shown.join = body["join"] if body["join"] != "@none" else None
            shown.level = _int(body.get("joinLevel"), "joinLevel", 1)
        return await self._answer_query(request, call, query, shown, request.query_params.get("orderBy"))

    # -- discovery ---------------------------------------------------------------------------------------
    async def types(self, request: Request) -> Response:
        _allow_params(request, {"details", "local"})
        call = read_call(request, self.resolver, allow_geojson=False)
        summary = await self.broker.type_summary(call.tenant, caller_of(request))
        details = _flag(request.query_params.get("details"), "details")
        if details:
            attrs = await self.broker.attribute_summary(call.tenant, None, caller_of(request))
            by_type: dict[str, set[str]] = {}
            for attr, _atype, type_iri, _n in attrs:
                by_type.setdefault(type_iri, set()).add(attr)
            body: Any = [{"id": t, "type": "EntityType", "typeName": call.terms.compact(t),
                          "attributeNames": sorted(call.terms.compact(a) for a in by_type.get(t, ()))}
                         for t, _ in summary]
        else:
            body = {"id": _list_id("EntityTypeList", summary), "type": "EntityTypeList",
                    "typeList": [call.terms.compact(t) for t, _ in summary]}
        return json_response(call, body)

    async def type_info(self, request: Request, type_name: str) -> Response:
        call = read_call(request, self.resolver, allow_geojson=False)
        iri = call.terms.expand(type_name)
        counts = dict(await self.broker.type_summary(call.tenant, caller_of(request)))
        if iri not in counts:
            raise Problem("ResourceNotFound", f"no entity has type {type_name!r}")
        attrs = await self.broker.attribute_summary(call.tenant, iri, caller_of(request))
        kinds: dict[str, set[str]] = {}
        for attr, atype, _t, _n in attrs:
            kinds.setdefault(attr, set()).add(atype)
        body = {"id": iri, "type": "EntityTypeInfo", "typeName": call.terms.compact(iri),
                "entityCount": counts[iri],
                "attributeDetails": [{"id": a, "type": "Attribute", "attributeName": call.terms.compact(a),
                                      "attributeTypes": sorted(k)} for a, k in sorted(kinds.items())]}
        return json_response(call, body)

    async def attributes(self, request: Request) -> Response:
        _allow_params(request, {"details", "local"})
        call = read_call(request, self.resolver, allow_geojson=False)
        rows = await self.broker.attribute_summary(call.tenant, None, caller_of(request))
        info: dict[str, dict[str, Any]] = {}
        for attr, atype, type_iri, _n in rows:
            entry = info.setdefault(attr, {"types": set(), "kinds": set()})
            entry["types"].add(type_iri)
            entry["kinds"].add(atype)
        if _flag(request.query_params.get("details"), "details"):
            body: Any = [{"id": a, "type": "Attribute", "attributeName": call.terms.compact(a),
                          "typeNames": sorted(call.terms.compact(t) for t in e["types"])}
                         for a, e in sorted(info.items())]
        else:
            body = {"id": _list_id("AttributeList", list(info)), "type": "AttributeList",
                    "attributeList": sorted(call.terms.compact(a) for a in info)}
        return json_response(call, body)

    async def attribute_info(self, request: Request, attr: str) -> Response:
        call = read_call(request, self.resolver, allow_geojson=False)
        iri = call.terms.expand(attr)
        rows = [r for r in await self.broker.attribute_summary(call.tenant, None, caller_of(request)) if r[0] == iri]
        if not rows:
            raise Problem("ResourceNotFound", f"no entity has attribute {attr!r}")
        _, total = await self.broker.query(call.tenant, EntityQuery(attrs_any=[iri], limit=0, count=True),
                                           caller_of(request))
        count = int(total or 0)
        body = {"id": iri, "type": "Attribute", "attributeName": call.terms.compact(iri),
                "attributeCount": count, "attributeTypes": sorted({r[1] for r in rows}),
                "typeNames": sorted({call.terms.compact(r[2]) for r in rows})}
        return json_response(call, body)

    # -- @contexts ---------------------------------------------------------------------------------------
    async def list_contexts(self, request: Request) -> Response:
        details = _flag(request.query_params.get("details"), "details")
        kind = request.query_params.get("kind")
        base = str(request.base_url).rstrip("/")
        entries = [HostedContext(_CORE_CONTEXT_ID, CORE_CONTEXT_URL, "Cached", None, "")]
        entries += list(self.resolver.hosted.values())
        if kind:
            if kind not in ("Hosted", "Cached", "ImplicitlyCreated"):
                raise Problem("BadRequestData", f"kind {kind!r} is not Hosted, Cached or ImplicitlyCreated")
            entries = [e for e in entries if e.kind == kind]
        if details:
            body: Any = [{"URL": e.url, "localId": e.id, "kind": e.kind, "createdAt": e.created_at or None,
                          "localURL": f"{base}{PREFIX}/jsonldContexts/{e.id}"} for e in entries]
        else:
            body = [e.url for e in entries]
        return Response(orjson.dumps(body), media_type="application/json")

    async def add_context(self, request: Request) -> Response:
        media = (request.headers.get("content-type") or "").split(";")[0].strip()
        if media not in ("application/json", JSONLD):
            raise Problem("UnsupportedMediaType", f"Content-Type {media!r} is not supported; use application/ld+json")
        body = inputs.loads(await request.body())
        if not isinstance(body, dict) or not isinstance(body.get("@context"), (dict, list)):
            raise Problem("BadRequestData", "a hosted context is an object with an @context object or array")
        digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
        base = str(request.base_url).rstrip("/")
        url = f"{base}{PREFIX}/jsonldContexts/{digest}"
        if digest in self.resolver.hosted:
            raise Problem("AlreadyExists", f"this context is already hosted at {url}")
        self.resolver.term_map([body["@context"]])  # fails early on an invalid context
        hosted = HostedContext(digest, url, "Hosted", body, now_iso())
        await self.broker.store.put_document("", CONTEXT_KIND, digest, dataclasses.asdict(hosted), create=True)
        self.resolver.hosted[digest] = hosted
        self.resolver.register_document(url, body)
        return Response(status_code=201, headers={"Location": url})

    async def restore_contexts(self) -> None:
        """Hosted contexts outlive restarts: entities written with them must stay readable."""
        for saved in await self.broker.store.list_documents("", CONTEXT_KIND):
            hosted = HostedContext(**saved)
            self.resolver.hosted[hosted.id] = hosted
            self.resolver.register_document(hosted.url, hosted.body)

    async def get_context(self, request: Request, context_id: str) -> Response:
        if context_id == _CORE_CONTEXT_ID:
            return Response(orjson.dumps(core_context_document()), media_type=JSONLD)
        hosted = self.resolver.hosted.get(context_id)
        if hosted is None:
            raise Problem("ResourceNotFound", f"no context is hosted with id {context_id!r}")
        return Response(orjson.dumps(hosted.body), media_type=JSONLD)

    async def delete_context(self, request: Request, context_id: str) -> Response:
        if context_id == _CORE_CONTEXT_ID:
            raise Problem("BadRequestData", "the core context cannot be deleted")
        hosted = self.resolver.hosted.get(context_id)
        if hosted is None or hosted.kind != "Hosted" or context_id == "demo-city":
            raise Problem("ResourceNotFound", f"no deletable context is hosted with id {context_id!r}")
        await self.broker.store.delete_document("", CONTEXT_KIND, context_id)
        del self.resolver.hosted[context_id]
        self.resolver.forget_document(hosted.url)
        return Response(status_code=204)


# -- request helpers ------------------------------------------------------------------------------------------
def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _names(value: str | None) -> list[str] | None:
    names = _split(value)
    if names is None:
        return None
    for name in names:
        check_name(name)
    return names


# The largest count a parameter (offset, limit, lastN) may give: more than any page or history the broker holds,
# and an integer both engines bind (an offset of 2^63 was an OverflowError, a 500: issue 13, finding 13).
MAX_COUNT = 2**31 - 1


def _int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, str) and len(value) > 32:  # int() of a huge digit string is quadratic
        raise Problem("BadRequestData", f"{name} must be a whole number from 0 to {MAX_COUNT}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Problem("BadRequestData", f"{name} must be a whole number, not {value!r}") from None
    if number < 0:
        raise Problem("BadRequestData", f"{name} must not be negative")
    if number > MAX_COUNT:
        raise Problem("BadRequestData", f"{name} must be at most {MAX_COUNT}, not {number}")
    return number


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value in ("true", "false"):
        return value == "true"
    raise Problem("BadRequestData", f"{name} must be true or false, not {value!r}")


def _representation(options: str | None, fmt: str | None) -> tuple[str, bool]:
    opts = set(_split(options) or [])
    known = {"keyValues", "simplified", "concise", "normalized", "sysAttrs", "noOverwrite", "replace", "update"}
    unknown = opts - known
    if unknown:
        raise Problem("InvalidRequest", f"unknown option(s) {', '.join(sorted(unknown))}")
    form = NORMALIZED
    if fmt is not None:
        forms = {"keyValues": SIMPLIFIED, "simplified": SIMPLIFIED, "concise": CONCISE, "normalized": NORMALIZED}
        if fmt not in forms:
            raise Problem("InvalidRequest", f"format {fmt!r} is not normalized, concise or simplified")
        form = forms[fmt]
    elif opts & {"keyValues", "simplified"}:
        if "concise" in opts:
            raise Problem("BadRequestData", "options keyValues and concise exclude each other")
        form = SIMPLIFIED
    elif "concise" in opts:
        form = CONCISE
    return form, "sysAttrs" in opts


def _check_regex(pattern: str, name: str) -> None:
    if not isinstance(pattern, str):
        raise Problem("BadRequestData", f"{name} must be a string")
    regex.compile_pattern(pattern, name)


def _scopes(text: str) -> list[list[str]]:
    """scopeQ (`,` OR, `;` AND, `+` one level, `#` any depth) as DNF of regexes over the stored `|`-joined scopes."""
    alternatives = []
    for group in text.split(","):
        terms = []
        for term in group.strip().strip("()").split(";"):
            term = term.strip().strip("()")
            if not re.fullmatch(r"(/([^/#+\s|]+|\+))*(/#)?", term) or not term:
                raise Problem("BadRequestData", f"scopeQ term {term!r} is not a scope path like /A/+/C or /A/#")
            pattern = ""
            for segment in term.strip("/").split("/"):
                if segment == "#":
                    pattern += "(/[^|]*)?"
                elif segment == "+":
                    pattern += "/[^/|]+"
                else:
                    pattern += "/" + re.escape(segment)
            if term == "/#":
                pattern = "/[^|]*"
            terms.append(r"\|" + pattern + r"(\||$)")
        alternatives.append(terms)
    return alternatives


def _strip_context(body: Any) -> Any:
    if isinstance(body, dict) and "@context" in body:
        return {k: v for k, v in body.items() if k != "@context"}
    return body


def _attributes_only(body: dict[str, Any], entity_id: str) -> dict[str, Any]:
    raw_id = body.get("id")
    if raw_id is not None and raw_id != entity_id:
        raise Problem("BadRequestData", f"the body's id {raw_id!r} differs from the entity id {entity_id!r}")
    return {k: v for k, v in body.items() if k not in ENTITY_MEMBERS}


def _scope_and_types(parser: EntityParser, body: dict[str, Any]) -> dict[str, Any]:
    from civicmesh.ngsild.model import parse_scope

    extra: dict[str, Any] = {}
    if "scope" in body:
        extra["scope"] = parse_scope(body["scope"])
    if "type" in body:
        extra["types"] = parser.types(body["type"])
    return extra


def _allow_params(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise Problem("InvalidRequest", f"unknown query parameter(s) {', '.join(unknown)} for "
                      f"{request.method} {request.url.path}")


_READ = {"attrs", "pick", "omit", "options", "format", "lang", "geometryProperty", "datasetId", "join",
         "joinLevel", "local", "containedBy", "entityMap", "expandValues", "csf"}
RETRIEVE_PARAMS = _READ | {"type"}
QUERY_PARAMS = _READ | {"id", "idPattern", "type", "q", "georel", "geometry", "coordinates", "geoproperty",
                        "scopeQ", "limit", "offset", "count", "orderBy", "collect"}
PURGE_PARAMS = {"id", "idPattern", "type", "q", "georel", "geometry", "coordinates", "geoproperty", "scopeQ",
                "keep", "drop", "local"}


@dataclasses.dataclass
class Presentation:
    view: View
    pick: Projection | None
    omit: Projection | None
    join: str | None
    level: int


def _list_id(kind: str, items: Any) -> str:
    digest = hashlib.sha1(orjson.dumps(sorted(str(i) for i in items))).hexdigest()[:16]
    return f"urn:ngsi-ld:{kind}:{digest}"


def _batch_response(call: Call, result: BatchResult, *, created_status: int | None,
                    created_only: bool = False, created: list[str] | None = None) -> Response:
    if result.errors:
        body = {"success": result.success,
                "errors": [{"entityId": entity_id, "error": problem.to_dict()} for entity_id, problem in result.errors]}
        return Response(orjson.dumps(body), status_code=207, media_type="application/json")
    if created_status is None:
        return Response(status_code=204)
    ids = created if created_only and created is not None else result.success
    if created_only and created is not None and not created:
        return Response(status_code=204)
    return Response(orjson.dumps(ids), status_code=created_status, media_type="application/json")


def expand_q(expr: Any, terms: TermMap) -> Any:
    """Expand the attribute and sub-attribute names of a parsed q expression."""
    from civicmesh.ngsild import qlang

    return qlang.map_terms(expr, terms.expand)


def _batch_query(request: Request) -> bool:
    return request.path_params.get("operation") == "query"


def router(ngsi: NgsiLd) -> APIRouter:
    """Every /ngsi-ld/v1 route of entities, types, attributes, batch operations and hosted contexts."""
    router = APIRouter(prefix=PREFIX)
    # Reads of city data are screened per entity by the gate (public open data for anonymous callers); writes need
    # a caller (the gate decides which); what is not yet screened per organization is a platform admin's.
    read, write, admin = anonymous_data, authenticated, platform_admin
    batch = when(_batch_query, anonymous_data, authenticated)

    def route(path: str, methods: list[str], endpoint: Any, rule: Rule) -> None:
        router.add_api_route(path, endpoint, methods=methods, include_in_schema=True, dependencies=[rule.depends()])
        router.add_api_route(path + "/", endpoint, methods=methods, include_in_schema=False,
                             dependencies=[rule.depends()])

    route("/entities", ["POST"], ngsi.create, write)
    route("/entities", ["GET"], ngsi.query, read)
    route("/entities", ["DELETE"], ngsi.purge, write)
    route("/entities", ["PATCH", "PUT"], ngsi.missing_id, write)
    route("/entities/{entity_id:path}/attrs/{attr}", ["PATCH"], ngsi.partial_update, write)
    route("/entities/{entity_id:path}/attrs/{attr}", ["PUT"], ngsi.replace_attr, write)
    route("/entities/{entity_id:path}/attrs/{attr}", ["DELETE"], ngsi.delete_attr, write)
    route("/entities/{entity_id:path}/attrs", ["POST"], ngsi.append, write)
    route("/entities/{entity_id:path}/attrs", ["PATCH"], ngsi.update_attrs, write)
    route("/entities/{entity_id}", ["GET"], ngsi.retrieve, read)
    route("/entities/{entity_id}", ["DELETE"], ngsi.delete, write)
    route("/entities/{entity_id}", ["PATCH"], ngsi.merge, write)
    route("/entities/{entity_id}", ["PUT"], ngsi.replace, write)
    route("/entityOperations/{operation}", ["POST"], ngsi.batch, batch)
    route("/types", ["GET"], ngsi.types, admin)
    route("/types/{type_name:path}", ["GET"], ngsi.type_info, admin)
    route("/attributes", ["GET"], ngsi.attributes, admin)
    route("/attributes/{attr:path}", ["GET"], ngsi.attribute_info, admin)
    route("/jsonldContexts", ["GET"], ngsi.list_contexts, public)
    route("/jsonldContexts", ["POST"], ngsi.add_context, admin)
    route("/jsonldContexts/{context_id}", ["GET"], ngsi.get_context, public)
    route("/jsonldContexts/{context_id}", ["DELETE"], ngsi.delete_context, admin)
    return router
