"""POST /feasibility/evaluate: a project (YAML or JSON body) in, the figures (JSON) or the report (HTML) out."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from civicmesh.errors import Problem
from civicmesh.feasibility.project import ProjectError, load_project
from civicmesh.feasibility.report import render_html
from civicmesh.feasibility.run import as_json, run

MAX_DRAWS = 200_000


def mount(app: FastAPI, platform: Any) -> None:
    router = APIRouter(prefix="/feasibility", tags=["feasibility"])

    @router.post("/evaluate")
    async def evaluate(request: Request) -> Response:
        body = await request.body()
        if len(body) > 1_000_000:
            raise Problem("PayloadTooLarge", f"a project file of {len(body)} bytes is over the 1 MB limit")
        params = request.query_params
        fmt = params.get("format", "json")
        lang = params.get("lang", "en")
        if fmt not in ("json", "html") or lang not in ("en", "zh"):
            raise Problem("BadRequestData", "format must be json or html and lang must be en or zh")
        try:
            draws = int(params.get("draws", "10000"))
        except ValueError:
            raise Problem("BadRequestData", "draws must be a whole number") from None
        if not 100 <= draws <= MAX_DRAWS:
            raise Problem("BadRequestData", f"draws must be between 100 and {MAX_DRAWS:,}")
        try:
            project = load_project("request body", text=body.decode("utf-8"))
            # Relative input-output tables would resolve against the server's working directory: refuse them.
            if project.io:
                raise ProjectError("input_output", "input-output tables are read from files; use the CLI for them")
            result = run(project, draws=draws)
        except UnicodeDecodeError:
            raise Problem("BadRequestData", "the project file is not UTF-8 text") from None
        except ProjectError as exc:
            raise Problem("BadRequestData", str(exc), extra={"field": exc.where, "line": exc.line}) from exc
        if fmt == "html":
            return HTMLResponse(render_html(result, lang))
        return Response(orjson.dumps(as_json(result), option=orjson.OPT_SERIALIZE_NUMPY),
                        media_type="application/json")

    app.include_router(router)
