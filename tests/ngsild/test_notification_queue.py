"""The notification queue's row format: rows written by the previous version are still delivered unchanged."""

from __future__ import annotations

import orjson

from civicmesh.ngsild.subscriptions.delivery import _queued, _unqueued

NOTIFICATION = {
    "endpoint": {"uri": "http://127.0.0.1:9/notify", "accept": "application/json",
                 "receiverInfo": [{"key": "X-Token", "value": "abc"}]},
    "context": ["https://example.org/ctx.jsonld"], "link": "https://example.org/ctx.jsonld",
    "body": {"id": "urn:ngsi-ld:Notification:1", "type": "Notification", "subscriptionId": "urn:ngsi-ld:Subscription:s",
             "notifiedAt": "2026-01-01T00:00:00.000000Z", "data": [{"id": "urn:ngsi-ld:Vehicle:V1", "speed": 3}]},
}


def test_rows_queued_before_and_after_the_format_change_make_the_same_request() -> None:
    old_row = orjson.dumps(NOTIFICATION)  # how the previous version queued a notification
    uri, headers, body = _unqueued("city", old_row)
    assert (uri, headers, orjson.loads(body)) == (
        "http://127.0.0.1:9/notify",
        {"X-Token": "abc", "NGSILD-Tenant": "city", "Content-Type": "application/json",
         "Link": '<https://example.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; '
                 'type="application/ld+json"'},
        NOTIFICATION["body"])
    assert _unqueued("city", memoryview(_queued("city", NOTIFICATION))) == (uri, headers, body)


def test_json_ld_receivers_get_the_context_inside_each_entity() -> None:
    ld = {**NOTIFICATION, "endpoint": {**NOTIFICATION["endpoint"], "accept": "application/ld+json"}}
    uri, headers, body = _unqueued("", _queued("", ld))
    assert headers["Content-Type"] == "application/ld+json" and "Link" not in headers
    assert "NGSILD-Tenant" not in headers
    assert orjson.loads(body)["data"][0]["@context"] == ["https://example.org/ctx.jsonld"]


def test_a_lasting_delivery_outage_is_logged_once_a_minute_not_every_round(caplog) -> None:  # type: ignore[no-untyped-def]
    from civicmesh.ngsild.subscriptions.delivery import Delivery

    subs = Delivery.__new__(Delivery)  # only the logging state matters here
    subs._logged = {}
    for _ in range(50):  # 50 failing rounds in a row (12 s of rounds)
        try:
            raise ConnectionError("database gone")
        except ConnectionError:
            subs._log_failure("notification delivery round failed; retrying")
    records = [r for r in caplog.records if r.name == "civicmesh.subscriptions"]
    assert len(records) == 1 and records[0].exc_info is not None
