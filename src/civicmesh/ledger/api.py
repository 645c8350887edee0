"""HTTP API of the ledger, under /ledger/.

Public, read-only and cacheable: the checkpoint (C2SP signed note text), proofs, C2SP tlog-tiles and entry
bundles, entries by subject with proofs, keys, witnesses. Writes: appending entries (for rooms that are not in
this process), registering witnesses and accepting their cosignatures.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from starlette.responses import Response

from civicmesh.errors import Problem
from civicmesh.ledger import tiles
from civicmesh.ledger.keys import key_dir_from_env, load_or_create_log_key, origin_from_env
from civicmesh.ledger.log import Ledger
from civicmesh.store.ledger import LedgerStore

log = logging.getLogger("civicmesh.ledger")

TEXT = "text/plain; charset=utf-8"
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
FRESH = {"Cache-Control": "no-cache"}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _hash_param(value: str, name: str) -> bytes:
    # An unescaped '+' in a query string arrives as a space; standard base64 has no spaces, so restore it.
    value = value.replace(" ", "+")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise Problem("BadRequestData", f"{name} is not valid base64") from None
    if len(raw) != 32:
        raise Problem("BadRequestData", f"{name} decodes to {len(raw)} bytes, a SHA-256 hash is 32")
    return raw


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem("InvalidRequest", f"request body is not JSON: {exc}") from None


def router(ledger: Ledger) -> APIRouter:
    r = APIRouter(prefix="/ledger", tags=["ledger"])

    @r.get("/checkpoint", summary="Newest signed checkpoint (C2SP tlog-checkpoint), with cosignatures")
    def checkpoint() -> Response:
        return Response(ledger.checkpoint(), media_type=TEXT, headers=FRESH)

    @r.get("/checkpoint/cosigned", summary="Newest checkpoint that at least one witness cosigned")
    def cosigned() -> Response:
        return Response(ledger.cosigned_checkpoint(), media_type=TEXT, headers=FRESH)

    @r.get("/checkpoints/{size}", summary="The checkpoint signed at a given tree size")
    def checkpoint_at(size: int) -> Response:
        return Response(ledger.checkpoint(size), media_type=TEXT, headers=FRESH)

    @r.get("/keys", summary="The log's verifier keys (active and retired)")
    def keys() -> Response:
        return _json(ledger.store.keys())

    @r.get("/proof/inclusion", summary="RFC 9162 inclusion proof by leaf index or leaf hash")
    def inclusion(
        index: int | None = Query(None, ge=0), leaf_hash: str | None = None, size: int | None = Query(None)
    ) -> Response:
        if (index is None) == (leaf_hash is None):
            raise Problem("BadRequestData", "give exactly one of 'index' or 'leaf_hash'")
        if leaf_hash is not None:
            return _json(ledger.inclusion_proof_by_hash(_hash_param(leaf_hash, "leaf_hash"), size))
        assert index is not None
        return _json(ledger.inclusion_proof(index, size))

    @r.get("/proof/consistency", summary="RFC 9162 consistency proof between two tree sizes")
    def consistency(size1: int, size2: int | None = None) -> Response:
        return _json(ledger.consistency_proof(size1, size2))

    @r.get("/tile/{path:path}", summary="C2SP tlog-tiles: hash tiles and entry bundles")
    def tile(path: str) -> Response:
        try:
            level, index, width = tiles.parse_tile_path(path)
        except tiles.TilePathError as exc:
            raise Problem("BadRequestData", f"tile path {path!r}: {exc}") from None
        if level == "entries":
            data = ledger.entry_bundle(index, width)
        else:
            data = ledger.tile(int(level), index, width)
        return Response(data, media_type="application/octet-stream", headers=IMMUTABLE)

    @r.get("/entries", summary="Entries about a subject, each with its inclusion proof")
    def entries(
        subject: str,
        kind: str | None = None,
        after: int = -1,
        limit: int = Query(100, ge=1, le=1000),
        proofs: bool = True,
    ) -> Response:
        return _json(
            ledger.entries_by_subject(subject, kind=kind, after=after, limit=limit, with_proofs=proofs)
        )

    @r.get("/entries/{index}", summary="One entry")
    def entry(index: int) -> Response:
        return _json(ledger.entry(index))

    @r.post("/entries", status_code=201, summary="Append one entry (object) or several (array), all or none")
    async def append(request: Request) -> Response:
        body = await _body(request)
        items = body if isinstance(body, list) else [body]
        if not items or len(items) > 10_000:
            raise Problem("BadRequestData", "send 1..10000 entries")
        indices = await asyncio.to_thread(ledger.append_many, items)
        return _json({"indices": indices}, 201)

    @r.get("/witnesses", summary="Registered witnesses and the last size each cosigned")
    def witnesses() -> Response:
        return _json(ledger.witnesses())

    @r.post("/witnesses", status_code=201, summary="Register a witness key (cosignature/v1 vkey)")
    async def add_witness(request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) for k in ("name", "vkey", "organization")
        ):
            raise Problem("BadRequestData", 'send {"name", "vkey", "organization"} as strings')
        return _json(
            await asyncio.to_thread(ledger.add_witness, body["name"], body["vkey"], body["organization"]), 201
        )

    @r.post("/witnesses/{name:path}/cosignatures", status_code=201, summary="Hand in a cosignature line")
    async def add_cosignature(name: str, request: Request) -> Response:
        body = await _body(request)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("size"), int)
            or not isinstance(body.get("cosignature"), str)
        ):
            raise Problem("BadRequestData", 'send {"size": <int>, "cosignature": "— <name> <base64>"}')
        return _json(
            await asyncio.to_thread(ledger.add_cosignature, name, body["size"], body["cosignature"]), 201
        )

    return r


def _event_recorder(ledger: Ledger) -> Any:
    """Durable relay subscriber: every exchange.* and citizen.* event becomes one entry, once."""
    from civicmesh.ledger.entries import utc_now

    async def handle(event: Any) -> None:
        if not event.kind.startswith(("exchange.", "citizen.")):
            return
        data = event.data if isinstance(event.data, dict) else {"data": event.data}
        at = event.at if isinstance(event.at, str) and event.at.endswith("Z") else utc_now()
        actor = str(data.get("actor") or data.get("organization") or event.tenant or "platform")
        try:
            await asyncio.to_thread(
                ledger.append,
                event.kind.lower().replace("_", "-"),  # entry kinds are dotted lowercase words
                actor,
                event.subject,
                data,
                time=at,
                dedupe_key=f"outbox:{event.seq}",
            )
        except Problem as exc:  # a malformed event must not block the relay; it is logged and skipped
            log.warning("ledger skipped event %s (%s): %s", event.seq, event.kind, exc.detail)

    return handle


def mount(app: FastAPI, platform: Any) -> None:
    """Open the ledger on the platform's database, mount /ledger/, put it in platform.extras['ledger']."""
    key_dir: Path = key_dir_from_env()
    # Built now (its routes need it), opened on the platform's database when that is open (start).
    origin = origin_from_env()
    ledger = Ledger(LedgerStore(platform.db), origin, load_or_create_log_key(key_dir, origin), prepare=False)
    platform.extras["ledger"] = ledger
    app.include_router(router(ledger))
    relay = getattr(platform, "relay", None)
    if relay is not None:
        try:
            relay.subscribe("ledger", _event_recorder(ledger), durable=True)
        except RuntimeError as exc:
            log.warning("ledger could not subscribe to events: %s", exc)

    async def start() -> None:
        await asyncio.to_thread(ledger.store.migrate)
        await asyncio.to_thread(ledger.prepare)
        size = await asyncio.to_thread(ledger.integrated_size)
        log.info("ledger %s: tree size %d, keys in %s", ledger.origin, size, key_dir)
        ledger.start()

    async def stop() -> None:
        await ledger.stop()

    app.state.startup_hooks.append(start)
    app.state.shutdown_hooks.append(stop)
