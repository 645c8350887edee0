"""The HTTP edge of NGSI-LD: media types, @context from Link header or body, tenants, bodies, responses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response

from civicmesh.errors import Problem
from civicmesh.inputs import check_json
from civicmesh.ngsild.context import CORE_CONTEXT_URL, ContextResolver, TermMap
from civicmesh.store.base import DEFAULT_TENANT

JSON = "application/json"
JSONLD = "application/ld+json"
GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"

_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+)*)')
_TENANT = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")


@dataclass
class Call:
    """What a request says about itself: tenant, @context, wanted media type."""

    tenant: str
    terms: TermMap
    context: Any  # what to echo: a URL, or the request's inline @context
    accept: str
    media: str = JSON  # the request body's media type


def tenant_of(request: Request) -> str:
    tenant = request.headers.get("ngsild-tenant")
    if tenant is None or tenant == "":
        return DEFAULT_TENANT
    if not _TENANT.match(tenant):
        raise Problem("BadRequestData", f"tenant name {tenant!r} may use only letters, digits, '_', '-' and '.'")
    return tenant


def link_context(request: Request) -> str | None:
    header = request.headers.get("link")
    if not header:
        return None
    for match in _LINK.finditer(header):
        url, params = match.group(1), match.group(2)
        if CONTEXT_REL in params:
            return url.strip()
    return None


def negotiate(request: Request, *, allow_geojson: bool = True) -> str:
    header = request.headers.get("accept")
    if not header:
        return JSON
    best: tuple[float, str] | None = None
    for part in header.split(","):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        quality = 1.0
        for p in pieces[1:]:
            if p.startswith("q="):
                try:
                    quality = float(p[2:])
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if media in ("*/*", "application/*", JSON):
            choice = JSON
        elif media == JSONLD:
            choice = JSONLD
        elif media == GEOJSON and allow_geojson:
            choice = GEOJSON
        else:
            continue
        if best is None or quality > best[0]:
            best = (quality, choice)
    if best is None:
        raise Problem("NotAcceptable", f"Accept {header!r} allows none of {JSON}, {JSONLD}"
                      + (f", {GEOJSON}" if allow_geojson else ""))
    return best[1]


def read_call(request: Request, resolver: ContextResolver, *, allow_geojson: bool = True) -> Call:
    """For requests without a body: context from the Link header only."""
    url = link_context(request)
    terms = resolver.term_map(url) if url else resolver.core
    return Call(tenant_of(request), terms, url or CORE_CONTEXT_URL, negotiate(request, allow_geojson=allow_geojson))


def location(path: str) -> str:
    """A Location header value: non-ASCII characters of a user-chosen id percent-encoded (a header is Latin-1;
    an emoji in an entity id was a 500 after the entity had been written)."""
    return "".join(c if 0x20 < ord(c) < 0x7F else quote(c) for c in path)


async def body_call(request: Request, resolver: ContextResolver, max_bytes: int, *,
                    merge_patch: bool = False, expect: type = dict,
                    per_item_context: bool = False) -> tuple[Call, Any]:
    """For requests with a body: check the media type, parse JSON, and find the @context (Link XOR body)."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    allowed = {JSON, JSONLD} | ({MERGE_PATCH} if merge_patch else set())
    if media not in allowed:
        raise Problem("UnsupportedMediaType",
                      f"Content-Type {media or '(none)'!r} is not supported here; use {' or '.join(sorted(allowed))}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise Problem("PayloadTooLarge", f"the body has {declared} bytes; the limit is {max_bytes}")
    raw = await request.body()
    if len(raw) > max_bytes:
        raise Problem("PayloadTooLarge", f"the body has {len(raw)} bytes; the limit is {max_bytes}")
    if not raw.strip():
        raise Problem("InvalidRequest", "the request body is empty")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem("InvalidRequest", f"the body is not valid JSON: {exc}") from exc
    check_json(raw, body)
    if not isinstance(body, expect):
        wanted = "a JSON object" if expect is dict else "a JSON array"
        # A single-entity body that is an array is a malformed request; a batch that is no array is bad data.
        raise Problem("InvalidRequest" if expect is dict else "BadRequestData", f"the body must be {wanted}")
    link = link_context(request)
    if per_item_context:
        # Batches: each entity brings (or lacks) its own @context; bad ones fail alone, in the 207.
        if media == JSONLD and link:
            raise Problem("BadRequestData", "with Content-Type application/ld+json the @context belongs in the "
                          "body, not in a Link header")
        terms = resolver.term_map(link) if link else resolver.core
        return Call(tenant_of(request), terms, link or CORE_CONTEXT_URL, negotiate(request), media), body
    items = body if isinstance(body, list) else [body]
    inline = [i.get("@context") for i in items if isinstance(i, dict) and "@context" in i]
    if media == JSONLD:
        if link:
            raise Problem("BadRequestData", "with Content-Type application/ld+json the @context belongs in the "
                          "body, not in a Link header")
        if len(inline) != len(items):
            raise Problem("BadRequestData", "with Content-Type application/ld+json every body object needs an "
                          "@context member")
        context: Any = inline[0]
    else:
        if inline:
            raise Problem("BadRequestData", "with Content-Type application/json the @context goes in a Link "
                          "header, not in the body (or send application/ld+json)")
        context = link
    terms = resolver.term_map(context) if context else resolver.core
    call = Call(tenant_of(request), terms, context or CORE_CONTEXT_URL, negotiate(request), media)
    return call, body


def json_response(call: Call, body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  media: str | None = None) -> Response:
    media = media or call.accept
    out_headers = dict(headers or {})
    if media in (JSONLD, GEOJSON):
        if isinstance(body, dict):
            body = {**body, "@context": call.context}
        elif isinstance(body, list):
            body = [{**item, "@context": call.context} if isinstance(item, dict) else item for item in body]
    if media != JSONLD:
        url = call.context if isinstance(call.context, str) else CORE_CONTEXT_URL
        out_headers["Link"] = f'<{url}>; rel="{CONTEXT_REL}"; type="{JSONLD}"'
    return Response(orjson.dumps(body), status_code=status, media_type=media, headers=out_headers)


def page_links(request: Request, offset: int, limit: int, returned: int, total: int | None) -> str | None:
    """Link header values for the previous and next page (RFC 8288), on the canonical path without a trailing
    slash and with limit before offset, the form clients (and the ETSI suite) compare literally."""
    links = []
    params = {k: v for k, v in request.query_params.items() if k not in ("limit", "offset")}
    base = request.url.path.rstrip("/") or "/"
    if offset > 0:
        prev = {**params, "limit": str(limit), "offset": str(max(0, offset - limit))}
        links.append(f'<{base}?{urlencode(prev)}>;rel="prev";type="application/ld+json"')
    more = (total is not None and offset + returned < total) or (total is None and returned == limit and limit > 0)
    if more:
        nxt = {**params, "limit": str(limit), "offset": str(offset + limit)}
        links.append(f'<{base}?{urlencode(nxt)}>;rel="next";type="application/ld+json"')
    return ", ".join(links) or None
