"""Signed in with real identities, the dashboard shows what the gate allows each one, and nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.conftest import (
    demo_client,
    fresh_database,
    layer_counts,
    open_dashboard,
    screenshot,
    shown_counts,
    wait_until,
)
from tests.web.gate_setup import GatedCity, gated_city

pytestmark = pytest.mark.live
AIR = "urn:ngsi-ld:AirQualityObserved:hz-binjiang"


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatedCity]:
    city = gated_city(fresh_database("sqlite", tmp_path_factory.mktemp("web-gate-browser")))
    yield city
    city.live.stop()


def sign_in(page: Any, key: str) -> None:
    page.fill("#apikey", key)
    page.click("#signin-button")
    page.wait_for_selector("#signout-button:not([hidden])")
    wait_until(page, "window.civicmesh.live")


def test_an_enterprise_sees_only_the_attributes_it_was_granted(page: Any, gated: GatedCity) -> None:
    open_dashboard(page, gated.live)
    # Anonymous: nothing in this city is open data, so every layer is empty.
    assert set(shown_counts(page).values()) == {0}
    assert "exchange-bootstrap-admin.key" in page.locator("#anonymous-hint").inner_text()
    screenshot(page, "anonymous")
    assert shown_counts(page) == layer_counts(gated.live)

    sign_in(page, gated.enterprise_key)
    assert page.locator("#who").inner_text().startswith(gated.enterprise)
    page.wait_for_selector('#layer-list li[data-layer="air"][data-count="10"]')
    assert page.locator("#anonymous-hint").is_hidden()
    expected = layer_counts(gated.live, gated.enterprise_key)
    assert expected["air"] == 10 and expected["traffic"] == 0
    assert shown_counts(page) == expected

    page.click(f'g.feature[data-id="{AIR}"]')
    page.wait_for_selector('#details-attrs tr[data-attr="airQualityIndex"]')
    rows = set(page.eval_on_selector_all("#details-attrs tr", "rows => rows.map(r => r.dataset.attr)"))
    assert rows == {"name", "airQualityIndex", "modifiedAt"} or rows == {"name", "airQualityIndex"}
    # History is screened like the entity: no refusal, only what the agreement grants (nothing recorded yet).
    page.wait_for_selector("#history .msg")
    assert "platform admin" not in page.locator("#history").inner_text()

    # A live reading reaches the enterprise with the granted attribute changed and the others still masked.
    with demo_client(gated.live, gated.bureau_key) as bureau:
        r = bureau.patch(f"/ngsi-ld/v1/entities/{AIR}/attrs", json={
            "airQualityIndex": {"type": "Property", "value": 155}, "pm25": {"type": "Property", "value": 118.0}})
        assert r.status_code == 204, r.text
    page.wait_for_selector(f'g.feature[data-id="{AIR}"][data-aqi="155"]', timeout=2000)
    held = page.evaluate("Object.keys(document.querySelector('#details-attrs').rows).length")
    assert held >= 2
    assert page.locator('#details-attrs tr[data-attr="pm25"]').count() == 0
    # The reading is history now: the enterprise's chart draws the granted attribute's history.
    page.click(f'g.feature[data-id="{AIR}"]')
    page.wait_for_selector("#history svg")
    assert "airQualityIndex" in page.locator("#history").inner_text()
    # The bureau wrote the reading without observedAt: the chart draws it by when it was stored.
    assert int(page.locator("#history svg").get_attribute("data-points")) >= 1
    screenshot(page, "enterprise-masked")

    # The catalog offers the bureau's traffic product with a request-access button; pressing it files a request.
    page.click('.tabs button[data-tab="catalog"]')
    button = page.wait_for_selector(f'[data-request-access="{gated.traffic_product}"]')
    button.click()
    page.wait_for_selector(f'.product[data-product="{gated.traffic_product}"] .tag')
    assert page.locator(f'.product[data-product="{gated.traffic_product}"] .tag').inner_text() == "REQUESTED"
    with demo_client(gated.live, gated.enterprise_key) as e:
        mine = e.get("/exchange/requests").json()
    assert any(n["product"] == gated.traffic_product and n["state"] == "REQUESTED" for n in mine)
    page.click('.tabs button[data-tab="kpis"]')
    page.wait_for_selector("#kpis .kpi")
    screenshot(page, "enterprise-catalog")

    # Signing out goes back to the anonymous view.
    page.click("#signout-button")
    page.wait_for_selector('#layer-list li[data-layer="air"][data-count="0"]')


def test_the_owner_sees_all_of_its_stations_and_the_panels_it_may_use(page: Any, gated: GatedCity) -> None:
    open_dashboard(page, gated.live)
    sign_in(page, gated.bureau_key)
    expected = layer_counts(gated.live, gated.bureau_key)
    assert expected["air"] == 10 and expected["traffic"] == 68 and expected["streetlights"] == 0
    page.wait_for_selector('#layer-list li[data-layer="traffic"][data-count="68"]')
    assert shown_counts(page) == expected
    page.click(f'g.feature[data-id="{AIR}"]')
    page.wait_for_selector('#details-attrs tr[data-attr="pm25"]')
    page.wait_for_selector("#kpis .kpi")
    assert page.locator("#kpis .kpi").first.inner_text().strip() != ""
