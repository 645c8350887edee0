"""Prometheus metrics: /metrics, request counts and latencies per route, the event relay's position."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response


def install(app: FastAPI, platform: Any) -> None:
    registry = CollectorRegistry()
    requests = Counter("civicmesh_http_requests_total", "HTTP requests", ["method", "route", "status"],
                       registry=registry)
    latency = Histogram("civicmesh_http_request_seconds", "HTTP request latency", ["method", "route"],
                        registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
    relay_position = Gauge("civicmesh_event_relay_position", "last outbox sequence delivered to every subscriber",
                           registry=registry)
    relay_position.set_function(lambda: platform.relay.position if platform.relay else 0)

    def route_of(request: Request) -> str:
        # The route template, not the raw path, so entity ids do not explode the label set.
        route = request.scope.get("route")
        return getattr(route, "path", "unmatched")

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = route_of(request)
        latency.labels(request.method, route).observe(time.perf_counter() - started)
        requests.labels(request.method, route, str(response.status_code)).inc()
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
