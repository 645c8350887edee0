"""Early warnings: rules (/alerts/rules or a YAML file) evaluated on every entity change, raising Alert entities.

A durable relay subscriber "alerts" reads entity.created/updated events. For each rule whose entity type and
attribute the change touched (and whose optional `q` the entity satisfies) it advances the rule's detector
(tiered thresholds, rate of change, EWMA or CUSUM on residuals, see `detectors.py`) with the new value. When an
entity enters an alarm, or its severity rises, a Smart Data Models `Alert` entity is written through the broker,
so subscriptions deliver it like any other change. Detector state lives in the store (`store/alerts.py`) with
the last event sequence it saw, so a replay after a crash neither loses nor double-counts an observation.

Alert entities are named in the core @context (`type=Alert` works without a Link header). An operator acknowledges
an alert with `POST /alerts/{alert id}/acknowledge`: an ordinary gated write of `acknowledged`, `acknowledgedBy` and
`acknowledgedAt` on the Alert entity, so the change reaches subscriptions and the dashboard like any other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from civicmesh.access import Caller, caller, is_admin, scope
from civicmesh.alerts.detectors import SEVERITIES, RuleError, check_rule, step
from civicmesh.bodies import limit_body, read_json
from civicmesh.errors import Problem
from civicmesh.events import ENTITY_CREATED, ENTITY_UPDATED, ChangeEvent
from civicmesh.ngsild import qlang
from civicmesh.ngsild.http import tenant_of
from civicmesh.ngsild.model import ATTRIBUTE_TYPES, EntityParser, now_iso
from civicmesh.platform import Platform, Room, Subscriber
from civicmesh.store.alerts import AlertStore

log = logging.getLogger("civicmesh.alerts")
DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")
ALERT_TYPE = "https://uri.etsi.org/ngsi-ld/default-context/Alert"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
ACKNOWLEDGED_AT = "https://uri.etsi.org/ngsi-ld/default-context/acknowledgedAt"
ACKNOWLEDGED_BY = "https://uri.etsi.org/ngsi-ld/default-context/acknowledgedBy"
PLATFORM = "platform"  # owner of rules loaded from files and of rules made before owners existed
RULE_BODY_LIMIT = 64 * 1024
RULES_TTL = 5.0  # seconds a tenant's compiled rules are trusted (another worker may have changed them)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _values(doc: dict[str, Any], path: Any) -> list[Any]:
    """Values at a q path of a stored entity, for qlang.evaluate."""
    out: list[Any] = []
    for inst in doc["attrs"].get(path.name, []):
        node: Any = inst
        for sub in path.sub:
            node = node.get(sub) if isinstance(node, dict) else None
        if isinstance(node, dict) and "type" in node:
            node = node.get(ATTRIBUTE_TYPES.get(node["type"], "value"))
        for key in path.keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            out.extend(node if isinstance(node, list) else [node])
    return out


class Compiled:
    """A rule with its names expanded once."""

    def __init__(self, rule: dict[str, Any], resolver: Any) -> None:
        terms = resolver.term_map(rule.get("context"))
        self.rule = rule
        self.type_iri = terms.expand(rule["entityType"])
        self.attr_iri = terms.expand(rule["attribute"])
        self.q = qlang.map_terms(qlang.parse_q(rule["q"]), terms.expand) if rule.get("q") else None


class Alerts:
    def __init__(self, platform: Platform) -> None:
        self.store = AlertStore(platform.store)
        self.broker = platform.broker
        self.resolver = platform.contexts
        self.raised = 0
        self._compiled: dict[str, tuple[float, list[Compiled]]] = {}

    # -- rules -------------------------------------------------------------------------------------------
    def check(self, rule: Any) -> dict[str, Any]:
        if not isinstance(rule, dict):
            raise Problem("BadRequestData", "a rule is a JSON object")
        try:
            check_rule(rule)
        except RuleError as exc:
            raise Problem("BadRequestData", f"rule {rule.get('id', '?')}: {exc}") from None
        if rule.get("q") is not None and not isinstance(rule["q"], str):
            raise Problem("BadRequestData", f"rule {rule['id']}: q must be an NGSI-LD query string")
        if rule.get("context") is not None and not isinstance(rule["context"], str):
            raise Problem("BadRequestData", f"rule {rule['id']}: context must be the URL of a JSON-LD @context")
        Compiled(rule, self.resolver)  # a bad q or an unknown @context fails now, not on every change
        return rule

    async def put_rule(self, tenant: str, rule: Any, *, create: bool, by: Caller | None = None) -> dict[str, Any]:
        """Insert (create) or replace a rule. `by`: the caller over HTTP; a rule belongs to the organization that
        made it (its `owner`), and only it or a platform admin may replace it. None: the platform's own load."""
        checked = self.check(rule)
        current = None if create else await self.store.rule(tenant, checked["id"])
        owner = checked.get("owner")
        if by is not None:
            if current is not None:
                self._may_change(by, current)
            if owner is not None and owner != by.organization and not is_admin(by):
                raise Problem("Forbidden", f"a rule of {by.organization} cannot name another owner ({owner!r})")
            owner = owner or (current or {}).get("owner") or by.organization
        checked["owner"] = owner or PLATFORM
        if not await self.store.put_rule(tenant, checked, now_iso(), create=create):
            raise Problem("AlreadyExists", f"rule {checked['id']} already exists")
        self._compiled.pop(tenant, None)
        return checked

    @staticmethod
    def _may_change(by: Caller, rule: dict[str, Any]) -> None:
        owner = rule.get("owner") or PLATFORM  # rules stored before owners existed are the platform's
        if owner != by.organization and not is_admin(by):
            raise Problem("Forbidden", f"rule {rule['id']} belongs to {owner}; only it or a platform admin may "
                                       "replace or delete it")

    async def delete_rule(self, tenant: str, rule_id: str, by: Caller | None = None) -> None:
        current = await self.store.rule(tenant, rule_id)
        if by is not None and current is not None:
            self._may_change(by, current)
        if not await self.store.delete_rule(tenant, rule_id):
            raise Problem("ResourceNotFound", f"rule {rule_id} does not exist")
        self._compiled.pop(tenant, None)

    async def load_file(self, path: Path, tenant: str = "") -> int:
        """Load (insert or replace) the rules of a YAML file: a list of rule objects."""
        rules = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        if not isinstance(rules, list):
            raise ValueError(f"{path} must hold a YAML list of rules")
        for rule in rules:
            current = await self.store.rule(tenant, rule.get("id", ""))
            if isinstance(rule, dict):
                rule.setdefault("owner", PLATFORM)
            if current != rule:  # unchanged rules keep their detector state across restarts
                await self.put_rule(tenant, rule, create=False)
        return len(rules)

    async def _rules(self, tenant: str) -> list[Compiled]:
        cached = self._compiled.get(tenant)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        compiled = []
        for _, rule in await self.store.rules(tenant):
            try:
                compiled.append(Compiled(rule, self.resolver))
            except Problem as problem:
                log.warning("alert rule %s skipped: %s", rule.get("id"), problem.detail)
        self._compiled[tenant] = (time.monotonic() + RULES_TTL, compiled)
        return compiled

    # -- evaluation --------------------------------------------------------------------------------------
    async def on_events(self, events: list[ChangeEvent]) -> None:
        """The change-event consumer: detector states are read once per (rule, entity) in a relayed run of
        events, stepped through the run in order, and saved in one transaction at its end."""
        states: dict[tuple[str, str, str], tuple[dict[str, Any], int]] = {}
        for event in events:
            await self._evaluate(event, states)
        await self.store.save_states([(*key, state, seq) for key, (state, seq) in states.items()])

    async def _evaluate(self, event: ChangeEvent, states: dict[tuple[str, str, str], tuple[dict[str, Any], int]]
                        ) -> None:
        if event.kind not in (ENTITY_CREATED, ENTITY_UPDATED):
            return
        after = event.data.get("after")
        if after is None or ALERT_TYPE in after["type"]:
            return
        touched = set(event.data.get("attributes") or [])
        for compiled in await self._rules(event.tenant):
            if compiled.type_iri not in after["type"] or compiled.attr_iri not in touched:
                continue
            if compiled.q is not None and not qlang.evaluate(compiled.q, lambda p: _values(after, p)):
                continue
            numbers = [(float(i["value"]), i.get("observedAt") or event.at) for i in after["attrs"][compiled.attr_iri]
                       if isinstance(i.get("value"), int | float) and not isinstance(i.get("value"), bool)]
            if not numbers:
                continue
            value, at = numbers[0]  # the default instance (or the first dataset) is what the rule watches
            rule = compiled.rule
            key = (event.tenant, rule["id"], after["id"])
            saved = states.get(key) or await self.store.state(*key)
            state, last_seq = saved if saved else ({"detector": {}, "active": None}, 0)
            if event.seq <= last_seq:
                continue  # replayed after a crash: this observation is already in the state
            severity, why = step(rule, state["detector"], value, _epoch(at))
            previous = state.get("active")
            state["active"] = severity
            if severity is not None and (previous is None or SEVERITIES.index(severity) > SEVERITIES.index(previous)):
                await self._raise(event, rule, after, severity, why, at, value)
            states[key] = (state, event.seq)

    async def _raise(self, event: ChangeEvent, rule: dict[str, Any], entity: dict[str, Any], severity: str,
                     why: str, at: str, value: float) -> None:
        local = entity["id"].rsplit(":", 1)[-1]
        alert: dict[str, Any] = {
            # Named after the triggering event, so an event replayed after a crash rewrites the same Alert.
            "id": f"urn:ngsi-ld:Alert:{rule['id']}:{local}:{event.seq}",
            "type": "Alert",
            "category": {"type": "Property", "value": rule.get("category", "environment")},
            "subCategory": {"type": "Property", "value": rule.get("subCategory", rule["kind"])},
            "severity": {"type": "Property", "value": severity},
            "alertSource": {"type": "Property", "value": entity["id"]},
            "dateIssued": {"type": "Property", "value": at},
            "description": {"type": "Property", "value": f"{rule.get('name', rule['id'])}: {why}"},
            "refRule": {"type": "Property", "value": rule["id"]},
            "triggerValue": {"type": "Property", "value": value, "observedAt": at},
        }
        location = [i for i in entity["attrs"].get(LOCATION, []) if i.get("type") == "GeoProperty"]
        if location:
            alert["location"] = {"type": "GeoProperty", "value": location[0]["value"]}
        doc = EntityParser(self.resolver.core).entity(alert)
        result = await self.broker.batch(event.tenant, "upsert", [doc], option="replace")
        if result.errors:
            raise result.errors[0][1]
        self.raised += 1
        log.warning("alert %s (%s) on %s: %s", rule["id"], severity, entity["id"], why)

    async def acknowledge(self, tenant: str, alert_id: str, caller: Any, note: str | None) -> dict[str, Any]:
        """Mark an Alert acknowledged by the caller; a second acknowledgement is a conflict, not a rewrite."""
        check = EntityParser(self.resolver.core)
        try:
            check.entity({"id": alert_id, "type": "Alert"})
        except Problem:
            raise Problem("BadRequestData", f"{alert_id!r} is not an entity id (URI)") from None
        doc = await self.broker.retrieve(tenant, alert_id, caller)  # gated: a caller acknowledges what it may see
        if ALERT_TYPE not in doc["type"]:
            raise Problem("BadRequestData", f"entity {alert_id} is not an Alert")
        acknowledged = doc["attrs"].get(ACKNOWLEDGED_AT)
        if acknowledged:
            by = doc["attrs"].get(ACKNOWLEDGED_BY, [{}])[0].get("value")
            raise Problem("Conflict", f"alert {alert_id} was already acknowledged at {acknowledged[0].get('value')} "
                                      f"by {by}")
        at = now_iso()
        who = caller.subject if caller.organization is None else f"{caller.subject}@{caller.organization}"
        fragment: dict[str, Any] = {"acknowledged": {"type": "Property", "value": True},
                                    "acknowledgedBy": {"type": "Property", "value": who},
                                    "acknowledgedAt": {"type": "Property", "value": at}}
        if note:
            fragment["acknowledgementNote"] = {"type": "Property", "value": note}
        await self.broker.append(tenant, alert_id, check.attributes(fragment), no_overwrite=False, caller=caller)
        return {"id": alert_id, "acknowledged": True, "acknowledgedBy": who, "acknowledgedAt": at,
                **({"acknowledgementNote": note} if note else {})}


def build(platform: Platform) -> Room:
    """Serve /alerts (rules, acknowledgements) and raise alerts from the change events; rules load on start."""
    alerts = Alerts(platform)
    # Rules are small JSON objects; 64 KiB is far above the largest demo rule (about 400 bytes).
    router = APIRouter(prefix="/alerts", tags=["early warnings"],
                       dependencies=[scope("alerts").depends(), limit_body(RULE_BODY_LIMIT)])

    async def body(request: Request) -> Any:
        return await read_json(request, RULE_BODY_LIMIT)

    def json(data: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(data), status_code=status, media_type="application/json")

    async def add_rule(request: Request) -> Response:
        rule = await alerts.put_rule(tenant_of(request), await body(request), create=True, by=caller(request))
        return Response(status_code=201, headers={"Location": f"/alerts/rules/{rule['id']}"})

    async def list_rules(request: Request) -> Response:
        return json([rule for _, rule in await alerts.store.rules(tenant_of(request))])

    async def get_rule(request: Request, rule_id: str) -> Response:
        rule = await alerts.store.rule(tenant_of(request), rule_id)
        if rule is None:
            raise Problem("ResourceNotFound", f"rule {rule_id} does not exist")
        return json(rule)

    async def replace_rule(request: Request, rule_id: str) -> Response:
        data = await body(request)
        if isinstance(data, dict) and data.setdefault("id", rule_id) != rule_id:
            raise Problem("BadRequestData", f"the body's id {data['id']!r} differs from the id in the URL")
        await alerts.put_rule(tenant_of(request), data, create=False, by=caller(request))
        return Response(status_code=204)

    async def delete_rule(request: Request, rule_id: str) -> Response:
        await alerts.delete_rule(tenant_of(request), rule_id, by=caller(request))
        return Response(status_code=204)

    async def acknowledge(request: Request, alert_id: str) -> Response:
        data = await read_json(request, RULE_BODY_LIMIT, empty={})
        if not isinstance(data, dict):
            raise Problem("BadRequestData", "the body must be a JSON object, e.g. {\"note\": \"crew sent\"}")
        note = data.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 1000):
            raise Problem("BadRequestData", "note must be a string of at most 1000 characters")
        return json(await alerts.acknowledge(tenant_of(request), alert_id, caller(request), note))

    for path, method, endpoint in [("/{alert_id}/acknowledge", "POST", acknowledge),
                                   ("/rules", "POST", add_rule), ("/rules", "GET", list_rules),
                                   ("/rules/{rule_id}", "GET", get_rule), ("/rules/{rule_id}", "PUT", replace_rule),
                                   ("/rules/{rule_id}", "DELETE", delete_rule)]:
        router.add_api_route(path, endpoint, methods=[method])  # type: ignore[arg-type]

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await alerts.store.migrate()
        extra = platform.settings.alert_rules
        if platform.settings.demo:
            log.info("alerts: %d demo-city rules loaded", await alerts.load_file(DEFAULT_RULES))
        if extra:
            log.info("alerts: %d rules loaded from %s", await alerts.load_file(Path(extra)), extra)
        yield

    return Room("alerts", routers=[router], lifespan=lifespan, services=[alerts],
                subscribers=[Subscriber("alerts", on_events=alerts.on_events, durable=True)])
