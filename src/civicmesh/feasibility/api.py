"""POST /feasibility/evaluate: a project (YAML or JSON body) in, the figures (JSON) or the report (HTML) out.

Over HTTP a project may not name files (they would resolve on the server); an input–output table is given inline.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from civicmesh.access import scope
from civicmesh.bodies import limit_body
from civicmesh.config import Settings
from civicmesh.errors import Problem
from civicmesh.feasibility import sandbox
from civicmesh.platform import Platform, Room

MAX_BODY = 1_000_000
MAX_DRAWS = 200_000


def _draws(raw: str) -> int:
    try:
        draws = int(raw)
    except ValueError:
        raise Problem("BadRequestData", f"draws must be a whole number, not {raw!r}") from None
    if not 100 <= draws <= MAX_DRAWS:
        raise Problem("BadRequestData", f"draws must be between 100 and {MAX_DRAWS:,}, not {draws:,}")
    return draws


def build(platform: Platform) -> Room:
    """Serve /feasibility/evaluate; the evaluator needs nothing from the platform."""
    return Room("feasibility", routers=[router(platform.settings)])


def router(settings: Settings | None = None) -> APIRouter:
    """POST /feasibility/evaluate: a project file in, an economic evaluation report out (the evaluation in a
    child process under the settings' memory and time limits)."""
    settings = settings or Settings.from_env()
    limits = sandbox.Limits(settings.feasibility_seconds, settings.feasibility_memory_mb * 1024 * 1024)
    router = APIRouter(prefix="/feasibility", tags=["feasibility"],
                       dependencies=[scope("feasibility").depends(), limit_body(MAX_BODY)])

    @router.post("/evaluate", summary="Evaluate a project file (YAML or JSON body)",
                 responses={200: {"content": {"application/json": {}, "text/html": {}}}})
    async def evaluate(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            raise Problem("PayloadTooLarge", f"a project file of {len(body):,} bytes is over the "
                          f"{MAX_BODY:,}-byte limit")
        if not body.strip():
            raise Problem("BadRequestData", "the body is empty; send the project file as YAML or JSON")
        params = request.query_params
        fmt, lang = params.get("format", "json"), params.get("lang", "en")
        if fmt not in ("json", "html"):
            raise Problem("BadRequestData", f"format must be json or html, not {fmt!r}")
        if lang not in ("en", "zh"):
            raise Problem("BadRequestData", f"lang must be en or zh, not {lang!r}")
        draws = _draws(params.get("draws", "10000"))
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Problem("BadRequestData", "the project file is not UTF-8 text") from None
        # Parsing, the Monte Carlo and rendering are CPU- and memory-bound and their size is the caller's to
        # choose: they run in a child process with a memory cap and a time limit, the event loop stays free.
        outcome = await sandbox.evaluate(text, draws=draws, fmt=fmt, lang=lang, limits=limits)
        return Response(outcome.body, media_type=outcome.media_type)

    return router
