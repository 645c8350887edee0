"""Every state a citizen request reaches is recorded in the trusted ledger, with an inclusion proof."""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import pytest

from civicmesh.app import service
from civicmesh.citizen.service import CitizenDesk

from .conftest import API_KEY, CST, Clock, LiveServer

pytestmark = pytest.mark.live


def test_request_milestones_reach_the_ledger(live_server: LiveServer) -> None:
    service(live_server.app, CitizenDesk).clock = Clock(dt.datetime(2026, 9, 30, 10, 0, tzinfo=CST))
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        created = http.post("/open311/v2/requests.json", data={
            "api_key": API_KEY, "service_code": "pothole", "lat": "30.209", "long": "120.2045",
            "description": "江滨路上有个大坑", "attribute[size]": "large"})
        assert created.status_code == 200, created.text
        rid = created.json()[0]["service_request_id"]
        entries: list = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            answer = http.get("/ledger/entries", params={"subject": rid})
            entries = answer.json().get("entries", []) if answer.status_code == 200 else []
            if entries and entries[0]["integrated"]:
                break
            time.sleep(0.3)
        assert entries, "no ledger entry for the new request"
        first = entries[0]
        assert json.loads(first["entry"])["kind"] == "citizen.dispatched"
        assert first["payload"]["department"] and first["inclusion"]
