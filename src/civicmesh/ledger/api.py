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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from civicmesh.access import explicit_scope, is_admin, is_anonymous, public, when
from civicmesh.bodies import read_json
from civicmesh.errors import Problem
from civicmesh.events import ChangeEvent, Handler
from civicmesh.ledger import tiles
from civicmesh.ledger.entries import is_platform_kind
from civicmesh.ledger.log import Ledger
from civicmesh.platform import Platform, Room, Subscriber

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
    return await read_json(request)  # at most the platform's body limit (CIVICMESH_MAX_BODY_BYTES)


# The payload fields that name the organizations a ledger entry is about (exchange and citizen events).
PARTY_FIELDS = ("provider", "consumer", "organization", "department")


def _parties(doc: dict[str, Any]) -> set[str]:
    payload = doc["payload"] if isinstance(doc.get("payload"), dict) else {}
    named = {str(payload[f]) for f in PARTY_FIELDS if isinstance(payload.get(f), str)}
    try:
        named.add(str(orjson.loads(doc["entry"])["actor"]))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return named


def _for_caller(request: Request, doc: dict[str, Any]) -> dict[str, Any]:
    """The public log shows every entry (kind, subject, time, actor, the payload's hash) and its proofs; the
    payload itself (reasons, purposes, per-pair metering) only to a party to it and to a platform admin."""
    who = getattr(request.state, "caller", None)
    if doc.get("payload") is None or who is not None and (
            is_admin(who) or not is_anonymous(who) and who.organization in _parties(doc)):
        return doc
    return {**doc, "payload": None, "payload_withheld": "only the parties to this entry see its payload; its "
                                                        "SHA-256 is in the entry"}


def _reading(request: Request) -> bool:
    return request.method in ("GET", "HEAD")


LEDGER_RULE = when(_reading, public, explicit_scope("ledger"))


def _as_caller(items: list[Any], caller: Any) -> list[Any]:
    """Entries as the authenticated caller writes them: its organization is the actor, and the platform's own kinds
    are the platform's alone. The platform (a platform admin of the platform organization, or a process with no
    identity layer at all) records for rooms outside this process and may name the actor."""
    if caller is None or (caller.organization == "platform" and "platform_admin" in caller.roles):
        return items
    org = caller.organization
    if not org:
        raise Problem("Forbidden", "appending to the ledger needs a caller that belongs to an organization")
    stamped = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise Problem("BadRequestData", f"entry {n} is not an object")
        if is_platform_kind(item.get("kind")):
            raise Problem("Forbidden", f"entry {n}: kind {item.get('kind')!r} is recorded by the platform only")
        if item.get("actor", org) != org:
            raise Problem("Forbidden", f"entry {n}: the actor is the caller's organization {org!r}, not "
                          f"{item.get('actor')!r}")
        stamped.append({**item, "actor": org})
    return stamped


def router(held: LedgerService) -> APIRouter:
    # Reading the log is public (a transparency log is verified by anyone); writing needs the 'ledger' scope
    # named explicitly on the credential ("*" is not enough).
    r = APIRouter(prefix="/ledger", tags=["ledger"], dependencies=[LEDGER_RULE.depends()])

    @r.get("/checkpoint", summary="Newest signed checkpoint (C2SP tlog-checkpoint), with cosignatures")
    def checkpoint() -> Response:
        return Response(held.ledger.checkpoint(), media_type=TEXT, headers=FRESH)

    @r.get("/checkpoint/cosigned", summary="Newest checkpoint that at least one witness cosigned")
    def cosigned() -> Response:
        return Response(held.ledger.cosigned_checkpoint(), media_type=TEXT, headers=FRESH)

    @r.get("/checkpoints/{size}", summary="The checkpoint signed at a given tree size")
    def checkpoint_at(size: int) -> Response:
        return Response(held.ledger.checkpoint(size), media_type=TEXT, headers=FRESH)

    @r.get("/keys", summary="The log's verifier keys (active and retired)")
    def keys() -> Response:
        return _json(held.ledger.store.keys())

    @r.get("/proof/inclusion", summary="RFC 9162 inclusion proof by leaf index or leaf hash")
    def inclusion(
        index: int | None = Query(None, ge=0), leaf_hash: str | None = None, size: int | None = Query(None)
    ) -> Response:
        if (index is None) == (leaf_hash is None):
            raise Problem("BadRequestData", "give exactly one of 'index' or 'leaf_hash'")
        if leaf_hash is not None:
            return _json(held.ledger.inclusion_proof_by_hash(_hash_param(leaf_hash, "leaf_hash"), size))
        assert index is not None
        return _json(held.ledger.inclusion_proof(index, size))

    @r.get("/proof/consistency", summary="RFC 9162 consistency proof between two tree sizes")
    def consistency(size1: int, size2: int | None = None) -> Response:
        return _json(held.ledger.consistency_proof(size1, size2))

    @r.get("/tile/{path:path}", summary="C2SP tlog-tiles: hash tiles and entry bundles")
    def tile(path: str) -> Response:
        try:
            level, index, width = tiles.parse_tile_path(path)
        except tiles.TilePathError as exc:
            raise Problem("BadRequestData", f"tile path {path!r}: {exc}") from None
        if level == "entries":
            data = held.ledger.entry_bundle(index, width)
        else:
            data = held.ledger.tile(int(level), index, width)
        return Response(data, media_type="application/octet-stream", headers=IMMUTABLE)

    @r.get("/entries", summary="Entries about a subject, each with its inclusion proof")
    def entries(
        request: Request,
        subject: str,
        kind: str | None = None,
        after: int = -1,
        limit: int = Query(100, ge=1, le=1000),
        proofs: bool = True,
    ) -> Response:
        found = held.ledger.entries_by_subject(subject, kind=kind, after=after, limit=limit, with_proofs=proofs)
        return _json({**found, "entries": [_for_caller(request, e) for e in found["entries"]]})

    @r.get("/entries/{index}", summary="One entry")
    def entry(index: int, request: Request) -> Response:
        return _json(_for_caller(request, held.ledger.entry(index)))

    @r.post("/entries", status_code=201, summary="Append one entry (object) or several (array), all or none")
    async def append(request: Request) -> Response:
        body = await _body(request)
        items = body if isinstance(body, list) else [body]
        if not items or len(items) > 10_000:
            raise Problem("BadRequestData", "send 1..10000 entries")
        items = _as_caller(items, getattr(request.state, "caller", None))
        indices = await asyncio.to_thread(held.ledger.append_many, items)
        return _json({"indices": indices}, 201)

    @r.get("/witnesses", summary="Registered witnesses and the last size each cosigned")
    def witnesses() -> Response:
        return _json(held.ledger.witnesses())

    @r.post("/witnesses", status_code=201, summary="Register a witness key (cosignature/v1 vkey)")
    async def add_witness(request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) for k in ("name", "vkey", "organization")
        ):
            raise Problem("BadRequestData", 'send {"name", "vkey", "organization"} as strings')
        return _json(
            await asyncio.to_thread(held.ledger.add_witness, body["name"], body["vkey"], body["organization"]), 201
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
            await asyncio.to_thread(held.ledger.add_cosignature, name, body["size"], body["cosignature"]), 201
        )

    return r


def _event_recorder(current: Callable[[], Ledger]) -> Handler:
    """Durable relay subscriber: every exchange.* and citizen.* event becomes one entry, once."""
    from civicmesh.ledger.entries import utc_now

    async def handle(event: ChangeEvent) -> None:
        if not event.kind.startswith(("exchange.", "citizen.")):
            return
        data = event.data if isinstance(event.data, dict) else {"data": event.data}
        at = event.at if isinstance(event.at, str) and event.at.endswith("Z") else utc_now()
        actor = str(data.get("actor") or data.get("organization") or event.tenant or "platform")
        try:
            await asyncio.to_thread(
                current().append,
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


class LedgerService:
    """The room's ledger, open while the app runs: its database is opened on start, not while the app is built."""

    def __init__(self) -> None:
        self._ledger: Ledger | None = None

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("the ledger has not started")
        return self._ledger


def build(platform: Platform) -> Room:
    """Serve /ledger/ and record every exchange.* and citizen.* event; the ledger opens on start."""
    settings = platform.settings
    held = LedgerService()

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        key_dir = settings.ledger_keys
        # On the platform's Database, opened by now (it created a missing PostgreSQL database first: finding 18).
        ledger = await asyncio.to_thread(Ledger.on_database, platform.db, settings.ledger_origin, key_dir)
        held._ledger = ledger
        try:
            size = await asyncio.to_thread(ledger.integrated_size)  # a synchronous read: off the event loop
            log.info("ledger %s: tree size %d, keys in %s", ledger.origin, size, key_dir)
            ledger.start()
            yield
        finally:
            held._ledger = None
            try:
                await ledger.stop()
            finally:
                ledger.close()

    return Room("ledger", routers=[router(held)], lifespan=lifespan, services=[held],
                subscribers=[Subscriber("ledger", on_event=_event_recorder(lambda: held.ledger), durable=True)])
