"""The dashboard in headless Debian Chromium against a real server with the demo city (authentication off here;
test_gate_browser.py signs in with real identities)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.web.conftest import demo_client, layer_counts, open_dashboard, screenshot, shown_counts, wait_until

AIR = "urn:ngsi-ld:AirQualityObserved:hz-binjiang"
SPAN = "urn:ngsi-ld:DeviceMeasurement:hz-bridge-displacement-3"
FLOW = "urn:ngsi-ld:TrafficFlowObserved:hz-jiangling-road-2-forward"


@pytest.mark.live
def test_page_loads_the_demo_city_with_every_layer_counted(page: Any, city: Any) -> None:
    expected = layer_counts(city)
    assert expected["air"] == 10 and expected["traffic"] == 68 and expected["streetlights"] == 120
    open_dashboard(page, city)
    assert shown_counts(page) == expected
    # The counts are what is drawn: one SVG element per entity in each layer.
    drawn = page.evaluate("Object.fromEntries([...document.querySelectorAll('g.layer')]"
                          ".map(g => [g.dataset.layer, g.querySelectorAll('.feature').length]))")
    assert {k: drawn[k] for k in expected} == expected
    # The base map is the project's own: the river, both districts and the main roads are drawn.
    assert page.locator('[data-base="river:qiantang"]').count() == 1
    assert page.locator('[data-base^="district:"]').count() == 2
    assert page.locator('[data-base^="road:"]').count() == 10
    assert page.locator("h1").inner_text() == "City operations centre"
    assert page.locator("#anonymous-hint").is_hidden()  # authentication is off: everyone sees everything
    screenshot(page, f"load-{city.settings.database_url.split(':')[0]}")
    # On a 4K wall display the text grows with the screen and the map still shows every feature.
    laptop_font = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    page.set_viewport_size({"width": 3840, "height": 2160})
    page.wait_for_timeout(300)
    wall_font = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    assert wall_font >= 2 * laptop_font
    box = page.locator("#layers").bounding_box()
    assert box["y"] + box["height"] < 2160 and box["width"] > 400
    assert shown_counts(page) == expected
    screenshot(page, f"wall-{city.settings.database_url.split(':')[0]}")


@pytest.mark.live
def test_a_published_reading_changes_its_marker_within_two_seconds(page: Any, city_sqlite: Any) -> None:
    open_dashboard(page, city_sqlite)
    marker = page.locator(f'g.feature[data-id="{AIR}"]')
    assert marker.get_attribute("data-aqi") != "182"
    with demo_client(city_sqlite) as api:
        r = api.patch(f"/ngsi-ld/v1/entities/{AIR}/attrs", json={
            "airQualityIndex": {"type": "Property", "value": 182, "observedAt": "2025-06-16T11:00:00Z"}})
        assert r.status_code == 204, r.text
        published = time.monotonic()
        page.wait_for_selector(f'g.feature[data-id="{AIR}"][data-aqi="182"]', timeout=2000)
        assert time.monotonic() - published < 2.0
        # 182 is "moderately polluted" (151-200): red in the HJ 633 colours.
        assert page.locator(f'g.feature[data-id="{AIR}"] circle').get_attribute("fill") == "#ff0000"
        # A traffic detector's speed recolours its line too.
        r = api.patch(f"/ngsi-ld/v1/entities/{FLOW}/attrs", json={
            "averageVehicleSpeed": {"type": "Property", "value": 9.5}})
        assert r.status_code == 204, r.text
        page.wait_for_selector(f'g.feature[data-id="{FLOW}"][data-speed="9.5"]', timeout=2000)
    # Clicking the station shows its attributes and the history the temporal API recorded.
    marker.click()
    page.wait_for_selector(f'#details[data-id="{AIR}"] #details-attrs tr[data-attr="airQualityIndex"]')
    assert "182" in page.locator('#details-attrs tr[data-attr="airQualityIndex"]').inner_text()
    page.wait_for_selector("#history svg[data-points]")
    assert int(page.locator("#history svg").get_attribute("data-points")) >= 1
    lag = page.evaluate("window.civicmesh.stats.lags")
    assert lag and all(v < 2000 for v in lag)
    screenshot(page, "details-history")


@pytest.mark.live
def test_a_bridge_alert_appears_in_the_panel_and_is_acknowledged(page: Any, city_sqlite: Any) -> None:
    open_dashboard(page, city_sqlite)
    with demo_client(city_sqlite) as api:
        r = api.patch(f"/ngsi-ld/v1/entities/{SPAN}/attrs", json={
            "numValue": {"type": "Property", "value": 52.5, "observedAt": "2025-06-16T10:05:00Z"}})
        assert r.status_code == 204, r.text
        item = page.wait_for_selector('#alerts-list li[data-severity="critical"]', timeout=10000)
        alert_id = item.get_attribute("data-id")
        assert alert_id.startswith("urn:ngsi-ld:Alert:bridge-displacement:")
        assert "52.5" in item.inner_text()
        assert int(page.locator("#alerts-count").inner_text()) >= 1
        # The alert's marker is on the map and the sensor turns red.
        page.wait_for_selector(f'g.feature[data-id="{alert_id}"]')
        page.wait_for_selector(f'g.feature[data-id="{SPAN}"][data-alert="critical"]')
        screenshot(page, "bridge-alert")
        page.click(f'#alerts-list li[data-id="{alert_id}"] button.ack')
        page.wait_for_selector(f'#alerts-list li.acknowledged[data-id="{alert_id}"]', timeout=5000)
        stored = api.get(f"/ngsi-ld/v1/entities/{alert_id}", params={"options": "keyValues"}).json()
        assert stored["acknowledged"] is True and stored["acknowledgedBy"]


@pytest.mark.live
def test_language_switch_is_remembered(page: Any, city_sqlite: Any) -> None:
    open_dashboard(page, city_sqlite)
    page.click("#lang-zh")
    assert page.locator("h1").inner_text() == "城市运行中心"
    assert "空气质量" in page.locator('#layer-list li[data-layer="air"]').inner_text()
    assert page.locator("#alerts-panel h2").inner_text().startswith("告警")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.click('.tabs button[data-tab="ledger"]')
    page.wait_for_selector("#ledger-checkpoint")
    assert "最新检查点" in page.locator("#tab-ledger").inner_text()
    screenshot(page, "chinese")
    page.reload()
    wait_until(page, "window.civicmesh && window.civicmesh.ready")
    assert page.locator("h1").inner_text() == "城市运行中心"
    page.click("#lang-en")
    assert page.locator("h1").inner_text() == "City operations centre"
    assert page.evaluate("localStorage.getItem('civicmesh.lang')") == "en"


def open311_key(live: Any) -> str:
    """An Open311 client key, issued the way an operator does (`civicmesh citizen issue-key`)."""
    from concurrent.futures import ThreadPoolExecutor

    from typer.testing import CliRunner

    from civicmesh.citizen.cli import citizen_app

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(CliRunner().invoke, citizen_app, ["issue-key", "dashboard-test", "--database-url",
                                                               live.settings.database_url]).result()
    assert result.exit_code == 0, result.output
    found = re.search(r"api_key for dashboard-test: (\S+)", result.output)
    assert found, result.output
    return found.group(1)


@pytest.mark.live
def test_panels_show_kpis_citizen_requests_ledger_and_catalog(page: Any, city_sqlite: Any) -> None:
    key = open311_key(city_sqlite)
    with demo_client(city_sqlite) as api:
        r = api.post("/open311/v2/requests.json", data={
            "api_key": key, "service_code": "streetlight", "lat": "30.209", "long": "120.2045",
            "description": "Jiangling Road streetlight out near the metro exit", "first_name": "Li"})
        assert r.status_code in (200, 201), r.text
        filed = r.json()[0]["service_request_id"]
    open_dashboard(page, city_sqlite)
    # Filed at the demo city's Binjiang station, the request is in a district, dispatched and on the map.
    request_id = f"urn:ngsi-ld:service_requests:{filed}"
    page.wait_for_selector(f'g.layer-citizen g.feature[data-id="{request_id}"]', timeout=5000)
    assert int(page.locator('#layer-list li[data-layer="citizen"]').get_attribute("data-count")) >= 1
    page.click(f'g.feature[data-id="{request_id}"]')
    page.wait_for_selector('#details-attrs tr[data-attr="service_code"]')
    assert "streetlight" in page.locator('#details-attrs tr[data-attr="service_code"]').inner_text()
    page.wait_for_selector("#kpis .kpi")
    assert page.locator("#kpis .kpi").count() == 6
    page.click('.tabs button[data-tab="citizen"]')
    page.wait_for_selector("#citizen-requests tbody tr")
    row = page.locator("#citizen-requests tbody tr").first.inner_text()
    assert "open" in row
    page.click('.tabs button[data-tab="ledger"]')
    page.wait_for_selector("#ledger-checkpoint")
    assert "civicmesh" in page.locator("#ledger-checkpoint").inner_text()
    page.click('.tabs button[data-tab="catalog"]')
    page.wait_for_selector("#tab-catalog h2")
    screenshot(page, "panels")
