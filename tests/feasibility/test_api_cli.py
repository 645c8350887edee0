"""The same evaluation through HTTP (mounted on a bare FastAPI app) and through the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.responses import Response
from typer.testing import CliRunner

from civicmesh.app import problem_response
from civicmesh.errors import Problem
from civicmesh.exchange.api import NO_AUTH_CALLER
from civicmesh.feasibility.api import router
from civicmesh.feasibility.cli import feasibility_app
from civicmesh.feasibility.evaluate import as_json, run
from civicmesh.feasibility.model import load_project
from tests.feasibility.conftest import EXAMPLES, SMALL, non_finite

npf = pytest.importorskip("numpy_financial", reason="numpy-financial is the cross-check (pip install numpy-financial)")


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> Response:
        return problem_response(exc)

    @app.middleware("http")
    async def authentication_off(request: Request, call_next: Any) -> Response:
        # What the identity middleware does with --no-auth, as in every room's tests: the router's own access
        # rule (the 'feasibility' scope) admits the caller.
        request.state.caller = NO_AUTH_CALLER
        return await call_next(request)  # type: ignore[no-any-return]

    app.include_router(router())
    return TestClient(app)


def test_yaml_in_json_out(client: TestClient) -> None:
    r = client.post("/feasibility/evaluate", content=SMALL.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"]["economic"]["npv"] == pytest.approx(npf.npv(0.08, [-1000] + [210] * 10))
    assert body["cash_flows"]["financial_net"][0] == pytest.approx(-1000)
    assert body["years"][0] == 2026 and len(body["years"]) == 11


def test_json_body_and_html_report(client: TestClient) -> None:
    project = {"name": "kiosks", "horizon_years": 5, "capex": [{"amount": 100}],
               "benefits": [{"name": "fees", "kind": "revenue", "per_year": 40, "from_year": 1}]}
    page = client.post("/feasibility/evaluate", params={"format": "html", "lang": "zh"}, json=project)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "经济净现值" in page.text and "kiosks" in page.text


def test_inline_input_output_table_over_http(client: TestClient) -> None:
    text = SMALL + ("input_output:\n  table: {sectors: [a, b], Z: [[150, 500], [200, 100]], output: [1000, 2000]}\n"
                    "  shock: {a: 1000}\n")
    r = client.post("/feasibility/evaluate", content=text.encode())
    assert r.status_code == 200, r.text
    det = 0.85 * 0.95 - 0.25 * 0.2
    assert r.json()["input_output"]["impact"]["drive_ratio_type_i"] == pytest.approx(1.15 / det)


@pytest.mark.parametrize("body, params, field, words", [
    (b"horizon_years: -1\ncapex: [{amount: 1}]", {}, "horizon_years", "at least 1"),
    (SMALL.replace("schedule: [1.0]", "schedule: [0.6]").encode(), {}, "capex.0.schedule", "sum to 1"),
    (SMALL.encode() + b"input_output: {table: /etc/passwd, shock: {a: 1}}\n", {}, "input_output", "over HTTP"),
    (b"\xff\xfe", {}, None, "not UTF-8"),
    (b"", {}, None, "body is empty"),
    (SMALL.encode(), {"format": "pdf"}, None, "format must be json or html"),
    (SMALL.encode(), {"lang": "fr"}, None, "lang must be en or zh"),
    (SMALL.encode(), {"draws": "many"}, None, "whole number"),
    (SMALL.encode(), {"draws": "10000000"}, None, "between 100 and"),
])
def test_bad_requests_are_problem_details(client: TestClient, body: bytes, params: dict[str, str],
                                          field: str | None, words: str) -> None:
    r = client.post("/feasibility/evaluate", content=body, params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert words in problem["detail"] and problem["title"]
    if field:
        assert problem["field"] == field


def test_oversized_body_is_refused(client: TestClient) -> None:
    r = client.post("/feasibility/evaluate", content=b"#" * 1_000_001)
    assert r.status_code == 413 and "over the" in r.json()["detail"]


def test_mounted_in_the_platform_app() -> None:
    from civicmesh.app import create_app

    with TestClient(create_app()) as c:
        r = c.post("/feasibility/evaluate", content=SMALL.encode())
        assert r.status_code == 200 and r.json()["results"]["financial"]["npv"] > 0
        bad = c.post("/feasibility/evaluate", content=b"horizon_years: 0\ncapex: [{amount: 1}]")
        assert bad.status_code == 400 and bad.json()["line"] == 1


def test_cli_writes_the_report_and_the_json(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(feasibility_app, ["evaluate", str(EXAMPLES / "city-programme.yaml"), "--report",
                                                  str(out), "--lang", "zh", "--json", "--draws", "2000"])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "经济净现值" in page
    figures = json.loads(result.stdout[result.stdout.index("{"):])
    assert figures["results"]["total_investment"] == pytest.approx(12e9)
    assert figures["monte_carlo"]["draws"] == 2000


def test_cli_reports_bad_files_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nhorizon_years: 0\n")
    failed = CliRunner().invoke(feasibility_app, ["evaluate", str(bad)])
    assert failed.exit_code == 2
    assert "line 2: horizon_years" in failed.output
    wrong_lang = CliRunner().invoke(feasibility_app, ["evaluate", str(EXAMPLES / "small-project.yaml"),
                                                      "--lang", "fr"])
    assert wrong_lang.exit_code == 2 and "zh or en" in wrong_lang.output


@pytest.mark.skipif(shutil.which("chromium") is not None, reason="Chromium is installed, so a PDF is printed")
def test_pdf_without_chromium_is_a_clear_error_after_the_html(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(feasibility_app, ["evaluate", str(EXAMPLES / "small-project.yaml"), "--report",
                                                  str(out), "--pdf"])
    assert result.exit_code == 1
    assert "needs Chromium" in result.output and out.exists()


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian chromium to print the PDF")
def test_pdf_with_chromium(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(feasibility_app, ["evaluate", str(EXAMPLES / "small-project.yaml"), "--report",
                                                  str(out), "--pdf"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")


WEIRD = ["0", "-0.0", "1e15", "-1", "0.999", "1e-300", "[]", "{}", "null", "true", "'x'", "[1, 2]", ".inf"]
FIELDS = ["horizon_years: 10", "amount: 1000", "per_year: 30", "per_year: 240", "from_year: 1", "social: 0.08",
          "schedule: [1.0]", "standalone: 1300"]


@pytest.mark.parametrize("field", FIELDS)
def test_odd_values_never_give_a_server_error_or_a_nan(client: TestClient, field: str) -> None:
    key = field.split(":")[0]
    for value in WEIRD:
        text = SMALL.replace(field, f"{key}: {value}", 1)
        r = client.post("/feasibility/evaluate", content=text.encode(), params={"draws": "100"})
        assert r.status_code in (200, 400), (field, value, r.text)
        if r.status_code == 200:
            # orjson writes NaN as null, so look at the figures before serialization.
            figures = as_json(run(load_project("inline", text=text), draws=100))
            assert not non_finite(figures), (field, value, non_finite(figures))
        else:
            assert r.json()["detail"], (field, value)

