"""The /ngsi-ld/v1/subscriptions endpoints: validate, create, list, read, patch and delete subscriptions.

A subscription is a standing query: any organization may subscribe, and each notification is screened by the gate
for the organization that subscribed, exactly like its queries. A caller that sees everything (a platform admin,
or any caller with authentication off) subscribes unscreened and sees every subscription.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse

from starlette.requests import Request
from starlette.responses import Response

from civicmesh import endpoints
from civicmesh.access import Caller
from civicmesh.errors import Problem
from civicmesh.exchange import limits
from civicmesh.ngsild import geoquery, qlang, typequery
from civicmesh.ngsild.context import ContextResolver, TermMap
from civicmesh.ngsild.http import JSONLD, body_call, json_response, location, page_links, read_call
from civicmesh.ngsild.linked import selected
from civicmesh.ngsild.model import check_name, is_datetime, is_uri, now_iso
from civicmesh.ngsild.routes import PREFIX, _allow_params, _check_regex, _flag, _int, caller_of
from civicmesh.ngsild.subscriptions.book import Book
from civicmesh.ngsild.subscriptions.delivery import _status_change
from civicmesh.ngsild.subscriptions.matcher import DEFAULT_TRIGGERS, KIND, TRIGGERS, status_of
from civicmesh.ngsild.subscriptions.notices import FORMATS, NOTIFICATION_STATUS, _projection

STATUS_FIELDS = ("status",)
REQUIRED_MEMBERS = frozenset({"notification", "@context"})
Unsettled = dict[tuple[str, str], tuple[int, int, str]]


def parse_subscription(body: dict[str, Any], terms: TermMap, *, partial: bool = False,
                       resolver: ContextResolver | None = None) -> dict[str, Any]:
    """Validate a subscription (or, with partial, the members of a PATCH); raise BadRequestData otherwise."""
    sub: dict[str, Any] = {}
    if not partial:
        if body.get("type") != "Subscription":
            raise Problem("BadRequestData", 'a subscription needs "type": "Subscription"')
        sub_id = body.get("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
        if not is_uri(sub_id):
            raise Problem("BadRequestData", f"subscription id {sub_id!r} is not a URI")
        sub["id"], sub["type"] = sub_id, "Subscription"
        if "notification" not in body:
            raise Problem("BadRequestData", "a subscription needs a notification member")
        if not any(k in body for k in ("entities", "watchedAttributes")):
            raise Problem("BadRequestData", "a subscription needs entities or watchedAttributes")
    for key, value in body.items():
        if key in ("id", "type", "@context") or key in STATUS_FIELDS:
            continue
        if key == "entities":
            if not isinstance(value, list) or not value:
                raise Problem("BadRequestData", "entities must be a non-empty list of {id|idPattern, type}")
            for selector in value:
                if not isinstance(selector, dict) or not isinstance(selector.get("type"), str):
                    raise Problem("BadRequestData", "each entities item needs a type")
                # The type may be a selection expression (clause 4.17), e.g. "(Building|Tower)".
                for name in typequery.type_names(typequery.parse_types(selector["type"])):
                    check_name(name, "entity type")
                if "id" in selector and not is_uri(selector["id"]):
                    raise Problem("BadRequestData", f"entities id {selector['id']!r} is not a URI")
                if "idPattern" in selector:
                    if not isinstance(selector["idPattern"], str):
                        raise Problem("BadRequestData", "idPattern must be a string")
                    _check_regex(selector["idPattern"], "idPattern")
        elif key in ("watchedAttributes",):
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise Problem("BadRequestData", "watchedAttributes must be a non-empty list of attribute names")
            for name in value:
                check_name(name)
        elif key == "q":
            if not isinstance(value, str):
                raise Problem("BadRequestData", "q must be a string")
            qlang.parse_q(unquote(value))  # payloads often carry q URL-encoded, as in a query string
        elif key == "geoQ":
            geoquery.parse_geoq_object(value)
        elif key == "notificationTrigger":
            if not isinstance(value, list) or not value or not set(value) <= TRIGGERS:
                raise Problem("BadRequestData", f"notificationTrigger must list some of {', '.join(sorted(TRIGGERS))}")
        elif key in ("expiresAt",):
            if not is_datetime(value):
                raise Problem("BadRequestData", f"{key} must be a DateTime")
            if value.replace("Z", "") < now_iso().replace("Z", ""):
                raise Problem("BadRequestData", f"expiresAt {value} is in the past")
        elif key == "jsonldContext":
            if not isinstance(value, str) or not is_uri(value):
                raise Problem("BadRequestData", f"jsonldContext {value!r} is not a URI")
            if resolver is not None:
                resolver.term_map(value)  # 503 LdContextNotAvailable when it cannot be had
        elif key in ("throttling", "timeInterval"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise Problem("BadRequestData", f"{key} must be a positive number of seconds")
        elif key == "datasetId":
            if not isinstance(value, list) or not value or not all(
                    isinstance(d, str) and (d == "@none" or is_uri(d)) for d in value):
                raise Problem("BadRequestData", "datasetId must be a non-empty list of URIs (or @none)")
        elif key == "isActive":
            if not isinstance(value, bool):
                raise Problem("BadRequestData", "isActive must be true or false")
        elif key == "notification":
            _check_notification(value)
        sub[key] = value
    if "throttling" in sub and "timeInterval" in sub:
        raise Problem("BadRequestData", "throttling and timeInterval exclude each other")
    return sub


def _check_notification(value: Any) -> None:
    if not isinstance(value, dict):
        raise Problem("BadRequestData", "notification must be an object")
    endpoint = value.get("endpoint")
    if not isinstance(endpoint, dict) or not isinstance(endpoint.get("uri"), str):
        raise Problem("BadRequestData", "notification.endpoint.uri is required")
    scheme = urlparse(endpoint["uri"]).scheme
    if scheme not in ("http", "https", "mqtt", "mqtts") or not urlparse(endpoint["uri"]).netloc:
        raise Problem("BadRequestData", f"notification endpoint {endpoint['uri']!r} is not an http(s) or mqtt URI")
    accept = endpoint.get("accept", "application/json")
    if accept not in ("application/json", JSONLD, "application/geo+json"):
        raise Problem("BadRequestData", f"notification endpoint accept {accept!r} is not supported")
    if "format" in value and value["format"] not in FORMATS:
        raise Problem("BadRequestData", f"notification format {value['format']!r} is not one of "
                      f"{', '.join(FORMATS)}")
    attributes = value.get("attributes")
    if attributes is not None and (not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes)):
        raise Problem("BadRequestData", "notification.attributes must be a list of names")
    pick, omit = _projection(value, "pick"), _projection(value, "omit")
    if (pick is not None or omit is not None) and attributes is not None:
        raise Problem("BadRequestData", "notification.attributes cannot be combined with pick or omit")
    if pick is not None and omit is not None:
        picked, omitted = selected(pick, omit=False), selected(omit, omit=True)
        both = (picked[0] | picked[1]) & (omitted[0] | omitted[1])
        if both:
            raise Problem("BadRequestData", f"{', '.join(sorted(both))} cannot be both picked and omitted")
    if "join" in value and value["join"] not in ("inline", "flat", "@none"):
        raise Problem("BadRequestData", f"notification.join {value['join']!r} is not inline, flat or @none")
    level = value.get("joinLevel", 1)
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise Problem("BadRequestData", "notification.joinLevel must be a positive integer")
    for flag in ("showChanges", "sysAttrs"):
        if flag in value and not isinstance(value[flag], bool):
            raise Problem("BadRequestData", f"notification.{flag} must be true or false")
    for info in ("receiverInfo", "notifierInfo"):
        items = endpoint.get(info, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) and "key" in i and "value" in i for i in items):
            raise Problem("BadRequestData", f"notification.endpoint.{info} must be a list of {{key, value}}")
        endpoints.check_header_items(items, f"notification.endpoint.{info}")


def _rename(members: dict[str, Any], rename: Callable[[str], str]) -> None:
    """Map the attribute and type names of a subscription (or PATCH fragment) in place through `rename`."""
    if isinstance(members.get("entities"), list):
        members["entities"] = [
            {**e, "type": typequery.format_types(typequery.map_terms(typequery.parse_types(e["type"]), rename))}
            if isinstance(e, dict) and isinstance(e.get("type"), str) else e for e in members["entities"]]
    if isinstance(members.get("watchedAttributes"), list):
        members["watchedAttributes"] = [rename(n) for n in members["watchedAttributes"]]
    notification = members.get("notification")
    if isinstance(notification, dict) and isinstance(notification.get("attributes"), list):
        members["notification"] = {**notification, "attributes": [rename(n) for n in notification["attributes"]]}


class SubscriptionsApi:
    """The HTTP endpoints over the stored subscriptions; `unsettled` is delivery's view of outcomes not yet
    settled in the store, which reads show."""

    endpoint_allow = ""  # what the endpoint policy admits besides public addresses (Settings.endpoint_allow)
    max_subscriptions = 200  # per organization and tenant (Settings.max_subscriptions_per_org)

    def __init__(self, book: Book, broker: Any, max_body: int, unsettled: Unsettled) -> None:
        self.book = book
        self.store = book.store
        self.resolver: ContextResolver = book.resolver
        self.broker = broker
        self.max_body = max_body
        self._unsettled = unsettled
        self._creating = asyncio.Lock()  # the quota's count and the save it allows, one create at a time

    async def _authorize(self, request: Request, tenant: str) -> Caller:
        caller = caller_of(request)
        await self.broker.authorize(caller, tenant, "query")
        return caller

    def _mine(self, caller: Caller, sub: dict[str, Any]) -> bool:
        if self.broker.gate.sees_everything(caller):
            return True
        owner = (sub.get("_owner") or {}).get("organization")
        return owner is not None and owner == caller.organization

    async def _get_mine(self, caller: Caller, tenant: str, sub_id: str) -> dict[str, Any]:
        sub = await self.book.get(tenant, sub_id)
        if not self._mine(caller, sub):  # another organization's subscription is none of this caller's business
            raise Problem("ResourceNotFound", f"subscription {sub_id} does not exist")
        return sub

    async def create(self, request: Request) -> Response:
        _allow_params(request, set())
        call, body = await body_call(request, self.resolver, self.max_body)
        caller = await self._authorize(request, call.tenant)
        sub = parse_subscription(body, call.terms, resolver=self.resolver)
        endpoints.check_uri(sub["notification"]["endpoint"]["uri"], self.endpoint_allow)
        if not self.broker.gate.sees_everything(caller):
            sub["_owner"] = {"organization": caller.organization, "subject": caller.subject,
                             "roles": sorted(caller.roles)}
        sub["@context"] = call.context
        sub["createdAt"] = sub["modifiedAt"] = now_iso()
        async with self._creating:  # parallel creates must not all pass the count before any is saved
            limits.check_subscriptions(caller, await self.book.all(call.tenant), self.max_subscriptions)
            if not await self.book.save(call.tenant, sub, create=True):
                raise Problem("AlreadyExists", f"subscription {sub['id']} already exists")
        return Response(status_code=201, headers={"Location": location(f"{PREFIX}/subscriptions/{sub['id']}")})

    def _show(self, tenant: str, sub: dict[str, Any], sys_attrs: bool, terms: TermMap | None = None
              ) -> dict[str, Any]:
        unsettled = self._unsettled.get((tenant, sub["id"]))
        if unsettled is not None:
            sub = _status_change(*unsettled)({**sub, "notification": dict(sub["notification"])})
        out = {k: v for k, v in sub.items() if k != "@context" and not k.startswith("_")
               and (sys_attrs or k not in ("createdAt", "modifiedAt"))}
        out["status"] = status_of(sub)
        out.setdefault("notificationTrigger", list(DEFAULT_TRIGGERS))
        if terms is not None:
            # Names are stored as the subscriber wrote them; a reader with another @context sees them compacted
            # with its own (full IRIs when it has none), like entity attributes.
            own = self.book.terms(sub)
            _rename(out, lambda name: terms.compact(own.expand(name)))
        return out

    async def list(self, request: Request) -> Response:
        _allow_params(request, {"limit", "offset", "count", "options", "local"})
        call = read_call(request, self.resolver, allow_geojson=False)
        caller = await self._authorize(request, call.tenant)
        p = request.query_params
        limit, offset = _int(p.get("limit"), "limit", 20), _int(p.get("offset"), "offset", 0)
        subs = [s for s in await self.store.list_documents(call.tenant, KIND) if self._mine(caller, s)]
        headers = {"NGSILD-Results-Count": str(len(subs))} if _flag(p.get("count"), "count") else {}
        sys_attrs = "sysAttrs" in (p.get("options") or "")
        response = json_response(call, [self._show(call.tenant, s, sys_attrs, call.terms)
                                              for s in subs[offset:offset + limit]],
                                 headers=headers)
        links = page_links(request, offset, limit, len(subs[offset:offset + limit]), len(subs))
        if links:
            response.headers["Link"] = f"{response.headers['link']}, {links}" if "link" in response.headers else links
        return response

    async def retrieve(self, request: Request, sub_id: str) -> Response:
        _allow_params(request, {"options"})
        call = read_call(request, self.resolver, allow_geojson=False)
        caller = await self._authorize(request, call.tenant)
        sub = await self._get_mine(caller, call.tenant, sub_id)
        sys_attrs = "sysAttrs" in (request.query_params.get("options") or "")
        return json_response(call, self._show(call.tenant, sub, sys_attrs, call.terms))

    async def update(self, request: Request, sub_id: str) -> Response:
        _allow_params(request, set())
        call, body = await body_call(request, self.resolver, self.max_body, merge_patch=True)
        caller = await self._authorize(request, call.tenant)
        sub = await self._get_mine(caller, call.tenant, sub_id)
        if "id" in body and body["id"] != sub_id:
            raise Problem("BadRequestData", "the id of a subscription cannot change")
        if "type" in body and body["type"] != "Subscription":
            raise Problem("BadRequestData", 'a subscription keeps "type": "Subscription"')
        # JSON merge patch (RFC 7396): null removes an optional member.
        removed = {k for k, v in body.items() if v is None}
        if removed & REQUIRED_MEMBERS:
            raise Problem("BadRequestData", f"{', '.join(sorted(removed & REQUIRED_MEMBERS))} cannot be removed")
        # A notification member replaces the old one whole (clause 5.8.2), so it must be complete by itself.
        patch = {k: v for k, v in body.items() if v is not None and k not in ("id", "type")}
        changes = parse_subscription(patch, call.terms, partial=True, resolver=self.resolver)
        endpoints.check_uri(changes.get("notification", sub["notification"])["endpoint"]["uri"],
                            self.endpoint_allow)
        # The fragment's names are meant in the request's @context; keep the stored ones in the subscription's own.
        own = self.book.terms(sub)
        _rename(changes, lambda name: own.compact(call.terms.expand(name)))
        if "notification" in changes:
            kept = {k: v for k, v in sub["notification"].items() if k in NOTIFICATION_STATUS}
            changes["notification"] = {**changes["notification"], **kept}
        updated = {k: v for k, v in {**sub, **changes}.items() if k not in removed}
        if "throttling" in updated and "timeInterval" in updated:
            raise Problem("BadRequestData", "throttling and timeInterval exclude each other")
        if not any(k in updated for k in ("entities", "watchedAttributes")):
            raise Problem("BadRequestData", "a subscription needs entities or watchedAttributes")
        updated["modifiedAt"] = now_iso()
        await self.book.save(call.tenant, updated, create=False)
        return Response(status_code=204)

    async def delete(self, request: Request, sub_id: str) -> Response:
        _allow_params(request, set())
        call = read_call(request, self.resolver, allow_geojson=False)
        caller = await self._authorize(request, call.tenant)
        await self._get_mine(caller, call.tenant, sub_id)
        self.book.changed(call.tenant)
        await self.store.delete_document(call.tenant, KIND, sub_id)
        self.book.changed(call.tenant)
        return Response(status_code=204)
