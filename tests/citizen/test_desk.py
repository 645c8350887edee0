"""The desk's behaviour on both store engines: dispatch, triage, return and re-dispatch, duplicates, the state
machine, supervision and department scores. Time is moved with a settable clock, never waited for."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from civicmesh.citizen.entity import ENTITY_TYPE, SDM
from civicmesh.citizen.service import CitizenDesk, CitizenError, SubmitInput

from .conftest import API_KEY, CST, Clock, run_desk

START = dt.datetime(2026, 9, 30, 10, 0, tzinfo=CST)  # the day before National Day
# The Binjiang air-quality station of the demo city, in Binjiang District.
BINJIANG = ("30.2090", "120.2045")


def pothole(**extra: Any) -> SubmitInput:
    form = SubmitInput(
        api_key=API_KEY,
        service_code="pothole",
        lat=BINJIANG[0],
        long=BINJIANG[1],
        description="江滨路上有个大坑，晚上电动车骑过去差点摔倒",
        attributes={"size": ["large"]},
    )
    for key, value in extra.items():
        setattr(form, key, value)
    return form


def general(text: str) -> SubmitInput:
    return SubmitInput(
        api_key=API_KEY, service_code="general", address_string="上城区中山中路 12 号", description=text
    )


def test_pothole_goes_to_the_district_department_with_a_holiday_aware_deadline(database_url: str) -> None:
    async def scenario(desk: CitizenDesk, clock: Clock) -> None:
        row = await desk.submit(pothole())
        assert row["state"] == "dispatched"
        assert row["lead_department"] == "binjiang_gov"
        assert row["co_departments"] == ["transport"]
        assert row["dispatch_method"] == "district"
        # complaint = 10 working days, skipping 1-7 Oct and counting Sat 10 Oct.
        assert desk.local_text(row["expected_at"]) == "2026-10-20T23:59:59+08:00"
        assert row["attributes"] == {"size": "large"}

    run_desk(database_url, scenario, START)


def test_free_text_is_classified_and_vague_text_goes_to_triage(database_url: str) -> None:
    async def scenario(desk: CitizenDesk, clock: Clock) -> None:
        wages = await desk.submit(general("我在一家装修公司上班，老板拖欠了三个月工资，一直不发"))
        assert (wages["lead_department"], wages["dispatch_method"]) == ("hr_social", "classifier")
        assert wages["confidence"] >= 0.45
        english = await desk.submit(
            general("The tap water is yellow and smells, there is sediment in the kettle")
        )
        assert english["lead_department"] == "water"

        vague = await desk.submit(general("有个情况想反映一下"))
        assert vague["lead_department"] is None and vague["state"] == "received"
        assert [r["id"] for r in await desk.triage_queue()] == [vague["id"]]
        assigned = await desk.assign(vague["id"], "civil_affairs", "caller clarified by phone")
        assert (assigned["state"], assigned["lead_department"]) == ("dispatched", "civil_affairs")
        assert await desk.triage_queue() == []
        with pytest.raises(CitizenError) as err:
            await desk.assign(vague["id"], "water")
        assert err.value.status == 409

    run_desk(database_url, scenario, START)


def test_a_department_returns_a_misdispatched_request_and_it_is_redispatched(database_url: str) -> None:
    async def scenario(desk: CitizenDesk, clock: Clock) -> None:
        row = await desk.submit(general("楼上邻居每天半夜吵闹，敲门沟通无效，报了警也没用"))
        first = row["lead_department"]
        assert first is not None
        other = "water" if first != "water" else "market"
        with pytest.raises(CitizenError) as err:
            await desk.return_request(row["id"], other, "not ours")
        assert err.value.status == 403
        with pytest.raises(CitizenError) as err:
            await desk.return_request(row["id"], first, "  ")
        assert err.value.status == 400

        again = await desk.return_request(row["id"], first, "邻里噪声纠纷不属于本部门职责 / not our remit")
        assert again["returned_by"] == [first]
        assert again["lead_department"] != first
        assert again["state"] in ("dispatched", "returned")
        history = await desk.store.events(row["id"])
        returned = [e for e in history if e["action"] == "returned"]
        assert returned and returned[0]["department"] == first and "not our remit" in returned[0]["note"]
        if again["lead_department"]:
            second = again["lead_department"]
            third = await desk.return_request(row["id"], second, "also not ours")
            assert third["lead_department"] not in (first, second)
            assert third["returned_by"] == [first, second]

    run_desk(database_url, scenario, START)


def test_duplicates_are_linked_to_a_master_and_follow_it(database_url: str) -> None:
    async def scenario(desk: CitizenDesk, clock: Clock) -> None:
        master = await desk.submit(pothole())
        clock.now += dt.timedelta(hours=5)
        # ~20 m north, similar words: the same pothole.
        dup = await desk.submit(pothole(lat="30.2092", description="江滨路大坑，电动车差点摔倒，快修"))
        assert dup["master_id"] == master["id"]
        assert dup["lead_department"] == master["lead_department"]
        assert dup["expected_at"] == master["expected_at"]
        # ~500 m away: a different pothole.
        far = await desk.submit(pothole(lat="30.2135"))
        assert far["master_id"] is None
        # Same place, another category: not a duplicate.
        light = await desk.submit(
            SubmitInput(
                api_key=API_KEY,
                service_code="streetlight",
                lat=BINJIANG[0],
                long=BINJIANG[1],
                description="江滨路路灯不亮",
            )
        )
        assert light["master_id"] is None
        # Same place, unrelated text: not a duplicate.
        other = await desk.submit(pothole(description="Manhole cover rattles loudly when buses pass"))
        assert other["master_id"] is None
        # Same place and text, but after the 72-hour window.
        clock.now += dt.timedelta(hours=80)
        late = await desk.submit(pothole())
        assert late["master_id"] is None

        dept = master["lead_department"]
        await desk.accept(master["id"], dept)
        with pytest.raises(CitizenError) as err:
            await desk.accept(dup["id"], dept)
        assert err.value.status == 409
        await desk.resolve(master["id"], dept, "已修补路面 / patched")
        child = await desk.get(dup["id"])
        assert child["state"] == "resolved" and child["status_notes"] == "已修补路面 / patched"

    run_desk(database_url, scenario, START)


def test_state_machine_return_visit_and_department_rates(database_url: str) -> None:
    async def scenario(desk: CitizenDesk, clock: Clock) -> None:
        a = await desk.submit(pothole())
        b = await desk.submit(pothole(lat="30.1950", description="长河路人行道塌陷"))
        dept = a["lead_department"]
        assert b["lead_department"] == dept
        with pytest.raises(CitizenError):
            await desk.resolve(a["id"], dept, "done")  # not accepted yet
        await desk.accept(a["id"], dept)
        await desk.progress(a["id"], dept, "施工队已到场")
        await desk.resolve(a["id"], dept, "已修补")
        with pytest.raises(CitizenError):
            await desk.return_visit(a["id"], 6, True)
        closed = await desk.return_visit(a["id"], 5, True, "很满意")
        assert closed["state"] == "closed" and closed["satisfaction"] == 5

        kpi = {d["department"]: d for d in (await desk.kpis("2026-09"))["departments"]}[dept]
        assert (
            kpi["dispatched"],
            kpi["response_rate"],
            kpi["resolution_rate"],
            kpi["satisfaction_rate"],
        ) == (2, 0.5, 1.0, 1.0)

        # b is accepted three working days after dispatch (late), then rated unsatisfied and unresolved.
        clock.now = dt.datetime(2026, 10, 12, 9, 0, tzinfo=CST)
        await desk.accept(b["id"], dept)
        await desk.resolve(b["id"], dept, "已转交养护单位")
        await desk.return_visit(b["id"], 2, False, "还没修")
        kpis = await desk.kpis("2026-09")
        kpi = {d["department"]: d for d in kpis["departments"]}[dept]
        assert (kpi["response_rate"], kpi["resolution_rate"], kpi["satisfaction_rate"]) == (0.5, 0.5, 0.5)
        assert kpis["top_problems"][0] == {
            "service_code": "pothole",
            "service_name": "道路坑洼 Pothole",
            "requests": 2,
        }
        assert (await desk.kpis("2026-10"))["departments"] == []

    run_desk(database_url, scenario, START)


def test_reminder_overdue_and_censure(database_url: str) -> None:
    async def scenario(desk: CitizenDesk, clock: Clock) -> None:
        row = await desk.submit(
            SubmitInput(
                api_key=API_KEY,
                service_code="social_insurance",
                address_string="滨江区江滨路 8 号",
                description="养老金怎么算",
            )
        )
        # consultation: 1 working day -> due 8 Oct 23:59:59 (after National Day)
        assert desk.local_text(row["expected_at"]) == "2026-10-08T23:59:59+08:00"
        assert await desk.supervise(dt.datetime(2026, 10, 2, 12, 0, tzinfo=CST)) == []
        actions = await desk.supervise(dt.datetime(2026, 10, 8, 9, 0, tzinfo=CST))
        assert [a["action"] for a in actions] == ["reminder"]
        assert await desk.supervise(dt.datetime(2026, 10, 8, 10, 0, tzinfo=CST)) == []
        actions = await desk.supervise(dt.datetime(2026, 10, 9, 9, 0, tzinfo=CST))
        assert [a["action"] for a in actions] == ["overdue"]
        clock.now = dt.datetime(2026, 10, 9, 9, 0, tzinfo=CST)
        assert [o["service_request_id"] for o in (await desk.kpis("2026-09"))["overdue"]] == [row["id"]]
        # 5 working days after 8 Oct: 9, 10 (Sat make-up), 12, 13, 14 -> censure from 15 Oct.
        assert await desk.supervise(dt.datetime(2026, 10, 14, 12, 0, tzinfo=CST)) == []
        actions = await desk.supervise(dt.datetime(2026, 10, 15, 0, 30, tzinfo=CST))
        assert [a["action"] for a in actions] == ["censure"]
        assert (await desk.get(row["id"]))["escalation_level"] == 2

    run_desk(database_url, scenario, START)


@pytest.mark.parametrize(
    "change, status, words",
    [
        ({"api_key": None}, 403, "api_key is missing"),
        ({"api_key": "nope"}, 403, "Invalid api_key"),
        ({"service_code": "unicorns"}, 404, "service_code 'unicorns' not found"),
        ({"attributes": {}}, 400, "attribute[size] is required"),
        ({"attributes": {"size": ["huge"]}}, 400, "not in ['large', 'small']"),
        ({"attributes": {"size": ["large"], "colour": ["red"]}}, 400, "has no attribute colour"),
        ({"lat": "31.2", "long": "121.5"}, 400, "outside the jurisdiction"),
        ({"long": ""}, 400, "lat and long must be given together"),
        ({"lat": "north"}, 400, "decimal degrees"),
        ({"lat": None, "long": None}, 400, "a location is required"),
        ({"description": "<script>alert(1)</script>"}, 400, "HTML"),
        ({"description": "坑" * 4001}, 400, "at most 4000"),
        ({"media_url": "https://x.test/" + "a" * 3000}, 400, "media_url is"),
        ({"media_url": "ftp://x.test/a.jpg"}, 400, "http"),
        ({"email": "not-an-email"}, 400, "not an e-mail"),
        ({"jurisdiction_id": "elsewhere.gov"}, 404, "not served here"),
    ],
)
def test_bad_input_is_refused_without_writing(
    database_url: str, change: dict[str, Any], status: int, words: str
) -> None:
    async def scenario(desk: CitizenDesk, clock: Clock) -> None:
        with pytest.raises(CitizenError) as err:
            await desk.submit(pothole(**change))
        assert err.value.status == status
        assert words in err.value.description
        assert await desk.store.query_requests(start="2000-01-01T00:00:00Z") == []

    run_desk(database_url, scenario, START)


class Recorder:
    """Stands in for the broker's entity service (owned by the lead) and records what the desk sends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def upsert(self, tenant: str, entity: dict[str, Any]) -> None:
        self.calls.append((tenant, entity))


def test_every_change_is_published_as_an_entity(database_url: str) -> None:
    recorder = Recorder()

    async def scenario(desk: CitizenDesk, clock: Clock) -> None:
        row = await desk.submit(pothole(first_name="张", phone="13812345678", email="zhang@example.com"))
        await desk.accept(row["id"], row["lead_department"])
        return row

    row = run_desk(database_url, scenario, START, entities=recorder)
    assert len(recorder.calls) == 2
    tenant, entity = recorder.calls[-1]
    assert entity["id"] == f"urn:ngsi-ld:service_requests:{row['id']}"
    assert entity["type"] == ENTITY_TYPE
    assert entity[SDM + "status"] == {"type": "Property", "value": "open"}
    assert entity[SDM + "agency_responsible"]["value"] == "滨江区人民政府"
    dumped = repr(entity)
    assert "13812345678" not in dumped and "zhang@example.com" not in dumped and "张" not in dumped


def test_two_supervisors_at_once_send_one_reminder(database_url: str) -> None:
    async def scenario(desk: CitizenDesk, clock: Clock) -> None:
        row = await desk.submit(
            SubmitInput(
                api_key=API_KEY,
                service_code="social_insurance",
                address_string="滨江区",
                description="养老金",
            )
        )
        due_morning = dt.datetime(2026, 10, 8, 9, 0, tzinfo=CST)
        first, second = await asyncio.gather(desk.supervise(due_morning), desk.supervise(due_morning))
        assert len(first) + len(second) == 1
        reminders = [e for e in await desk.store.events(row["id"]) if e["action"] == "reminder"]
        assert len(reminders) == 1

    run_desk(database_url, scenario, START)


def test_a_failed_write_leaves_nothing_behind(database_url: str) -> None:
    async def scenario(desk: CitizenDesk, clock: Clock) -> None:
        row = {
            "token": "t1",
            "service_code": "garbage",
            "state": "received",
            "requested_at": "2026-09-30T02:00:00Z",
            "updated_at": "2026-09-30T02:00:00Z",
        }
        # The second history row violates NOT NULL on `action`: the request row must roll back with it.
        with pytest.raises(Exception):  # noqa: B017 - sqlite3 and psycopg raise different IntegrityErrors
            await desk.store.create_request(row, [("received", None, ""), (None, None, "")])  # type: ignore[list-item]
        assert await desk.store.get_by_token("t1") is None
        assert await desk.store.query_requests(start="2000-01-01T00:00:00Z") == []

    run_desk(database_url, scenario, START)
