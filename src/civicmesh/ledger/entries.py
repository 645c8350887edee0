"""Ledger entries: canonical JSON records, and the kinds other rooms write.

An entry commits to a payload by its SHA-256 only, so the payload itself can be kept, redacted or held by its
owner without changing the tree. Canonical form: UTF-8 JSON, keys sorted, no insignificant whitespace, only
strings and integers (so it is also RFC 8785 canonical). Tile entry bundles cap an entry at 65,535 bytes.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from civicmesh.errors import Problem

ENTRY_VERSION = 1
MAX_ENTRY_BYTES = 65535
MAX_PAYLOAD_BYTES = 1 << 20
_KIND = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*$")

# Kinds written by the typed helpers of `Ledger`; other rooms may add their own dotted kinds.
DATA_RIGHTS_REGISTERED = "data-rights.registered"
DATA_ASSET_TRANSACTION = "data-asset.transaction"
ACCESS_REQUEST_TRANSITION = "access-request.transition"
AGREEMENT_TRANSITION = "agreement.transition"
METERING_RECORD = "metering.record"
GATE_DECISION = "gate.decision"
CITIZEN_MILESTONE = "citizen.milestone"
# First words of the kinds the platform records itself (the relay's exchange.* and citizen.* events, the kinds
# above, the audit trail): an organization appending over HTTP may not write them, so a reader can trust that such
# an entry came from the platform.
PLATFORM_KIND_ROOTS = frozenset({"exchange", "citizen", "data-rights", "data-asset", "access-request", "agreement",
                                 "metering", "gate", "audit", "market", "ledger", "iot", "alerts", "platform"})


def is_platform_kind(kind: object) -> bool:
    return isinstance(kind, str) and kind.split(".", 1)[0].lower() in PLATFORM_KIND_ROOTS


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise Problem("BadRequestData", f"payload is not JSON-serialisable: {exc}") from None


def payload_digest(payload: Any) -> tuple[str, bytes]:
    """(hex SHA-256, canonical bytes) of a payload; bytes payloads are hashed as they are."""
    if isinstance(payload, bytes | bytearray):
        raw = bytes(payload)
    else:
        raw = canonical_json(payload)
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise Problem(
            "PayloadTooLarge", f"ledger payload is {len(raw)} bytes, the limit is {MAX_PAYLOAD_BYTES}"
        )
    return hashlib.sha256(raw).hexdigest(), raw


def _text(name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise Problem("BadRequestData", f"ledger entry field '{name}' must be a non-empty string")
    if len(value) > limit:
        raise Problem(
            "BadRequestData", f"ledger entry field '{name}' is {len(value)} characters, the limit is {limit}"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise Problem("BadRequestData", f"ledger entry field '{name}' contains control characters")
    return value


def _time(value: str | None) -> str:
    if value is None:
        return utc_now()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or not value.endswith("Z"):
        raise Problem("BadRequestData", f"ledger entry time {value!r} must be ISO 8601 UTC ending in 'Z'")
    return value


def build_entry(kind: str, actor: str, subject: str, payload_sha256: str, time: str | None = None) -> bytes:
    """The canonical entry bytes that become a leaf."""
    if not isinstance(kind, str) or not _KIND.match(kind) or len(kind) > 64:
        raise Problem(
            "BadRequestData",
            f"ledger entry kind {kind!r} must be dotted lowercase words, e.g. '{DATA_RIGHTS_REGISTERED}'",
        )
    if not re.fullmatch(r"[0-9a-f]{64}", payload_sha256 or ""):
        raise Problem("BadRequestData", "payload_sha256 must be 64 lowercase hex digits")
    record = {
        "v": ENTRY_VERSION,
        "kind": kind,
        "actor": _text("actor", actor, 512),
        "subject": _text("subject", subject, 2048),
        "payload_sha256": payload_sha256,
        "time": _time(time),
    }
    raw = canonical_json(record)
    if len(raw) > MAX_ENTRY_BYTES:
        raise Problem("BadRequestData", f"ledger entry is {len(raw)} bytes, the limit is {MAX_ENTRY_BYTES}")
    return raw


def parse_entry(raw: bytes) -> dict[str, Any]:
    """Decode an entry and insist it is exactly in canonical form (a re-encoded entry is a different leaf)."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"entry is not JSON: {exc}") from None
    if not isinstance(record, dict) or set(record) != {
        "v",
        "kind",
        "actor",
        "subject",
        "payload_sha256",
        "time",
    }:
        raise ValueError(
            "entry does not have exactly the fields v, kind, actor, subject, payload_sha256, time"
        )
    if canonical_json(record) != raw:
        raise ValueError("entry is not in canonical JSON form")
    return record
