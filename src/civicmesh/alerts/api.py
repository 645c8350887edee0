"""Alert rules over HTTP (/alerts/rules) or a YAML file, evaluated on every entity change.

A durable event subscriber runs each matching rule's detector on the changed attribute; when an entity enters
an alarm (or its severity rises) a Smart Data Models `Alert` entity is written through the broker, so
subscriptions deliver it like any other change.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import yaml
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response

from civicmesh.alerts.detectors import SEVERITIES, RuleError, check_rule, step
from civicmesh.errors import Problem
from civicmesh.events import ChangeEvent
from civicmesh.ngsild import qlang
from civicmesh.ngsild.model import EntityParser, now_iso
from civicmesh.ngsild.subscriptions import _values

log = logging.getLogger("civicmesh.alerts")
RULE, STATE = "alert-rule", "alert-state"
DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Alerts:
    def __init__(self, platform: Any) -> None:
        self.store = platform.store
        self.broker = platform.extras["broker"]
        self.resolver = platform.extras["contexts"]
        self.raised = 0

    async def add_rule(self, tenant: str, rule: Any, *, replace: bool = False) -> dict[str, Any]:
        if not isinstance(rule, dict):
            raise Problem("BadRequestData", "a rule is a JSON object")
        try:
            check_rule(rule)
            if rule.get("q"):
                qlang.parse_q(rule["q"])
            self.resolver.term_map(rule.get("context"))  # an unknown context fails now, not on every change
        except RuleError as exc:
            raise Problem("BadRequestData", f"rule {rule.get('id', '?')}: {exc}") from exc
        if not await self.store.put_document(tenant, RULE, rule["id"], rule, create=True):
            if not replace:
                raise Problem("AlreadyExists", f"rule {rule['id']} already exists")
            await self.store.put_document(tenant, RULE, rule["id"], rule, create=False)
        return rule

    async def load_file(self, path: Path, tenant: str = "") -> int:
        rules = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        for rule in rules:
            await self.add_rule(tenant, rule, replace=True)
        return len(rules)

    async def on_event(self, event: ChangeEvent) -> None:
        after = event.data.get("after")
        if after is None or not event.kind.startswith("entity."):
            return
        if "https://uri.etsi.org/ngsi-ld/default-context/Alert" in after["type"]:
            return
        touched = set(event.data.get("attributes") or [])
        for rule in await self.store.list_documents(event.tenant, RULE):
            # A rule names types and attributes in its own @context (the core context when it has none).
            terms = self.resolver.term_map(rule.get("context"))
            if terms.expand(rule["entityType"]) not in after["type"]:
                continue
            attr = terms.expand(rule["attribute"])
            if attr not in touched:
                continue
            if rule.get("q") and not qlang.evaluate(qlang.map_terms(qlang.parse_q(rule["q"]), terms.expand),
                                                    lambda p: _values(after, p)):
                continue
            for inst in after["attrs"].get(attr, []):
                value = inst.get("value")
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                await self._observe(event, rule, after, float(value), inst.get("observedAt") or event.at)

    async def _observe(self, event: ChangeEvent, rule: dict[str, Any], entity: dict[str, Any], value: float,
                       at: str) -> None:
        key = f"{rule['id']}|{entity['id']}"
        saved = await self.store.get_document(event.tenant, STATE, key)
        state = saved or {"id": key, "detector": {}, "active": None}
        severity, why = step(rule, state["detector"], value, _epoch(at))
        previous = state.get("active")
        state["active"] = severity
        await self.store.put_document(event.tenant, STATE, key, state, create=saved is None)
        rising = severity is not None and (previous is None or SEVERITIES.index(severity) > SEVERITIES.index(previous))
        if rising:
            await self._raise(event.tenant, rule, entity, severity, why, at)  # type: ignore[arg-type]

    async def _raise(self, tenant: str, rule: dict[str, Any], entity: dict[str, Any], severity: str, why: str,
                     at: str) -> None:
        self.raised += 1
        local = entity["id"].rsplit(":", 1)[-1]
        alert: dict[str, Any] = {
            "id": f"urn:ngsi-ld:Alert:{rule['id']}-{local}-{now_iso().replace(':', '').replace('.', '')}",
            "type": "Alert",
            "category": {"type": "Property", "value": rule.get("category", "environment")},
            "subCategory": {"type": "Property", "value": rule.get("subCategory", rule["kind"])},
            "severity": {"type": "Property", "value": severity},
            "alertSource": {"type": "Property", "value": entity["id"]},
            "dateIssued": {"type": "Property", "value": at},
            "description": {"type": "Property", "value": f"{rule.get('name', rule['id'])}: {why}"},
            "refRule": {"type": "Property", "value": rule["id"]},
        }
        location = entity["attrs"].get("https://uri.etsi.org/ngsi-ld/location")
        if location:
            alert["location"] = {"type": "GeoProperty", "value": location[0]["value"]}
        doc = EntityParser(self.resolver.core).entity(alert)
        await self.broker.create(tenant, doc)
        log.warning("alert %s (%s) on %s: %s", rule["id"], severity, entity["id"], why)


def mount(app: FastAPI, platform: Any) -> None:
    alerts = Alerts(platform)
    platform.extras["alerts"] = alerts
    platform.relay.subscribe("alerts", alerts.on_event, durable=True)
    router = APIRouter(prefix="/alerts", tags=["alerts"])

    def tenant_of(request: Request) -> str:
        return request.headers.get("ngsild-tenant") or ""

    @router.post("/rules", status_code=201)
    async def add_rule(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise Problem("InvalidRequest", f"the body is not valid JSON: {exc}") from exc
        rule = await alerts.add_rule(tenant_of(request), body)
        return Response(status_code=201, headers={"Location": f"/alerts/rules/{rule['id']}"})

    @router.get("/rules")
    async def list_rules(request: Request) -> Response:
        return Response(orjson.dumps(await platform.store.list_documents(tenant_of(request), RULE)),
                        media_type="application/json")

    @router.get("/rules/{rule_id}")
    async def get_rule(request: Request, rule_id: str) -> Response:
        rule = await platform.store.get_document(tenant_of(request), RULE, rule_id)
        if rule is None:
            raise Problem("ResourceNotFound", f"rule {rule_id} does not exist")
        return Response(orjson.dumps(rule), media_type="application/json")

    @router.delete("/rules/{rule_id}")
    async def delete_rule(request: Request, rule_id: str) -> Response:
        if not await platform.store.delete_document(tenant_of(request), RULE, rule_id):
            raise Problem("ResourceNotFound", f"rule {rule_id} does not exist")
        return Response(status_code=204)

    app.include_router(router)

    async def load_defaults() -> None:
        if platform.settings.demo:
            count = await alerts.load_file(DEFAULT_RULES)
            log.info("alerts: %d demo-city rules loaded", count)

    app.state.startup_hooks.append(load_defaults)
