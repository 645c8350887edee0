"""Context-source registrations (/ngsi-ld/v1/csourceRegistrations): a registry, kept per tenant.

The broker records and answers registrations; it does not forward queries to the registered sources (federation
is not built).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from civicmesh import endpoints
from civicmesh.access import platform_admin
from civicmesh.errors import Problem
from civicmesh.ngsild.context import TermMap
from civicmesh.ngsild.http import body_call, json_response, location, read_call
from civicmesh.ngsild.model import check_name, is_datetime, is_uri, now_iso, validate_geometry
from civicmesh.ngsild.routes import PREFIX, _allow_params, _flag, _int, _split, caller_of
from civicmesh.platform import Platform, Room

KIND = "csourceRegistration"
MODES = {"inclusive", "exclusive", "redirect", "auxiliary"}
_LIST_PARAMS = {"id", "type", "idPattern", "attrs", "q", "csf", "georel", "geometry", "coordinates", "geoproperty",
                "timeproperty", "timerel", "timeAt", "endTimeAt", "geometryProperty", "lang", "scopeQ", "limit",
                "offset", "count", "options", "format"}


def _expand_names(values: Any, terms: TermMap, what: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise Problem("BadRequestData", f"{what} must be a list of names")
    for v in values:
        check_name(v, what)
    return [terms.expand(v) for v in values]


def parse_registration(body: dict[str, Any], terms: TermMap, *, partial: bool = False) -> dict[str, Any]:
    """Validate a registration and expand its type and attribute names."""
    reg: dict[str, Any] = {}
    if not partial:
        if body.get("type") != "ContextSourceRegistration":
            raise Problem("BadRequestData", 'a registration needs "type": "ContextSourceRegistration"')
        reg_id = body.get("id", f"urn:ngsi-ld:ContextSourceRegistration:{uuid.uuid4()}")
        if not is_uri(reg_id):
            raise Problem("BadRequestData", f"registration id {reg_id!r} is not a URI")
        reg["id"] = reg_id
        reg["type"] = "ContextSourceRegistration"
        for required in ("information", "endpoint"):
            if required not in body:
                raise Problem("BadRequestData", f"a registration needs {required!r}")
    for key, value in body.items():
        if key in ("id", "type", "@context"):
            continue
        if key == "information":
            if not isinstance(value, list) or not value:
                raise Problem("BadRequestData", "information must be a non-empty list of RegistrationInfo")
            reg[key] = [_information(item, terms) for item in value]
        elif key == "endpoint":
            if not isinstance(value, str) or not is_uri(value):
                raise Problem("BadRequestData", f"endpoint {value!r} is not a URI")
            reg[key] = value
        elif key in ("expiresAt",):
            if not is_datetime(value):
                raise Problem("BadRequestData", f"{key} must be a DateTime")
            reg[key] = value
        elif key in ("location", "observationSpace", "operationSpace"):
            reg[key] = validate_geometry(value, key)
        elif key == "mode":
            if value not in MODES:
                raise Problem("BadRequestData", f"mode {value!r} is not one of {', '.join(sorted(MODES))}")
            reg[key] = value
        else:
            reg[key] = value
    return reg


def _information(item: Any, terms: TermMap) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise Problem("BadRequestData", "each information item must be an object")
    info: dict[str, Any] = {}
    if "entities" in item:
        entities = item["entities"]
        if not isinstance(entities, list) or not entities:
            raise Problem("BadRequestData", "information.entities must be a non-empty list")
        info["entities"] = []
        for selector in entities:
            if not isinstance(selector, dict) or not isinstance(selector.get("type"), str):
                raise Problem("BadRequestData", "each entity selector needs a type")
            if "id" in selector and not is_uri(selector["id"]):
                raise Problem("BadRequestData", f"entity selector id {selector['id']!r} is not a URI")
            info["entities"].append({**selector, "type": terms.expand(selector["type"])})
    for names in ("propertyNames", "relationshipNames"):
        if names in item:
            info[names] = _expand_names(item[names], terms, names)
    if not info:
        raise Problem("BadRequestData", "an information item needs entities, propertyNames or relationshipNames")
    return info


def render_registration(reg: dict[str, Any], terms: TermMap, *, sys_attrs: bool) -> dict[str, Any]:
    out = {k: v for k, v in reg.items() if sys_attrs or k not in ("createdAt", "modifiedAt")}
    out["information"] = [
        {**info,
         **({"entities": [{**e, "type": terms.compact(e["type"])} for e in info["entities"]]}
            if "entities" in info else {}),
         **{names: [terms.compact(n) for n in info[names]] for names in ("propertyNames", "relationshipNames")
            if names in info}}
        for info in reg.get("information", [])]
    return out


def _matches(reg: dict[str, Any], ids: list[str] | None, types: set[str] | None, attrs: set[str] | None) -> bool:
    infos = reg.get("information", [])
    if types is not None and not any(e["type"] in types for i in infos for e in i.get("entities", [])):
        return False
    if ids is not None and not any(e.get("id") in ids for i in infos for e in i.get("entities", [])):
        return False
    if attrs is not None and not any(
            attrs & set(i.get("propertyNames", []) + i.get("relationshipNames", [])) for i in infos):
        return False
    return True


def build(platform: Platform) -> Room:
    """Serve /csourceRegistrations (context-source registrations, stored as documents)."""
    # Registrations are not yet screened per organization, so only a platform admin may use them.
    router = APIRouter(prefix=PREFIX, dependencies=[platform_admin.depends()])
    store = platform.store
    resolver = platform.contexts
    broker = platform.broker
    max_body = platform.settings.max_body_bytes

    async def create(request: Request) -> Response:
        _allow_params(request, set())
        call, body = await body_call(request, resolver, max_body)
        await broker.authorize(caller_of(request), call.tenant, "create")
        reg = parse_registration(body, call.terms)
        endpoints.check_uri(reg["endpoint"], platform.settings.endpoint_allow)
        reg["createdAt"] = reg["modifiedAt"] = now_iso()
        if not await store.put_document(call.tenant, KIND, reg["id"], reg, create=True):
            raise Problem("AlreadyExists", f"registration {reg['id']} already exists")
        return Response(status_code=201, headers={"Location": location(f"{PREFIX}/csourceRegistrations/{reg['id']}")})

    async def query(request: Request) -> Response:
        _allow_params(request, _LIST_PARAMS)
        call = read_call(request, resolver, allow_geojson=False)
        await broker.authorize(caller_of(request), call.tenant, "query")
        p = request.query_params
        ids = _split(p.get("id"))
        types = {call.terms.expand(t) for t in _split(p.get("type")) or []} or None
        attrs = {call.terms.expand(a) for a in _split(p.get("attrs")) or []} or None
        limit, offset = _int(p.get("limit"), "limit", 20), _int(p.get("offset"), "offset", 0)
        found = [r for r in await store.list_documents(call.tenant, KIND) if _matches(r, ids, types, attrs)]
        sys_attrs = "sysAttrs" in (_split(p.get("options")) or [])
        headers = {"NGSILD-Results-Count": str(len(found))} if _flag(p.get("count"), "count") else {}
        page = [render_registration(r, call.terms, sys_attrs=sys_attrs) for r in found[offset:offset + limit]]
        return json_response(call, page, headers=headers)

    async def retrieve(request: Request, reg_id: str) -> Response:
        _allow_params(request, {"options", "format", "lang"})
        call = read_call(request, resolver, allow_geojson=False)
        await broker.authorize(caller_of(request), call.tenant, "read")
        reg = await _existing(call.tenant, reg_id)
        sys_attrs = "sysAttrs" in (_split(request.query_params.get("options")) or [])
        return json_response(call, render_registration(reg, call.terms, sys_attrs=sys_attrs))

    async def update(request: Request, reg_id: str) -> Response:
        _allow_params(request, set())
        call, body = await body_call(request, resolver, max_body, merge_patch=True)
        await broker.authorize(caller_of(request), call.tenant, "update")
        reg = await _existing(call.tenant, reg_id)
        reg.update(parse_registration(body, call.terms, partial=True))
        endpoints.check_uri(reg["endpoint"], platform.settings.endpoint_allow)
        reg["modifiedAt"] = now_iso()
        await store.put_document(call.tenant, KIND, reg_id, reg, create=False)
        return Response(status_code=204)

    async def delete(request: Request, reg_id: str) -> Response:
        call = read_call(request, resolver, allow_geojson=False)
        await broker.authorize(caller_of(request), call.tenant, "delete")
        if not is_uri(reg_id):
            raise Problem("BadRequestData", f"registration id {reg_id!r} is not a URI")
        if not await store.delete_document(call.tenant, KIND, reg_id):
            raise Problem("ResourceNotFound", f"registration {reg_id} does not exist")
        return Response(status_code=204)

    async def _existing(tenant: str, reg_id: str) -> dict[str, Any]:
        if not is_uri(reg_id):
            raise Problem("BadRequestData", f"registration id {reg_id!r} is not a URI")
        reg = await store.get_document(tenant, KIND, reg_id)
        if reg is None:
            raise Problem("ResourceNotFound", f"registration {reg_id} does not exist")
        return reg

    routes: list[tuple[str, list[str], Callable[..., Any]]] = [
        ("/csourceRegistrations", ["POST"], create), ("/csourceRegistrations", ["GET"], query),
        ("/csourceRegistrations/{reg_id}", ["GET"], retrieve), ("/csourceRegistrations/{reg_id}", ["PATCH"], update),
        ("/csourceRegistrations/{reg_id}", ["DELETE"], delete)]
    for path, methods, endpoint in routes:
        router.add_api_route(path, endpoint, methods=methods)
        router.add_api_route(path + "/", endpoint, methods=methods, include_in_schema=False)
    return Room("registrations", routers=[router])
