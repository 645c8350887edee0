"""Exchange gate: ODRL decision time for a 10-constraint policy, and per-entity screening with masking.

Baselines in the same run: the allow-all gate's `check` (what every request paid before the exchange), and the
owner's screening of the same page (no policy, no masking). Targets from issue 4: decision p99 <= 1 ms; enforced
screening throughput >= 80% of the owner's. Not yet measured: the whole NGSI-LD request over HTTP with the gate
on versus off (needs the lead's `serve` with the exchange in ROOMS).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from civicmesh.exchange import odrl
from civicmesh.exchange.enforce import ExchangeGate
from civicmesh.exchange.gate import AccessRequest, Caller, Gate
from civicmesh.ngsild.context import ContextResolver

AREA = {"type": "Polygon", "coordinates": [[[120.0, 30.0], [120.2, 30.0], [120.2, 30.2], [120.0, 30.2],
                                            [120.0, 30.0]]]}
POLICY = odrl.validate({"permission": [{"action": "read", "constraint": [
    {"leftOperand": "purpose", "operator": "isA", "rightOperand": "public-service"},
    {"leftOperand": "purpose", "operator": "neq", "rightOperand": "marketing"},
    {"leftOperand": "dateTime", "operator": "gteq", "rightOperand": "2020-01-01T00:00:00Z"},
    {"leftOperand": "dateTime", "operator": "lt", "rightOperand": "2099-01-01T00:00:00Z"},
    {"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "P365D"},
    {"leftOperand": "count", "operator": "lteq", "rightOperand": 1_000_000},
    {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": AREA},
    {"leftOperand": "recipient", "operator": "isA", "rightOperand": "enterprise"},
    {"leftOperand": "industry", "operator": "isAnyOf", "rightOperand": ["logistics", "transport"]},
    {"leftOperand": "attribute", "operator": "isAnyOf", "rightOperand": ["speed", "location"]}]}],
    "prohibition": [{"action": "read", "constraint": [
        {"leftOperand": "purpose", "operator": "eq", "rightOperand": "commercial"}]}]})
CORE = "https://uri.etsi.org/ngsi-ld/"


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _doc(i: int) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:TrafficFlowObserved:{i}", "type": [CORE + "default-context/TrafficFlowObserved"],
            "attrs": {CORE + "default-context/speed": [{"type": "Property", "value": i}],
                      CORE + "default-context/occupancy": [{"type": "Property", "value": 0.5}],
                      CORE + "location": [{"type": "GeoProperty", "value": {"type": "Point",
                                                                            "coordinates": [120.1, 30.1]}}]}}


class _Platform:
    extras = {"contexts": ContextResolver(None)}


def run() -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    from shapely.geometry import Point

    ctx = odrl.Context(purpose="traffic-management", agreed_at=datetime.now(UTC), location=Point(120.1, 30.1),
                       recipient="b", recipient_kind="enterprise", industry="logistics")
    names = {"speed", "occupancy", "location"}
    decisions = []
    for _ in range(3000):
        t = time.perf_counter()
        outcome = odrl.evaluate(POLICY, ctx, names)
        decisions.append((time.perf_counter() - t) * 1000)
    assert outcome.allowed and outcome.visible == {"speed", "location"}
    allow_all = Gate()
    request = AccessRequest(Caller("x", "b"), "", "read")
    base = []
    for _ in range(3000):
        t = time.perf_counter()
        coro = allow_all.check(request)
        try:
            coro.send(None)
        except StopIteration:
            pass
        base.append((time.perf_counter() - t) * 1000)

    # Screening a page of 100 entities: owner vs consumer with the agreement above.
    gate = ExchangeGate.__new__(ExchangeGate)
    gate.platform = _Platform()
    page = [_doc(i) for i in range(100)]
    product = {"id": "p", "provider": "a", "tenant": "", "_types": [CORE + "default-context/TrafficFlowObserved"],
               "_attributes": [], "area": AREA, "offer": POLICY, "@context": None}
    agreement = {"id": "g", "_product": product, "policy": POLICY, "purpose": "traffic-management",
                 "agreed_at": datetime.now(UTC).isoformat(), "uses": 0}
    context = {"org": {"kind": "enterprise", "sector": "logistics"}, "agreements": [agreement], "public": [],
               "purpose": None}
    owner, consumer = Caller("o", "a"), Caller("c", "b")

    async def screen(caller: Caller) -> float:
        t = time.perf_counter()
        for doc in page:
            verdict = await gate.decide(caller, "", doc, "a", context, dry_run=True)
            if verdict.visible is not None:
                _ = {k: v for k, v in doc["attrs"].items() if k in verdict.visible}
        return time.perf_counter() - t

    async def both() -> tuple[float, float]:
        owners = [await screen(owner) for _ in range(30)]
        consumers = [await screen(consumer) for _ in range(30)]
        return statistics.median(owners), statistics.median(consumers)

    owner_s, consumer_s = asyncio.run(both())
    p99 = _p(decisions, 0.99)
    return [
        {"scenario": "ODRL decision, 10-constraint policy (p99)", "value": p99, "unit": "ms",
         "baseline": f"allow-all gate check p99 {_p(base, 0.99):.4f} ms", "target": "<= 1 ms", "met": p99 <= 1.0},
        {"scenario": "screen 100 entities with masking (entities/s)", "value": 100 / consumer_s, "unit": "entities/s",
         "baseline": f"owner screening {100 / owner_s:,.0f} entities/s", "target": ">= 80% of owner",
         "met": owner_s / consumer_s >= 0.8},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
