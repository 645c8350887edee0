"""Finding 12: ownership ends in the transaction that deletes the entity, live on both engines.

Before, a relay subscriber released ownership some time after the deletion: a create of the same id in between
was orphaned by the late release (9 in 20 tries), and a deletion notification owed to another organization was
screened against an owner already gone, and dropped.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.exchange.conftest import client
from tests.exchange.test_screened_reads_live import grant, own_secure  # noqa: F401 - fixture
from tests.exchange.test_story_live import LD, flow, setup_orgs


def test_delete_then_create_keeps_the_new_entity_owned(own_secure: Any) -> None:  # noqa: F811
    live, admin = own_secure
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"]}
    ids = [f"urn:ngsi-ld:TrafficFlowObserved:re-{uuid.uuid4().hex[:8]}" for _ in range(20)]
    with client(live, s["key_a"]) as a:
        for eid in ids:
            assert a.post("/ngsi-ld/v1/entities", json=flow(eid, 120.1, 30.1), headers={**LD, **tenant}).status_code \
                == 201
        for eid in ids:  # delete and create again at once, as a client replacing an entity does
            assert a.delete(f"/ngsi-ld/v1/entities/{eid}", headers=tenant).status_code == 204
            r = a.post("/ngsi-ld/v1/entities", json=flow(eid, 120.1, 30.1), headers={**LD, **tenant})
            assert r.status_code == 201, r.text
        time.sleep(1.5)  # time enough for the relay to deliver every deletion event to every subscriber
        refused = []
        for eid in ids:
            r = a.patch(f"/ngsi-ld/v1/entities/{eid}/attrs", headers=tenant,
                        json={"speed": {"type": "Property", "value": 50}})
            if r.status_code != 204:
                refused.append((eid, r.status_code, r.json().get("detail")))
    assert refused == []


def test_deletion_notification_reaches_the_consumer(own_secure: Any) -> None:  # noqa: F811
    from tests.ngsild.test_subscriptions_live import Receiver

    live, admin = own_secure
    s = setup_orgs(live, admin)
    tenant = {"NGSILD-Tenant": s["tenant"]}
    eid = f"urn:ngsi-ld:TrafficFlowObserved:gone-{uuid.uuid4().hex[:8]}"
    receiver = Receiver().start()
    try:
        with client(live, s["key_a"]) as a, client(live, s["key_b"]) as b:
            assert a.post("/ngsi-ld/v1/entities", json=flow(eid, 120.1, 30.1), headers={**LD, **tenant}).status_code \
                == 201
            grant(a, b, s["tenant"])
            sub = {"type": "Subscription", "entities": [{"type": "TrafficFlowObserved"}],
                   "notificationTrigger": ["entityDeleted"],
                   "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"},
                                    "format": "keyValues"},
                   "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"}
            r = b.post("/ngsi-ld/v1/subscriptions", json=sub, headers={**LD, **tenant})
            assert r.status_code == 201, r.text
            assert a.delete(f"/ngsi-ld/v1/entities/{eid}", headers=tenant).status_code == 204
            got = receiver.wait(1, timeout=20)
        assert [entity["id"] for body in got for entity in body["data"]] == [eid]
        # B sees what its agreement shows, never the attributes it masks
        assert set(got[0]["data"][0]) - {"id", "type", "@context", "deletedAt"} <= {"speed", "location"}
    finally:
        receiver.stop()
