"""A real Open311 GeoReport v2 client session over HTTP against uvicorn on a loopback port, on both engines.

The client does what Open311 apps do: discover services, read a definition, POST a form-encoded request with
an api_key, then poll the request by id (or by token) in JSON and XML.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import httpx
import pytest

from civicmesh.app import service
from civicmesh.citizen.service import CitizenDesk

from .conftest import API_KEY, CST, SPAM_KEY, Clock, LiveServer

pytestmark = pytest.mark.live
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/open311/v2", timeout=30)


def set_clock(server: LiveServer, moment: dt.datetime) -> Clock:
    clock = Clock(moment)
    service(server.app, CitizenDesk).clock = clock
    return clock


def test_citizen_files_a_pothole_in_chinese_and_sees_it_through(live_server: LiveServer) -> None:
    clock = set_clock(live_server, dt.datetime(2026, 9, 30, 10, 0, tzinfo=CST))
    with client(live_server) as http, httpx.Client(base_url=live_server.url, timeout=30) as desk:
        services = http.get("/services.json")
        assert services.status_code == 200
        assert services.headers["content-type"].startswith("application/json")
        pothole = next(s for s in services.json() if s["service_code"] == "pothole")
        assert pothole["metadata"] is True and pothole["type"] == "realtime"

        definition = http.get("/services/pothole.json").json()
        size = next(a for a in definition["attributes"] if a["code"] == "size")
        assert size["required"] is True and size["datatype"] == "singlevaluelist"
        assert {v["key"] for v in size["values"]} == {"small", "large"}

        created = http.post(
            "/requests.json",
            data={
                "api_key": API_KEY,
                "service_code": "pothole",
                "lat": "30.209",
                "long": "120.2045",
                "description": "江滨路上有个大坑，晚上电动车骑过去差点摔倒，我的电话13812345678",
                "attribute[size]": "large",
                "first_name": "小明",
                "phone": "13812345678",
            },
        )
        assert created.status_code == 200, created.text
        [receipt] = created.json()
        assert set(receipt) == {"service_request_id", "service_notice", "account_id"}
        rid = receipt["service_request_id"]

        [request] = http.get(f"/requests/{rid}.json").json()
        assert request["status"] == "open"
        assert request["agency_responsible"] == "滨江区人民政府"
        assert request["requested_datetime"] == "2026-09-30T10:00:00+08:00"
        # 10 working days skipping National Day (1-7 Oct) and counting the make-up Saturday 10 Oct.
        assert request["expected_datetime"] == "2026-10-20T23:59:59+08:00"
        assert "138****5678" in request["description"] and "13812345678" not in request["description"]
        assert "first_name" not in request and "phone" not in request

        xml = http.get(f"/requests/{rid}.xml")
        assert xml.headers["content-type"].startswith("text/xml")
        root = ET.fromstring(xml.content)
        assert root.tag == "service_requests"
        assert root.findtext("request/service_request_id") == rid
        assert root.findtext("request/expected_datetime") == "2026-10-20T23:59:59+08:00"

        # The handling department sees the contact in full.
        full = desk.get(f"/citizen/requests/{rid}").json()
        assert full["contact"]["phone"] == "13812345678" and full["contact"]["first_name"] == "小明"
        assert full["co_departments"] == ["transport"]

        clock.now = dt.datetime(2026, 10, 8, 9, 0, tzinfo=CST)
        assert (
            desk.post(f"/citizen/requests/{rid}/accept", json={"department": "binjiang_gov"}).status_code
            == 200
        )
        resolved = desk.post(
            f"/citizen/requests/{rid}/resolve", json={"department": "binjiang_gov", "note": "已修补路面"}
        )
        assert resolved.status_code == 200
        [request] = http.get(f"/requests/{rid}.json").json()
        assert request["status"] == "closed" and request["status_notes"] == "已修补路面"
        assert request["updated_datetime"] == "2026-10-08T09:00:00+08:00"

        before = desk.get("/citizen/kpis", params={"month": "2026-09"}).json()
        row = next(d for d in before["departments"] if d["department"] == "binjiang_gov")
        assert (row["response_rate"], row["resolution_rate"], row["satisfaction_rate"]) == (1.0, None, None)
        visit = desk.post(f"/citizen/requests/{rid}/visit", json={"satisfaction": 5, "resolved": True})
        assert visit.status_code == 200
        after = desk.get("/citizen/kpis", params={"month": "2026-09"}).json()
        row = next(d for d in after["departments"] if d["department"] == "binjiang_gov")
        assert (row["response_rate"], row["resolution_rate"], row["satisfaction_rate"]) == (1.0, 1.0, 1.0)

        closed = http.get(
            "/requests.json",
            params={
                "status": "closed",
                "start_date": "2026-09-01T00:00:00+08:00",
                "end_date": "2026-10-30T00:00:00+08:00",
            },
        ).json()
        assert [r["service_request_id"] for r in closed] == [rid]
        assert (
            http.get(
                "/requests.json",
                params={
                    "status": "open",
                    "start_date": "2026-09-01T00:00:00Z",
                    "end_date": "2026-10-30T00:00:00Z",
                },
            ).json()
            == []
        )


def test_token_multivalue_filters_and_xml_lists(live_server: LiveServer) -> None:
    set_clock(live_server, dt.datetime(2026, 2, 13, 16, 0, tzinfo=CST))
    with client(live_server) as http:
        # Vague free text cannot be dispatched automatically: the client gets a token, not an id.
        vague = http.post(
            "/requests.xml",
            content="api_key=test-client-key&service_code=general"
            "&address_string=%E4%B8%8A%E5%9F%8E%E5%8C%BA&description=%E6%9C%89%E4%BA%8B",
            headers=FORM,
        )
        assert vague.status_code == 200, vague.text
        token = ET.fromstring(vague.content).findtext("request/token")
        assert token and ET.fromstring(vague.content).find("request/service_request_id") is None
        [pair] = http.get(f"/tokens/{token}.json").json()
        assert pair["token"] == token and pair["service_request_id"].isdigit()

        noise = http.post(
            "/requests.json",
            data={
                "api_key": API_KEY,
                "service_code": "noise",
                "address_string": "滨江区海创园 3 号楼",
                "attribute[source][]": ["construction", "neighbour"],
                "description": "工地夜间施工",
            },
        )
        assert noise.status_code == 200, noise.text
        nid = noise.json()[0]["service_request_id"]
        with httpx.Client(base_url=live_server.url) as desk:
            assert desk.get(f"/citizen/requests/{nid}").json()["attributes"] == {
                "source": ["construction", "neighbour"]
            }

        listed = http.get(
            "/requests.xml",
            params={
                "service_code": "noise,pothole",
                "start_date": "2026-02-01T00:00:00+08:00",
                "end_date": "2026-02-28T00:00:00+08:00",
            },
        )
        root = ET.fromstring(listed.content)
        assert [r.findtext("service_request_id") for r in root.findall("request")] == [nid]
        # A complaint (10 working days) from Fri 13 Feb: Sat 14 Feb (make-up), 24-27 Feb,
        # Sat 28 Feb (make-up), 2-5 Mar; the festival 15-23 Feb does not count.
        assert root.findtext("request/expected_datetime") == "2026-03-05T23:59:59+08:00"
        both = http.get(
            "/requests.json", params={"service_request_id": f"{nid},{pair['service_request_id']}"}
        )
        assert sorted(r["service_request_id"] for r in both.json()) == sorted(
            [nid, pair["service_request_id"]]
        )

        services = ET.fromstring(http.get("/services.xml").content)
        assert services.tag == "services" and services.find("service/service_code") is not None
        definition = ET.fromstring(http.get("/services/noise.xml").content)
        assert definition.findtext("attributes/attribute/datatype") == "multivaluelist"
        assert definition.findtext("attributes/attribute/required") == "true"
        assert definition.findtext("attributes/attribute/values/value/key") == "construction"
        discovery = http.get("/discovery.json").json()
        assert discovery["endpoints"][0]["formats"] == ["text/xml", "application/json"]


@pytest.mark.parametrize(
    "method, path, kwargs, status, words",
    [
        (
            "post",
            "/requests.json",
            {"data": {"service_code": "pothole", "lat": "30.209", "long": "120.2045"}},
            403,
            "api_key is missing",
        ),
        (
            "post",
            "/requests.json",
            {"data": {"api_key": "wrong", "service_code": "pothole"}},
            403,
            "Invalid api_key",
        ),
        (
            "post",
            "/requests.json",
            {"data": {"api_key": API_KEY, "service_code": "dragons", "lat": "30.209", "long": "120.2045"}},
            404,
            "service_code 'dragons' not found",
        ),
        (
            "post",
            "/requests.json",
            {"data": {"api_key": API_KEY, "service_code": "pothole", "lat": "30.209", "long": "120.2045"}},
            400,
            "attribute[size] is required",
        ),
        (
            "post",
            "/requests.json",
            {"data": {"api_key": API_KEY, "service_code": "garbage", "lat": "39.9", "long": "116.4"}},
            400,
            "outside the jurisdiction",
        ),
        (
            "post",
            "/requests.json",
            {"content": b"api_key=x&service_code", "headers": FORM},
            400,
            "malformed form",
        ),
        ("post", "/requests.json", {"content": b"api_key=\xff\xfe", "headers": FORM}, 400, "not UTF-8"),
        (
            "post",
            "/requests.json",
            {
                "content": b"<request><service_code>pothole</service_code></request>",
                "headers": {"Content-Type": "text/xml"},
            },
            400,
            "x-www-form-urlencoded",
        ),
        (
            "post",
            "/requests.json",
            {"content": b"description=" + b"a" * 70000, "headers": FORM},
            413,
            "larger than",
        ),
        ("get", "/services/dragons.json", {}, 404, "not found"),
        ("get", "/services.json", {"params": {"jurisdiction_id": "gotham.gov"}}, 404, "not served here"),
        ("get", "/requests/999999.json", {}, 404, "999999 not found"),
        ("get", "/tokens/unknown.json", {}, 404, "token 'unknown' not found"),
        ("get", "/requests.json", {"params": {"start_date": "2026-01-01T00:00:00"}}, 400, "no time zone"),
        (
            "get",
            "/requests.json",
            {"params": {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}},
            400,
            "at most 90 days",
        ),
        ("get", "/requests.json", {"params": {"status": "pending"}}, 400, "open and/or closed"),
        ("get", "/services.yaml", {}, 400, "use .xml or .json"),
        ("get", "/nothing.json", {}, 404, "no Open311 resource"),
    ],
)
def test_errors_use_the_open311_error_list(
    live_server: LiveServer, method: str, path: str, kwargs: dict, status: int, words: str
) -> None:
    with client(live_server) as http:
        response = getattr(http, method)(path, **kwargs)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        [error] = response.json()
        assert set(error) == {"code", "description"}
        assert error["code"] == status and words in error["description"]


def test_xml_errors_and_rate_limit(live_server: LiveServer) -> None:
    set_clock(live_server, dt.datetime(2026, 9, 30, 10, 0, tzinfo=CST))
    with client(live_server) as http:
        response = http.post("/requests.xml", data={"service_code": "pothole"})
        assert response.status_code == 403 and response.headers["content-type"].startswith("text/xml")
        root = ET.fromstring(response.content)
        assert root.tag == "errors" and root.findtext("error/code") == "403"

        form = {"api_key": SPAM_KEY, "service_code": "garbage", "lat": "30.252", "long": "120.212"}
        assert [http.post("/requests.json", data=form).status_code for _ in range(2)] == [200, 200]
        refused = http.post("/requests.json", data=form)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "3600"
        assert "rate limit" in refused.json()[0]["description"]


def test_desk_api_answers_problem_details(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as desk:
        missing = desk.post("/citizen/requests/4242/accept", json={"department": "water"})
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert "4242 not found" in missing.json()["detail"]
        bad = desk.post("/citizen/requests/1/visit", content=b"{not json")
        assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
        assert desk.get("/citizen/kpis", params={"month": "2026-13"}).status_code == 400
        catalogue = desk.get("/citizen/catalogue").json()
        assert len(catalogue["departments"]) >= 12 and len(catalogue["districts"]) == 2
