"""The independent verifier: checks a ledger from its HTTP API or an export file, never from its database.

It trusts only the keys it is given (the log's and the witnesses' verifier keys) and, optionally, a
checkpoint saved earlier. From the data it recomputes every leaf hash and every subtree hash, compares them
with what the log stored (export: leaf hashes and nodes; HTTP: C2SP tiles), checks the signed root, and
names the first index where anything differs.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from civicmesh.ledger import merkle, tiles
from civicmesh.ledger.entries import parse_entry
from civicmesh.ledger.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Checkpoint,
    NoteError,
    VerifierKey,
    parse_note,
    verified_by,
)


@dataclass
class Report:
    source: str
    tree_size: int | None = None
    root: str | None = None
    signed_by: list[str] = field(default_factory=list)
    cosigned_by: list[str] = field(default_factory=list)
    entries_checked: int = 0
    first_bad_index: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad(self, index: int | None, message: str) -> None:
        self.problems.append(message)
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "tree_size": self.tree_size,
            "root": self.root,
            "signed_by": self.signed_by,
            "cosigned_by": self.cosigned_by,
            "entries_checked": self.entries_checked,
            "first_bad_index": self.first_bad_index,
            "problems": self.problems,
            "notes": self.notes,
        }


@dataclass
class Item:
    """One leaf as the source presents it; `entry` is None when the source's record could not be read."""

    index: int
    entry: bytes | None
    stored_leaf: bytes | None
    error: str | None = None


class Source:
    name: str

    def checkpoint(self) -> str:
        raise NotImplementedError

    def log_keys(self) -> list[str]:
        return []

    def witness_keys(self) -> list[str]:
        return []

    def historical_checkpoints(self) -> list[str]:
        return []

    def items(self, size: int) -> Iterator[Item]:
        raise NotImplementedError

    def stored_nodes(self, size: int) -> dict[tuple[int, int], bytes]:
        return {}

    def consistency_proof(self, size1: int, size2: int) -> list[bytes] | None:
        return None

    def inclusion_proof(self, leaf: bytes, size: int) -> tuple[int, list[bytes]] | None:
        return None


# ---------------------------------------------------------------------------------------------- export file


class ExportSource(Source):
    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.header: dict[str, Any] = {}
        self._checkpoints: list[str] = []
        self._items: dict[int, Item] = {}
        self._nodes: dict[tuple[int, int], bytes] = {}
        self.read_problems: list[tuple[int | None, str]] = []
        last_index = -1
        with path.open("rb") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    rec = orjson.loads(line)
                    if not isinstance(rec, dict):
                        raise ValueError("not an object")
                except (orjson.JSONDecodeError, ValueError):
                    # A damaged line still has a position: an entry line sits right after the last good entry.
                    looks_like_entry = b'"index"' in line or (
                        b'"node"' not in line
                        and b'"checkpoint"' not in line
                        and (self._items or self._checkpoints)
                    )
                    if looks_like_entry and not self._nodes:
                        last_index += 1
                        self._items[last_index] = Item(
                            last_index,
                            None,
                            None,
                            f"entry {last_index}: line {lineno} of the export is damaged",
                        )
                    else:
                        self.read_problems.append((None, f"line {lineno} of the export is damaged"))
                    continue
                if lineno == 1:
                    if rec.get("format") != "civicmesh-ledger-export/1":
                        raise ValueError(
                            f"{path} is not a civicmesh ledger export (format {rec.get('format')!r})"
                        )
                    self.header = rec
                elif "checkpoint" in rec:
                    self._checkpoints.append(str(rec["checkpoint"]))
                elif "index" in rec:
                    idx = rec.get("index")
                    if not isinstance(idx, int) or idx != last_index + 1:
                        idx = last_index + 1
                        self._items[idx] = Item(idx, None, None, f"line {lineno}: index field altered")
                    else:
                        self._items[idx] = self._item(idx, rec)
                    last_index = idx
                elif "node" in rec:
                    try:
                        level, index = (int(v) for v in rec["node"])
                        self._nodes[(level, index)] = base64.b64decode(rec["hash"], validate=True)
                    except (ValueError, TypeError, binascii.Error):
                        self.read_problems.append((None, f"line {lineno}: stored node record is damaged"))

    @staticmethod
    def _item(idx: int, rec: dict[str, Any]) -> Item:
        entry = rec.get("entry")
        try:
            leaf = base64.b64decode(rec.get("leaf_hash", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            return Item(
                idx,
                entry.encode() if isinstance(entry, str) else None,
                None,
                f"entry {idx}: stored leaf hash is not base64",
            )
        if not isinstance(entry, str):
            return Item(idx, None, leaf, f"entry {idx}: entry text is missing")
        return Item(idx, entry.encode(), leaf)

    def checkpoint(self) -> str:
        if not self._checkpoints:
            raise NoteError("the export holds no checkpoint")
        return self._checkpoints[-1]

    def log_keys(self) -> list[str]:
        return list(self.header.get("log_keys", []))

    def witness_keys(self) -> list[str]:
        return [w["vkey"] for w in self.header.get("witnesses", [])]

    def historical_checkpoints(self) -> list[str]:
        return self._checkpoints[:-1]

    def items(self, size: int) -> Iterator[Item]:
        for i in range(size):
            yield self._items.get(i) or Item(i, None, None, f"entry {i} is missing from the export")

    def stored_nodes(self, size: int) -> dict[tuple[int, int], bytes]:
        return self._nodes


# ---------------------------------------------------------------------------------------------- HTTP


class HttpSource(Source):
    """A remote platform's public ledger API: checkpoint, keys, C2SP tiles and entry bundles, proofs."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        import httpx

        self.name = base_url
        self.base = base_url.rstrip("/")
        if not self.base.endswith("/ledger"):
            self.base += "/ledger"
        self.http = httpx.Client(timeout=timeout)

    def _get(self, path: str) -> bytes:
        r = self.http.get(f"{self.base}/{path}")
        if r.status_code != 200:
            raise NoteError(f"GET {self.base}/{path} answered {r.status_code}: {r.text[:200]}")
        return r.content

    def checkpoint(self) -> str:
        return self._get("checkpoint").decode()

    def log_keys(self) -> list[str]:
        return [k["vkey"] for k in orjson.loads(self._get("keys"))]

    def witness_keys(self) -> list[str]:
        return [w["vkey"] for w in orjson.loads(self._get("witnesses"))]

    def _tile_runs(self, level: str | int, count: int) -> Iterator[tuple[int, int]]:
        for n in range(count // tiles.TILE_WIDTH):
            yield n, tiles.TILE_WIDTH
        if count % tiles.TILE_WIDTH:
            yield count // tiles.TILE_WIDTH, count % tiles.TILE_WIDTH

    def items(self, size: int) -> Iterator[Item]:
        for n, width in self._tile_runs(0, size):
            hashes = self._get(tiles.tile_path(0, n, width))
            bundle = self._get(tiles.tile_path("entries", n, width))
            pos = 0
            for i in range(width):
                index = n * tiles.TILE_WIDTH + i
                stored = hashes[32 * i : 32 * i + 32] if len(hashes) >= 32 * (i + 1) else None
                if pos + 2 > len(bundle):
                    yield Item(index, None, stored, f"entry {index} is missing from its entry bundle")
                    continue
                (length,) = struct.unpack(">H", bundle[pos : pos + 2])
                yield Item(index, bundle[pos + 2 : pos + 2 + length], stored)
                pos += 2 + length

    def stored_nodes(self, size: int) -> dict[tuple[int, int], bytes]:
        nodes: dict[tuple[int, int], bytes] = {}
        level = 1
        while tiles.nodes_at(level, size):
            for n, width in self._tile_runs(level, tiles.nodes_at(level, size)):
                data = self._get(tiles.tile_path(level, n, width))
                for i in range(len(data) // 32):
                    nodes[(tiles.TILE_HEIGHT * level, n * tiles.TILE_WIDTH + i)] = data[32 * i : 32 * i + 32]
            level += 1
        return nodes

    def consistency_proof(self, size1: int, size2: int) -> list[bytes] | None:
        doc = orjson.loads(self._get(f"proof/consistency?size1={size1}&size2={size2}"))
        return [base64.b64decode(p) for p in doc["proof"]]

    def inclusion_proof(self, leaf: bytes, size: int) -> tuple[int, list[bytes]] | None:
        from urllib.parse import quote

        r = self.http.get(
            f"{self.base}/proof/inclusion",
            params={"leaf_hash": base64.b64encode(leaf).decode(), "size": size},
        )
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise NoteError(
                f"inclusion proof request for {quote(base64.b64encode(leaf).decode())} answered "
                f"{r.status_code}"
            )
        doc = r.json()
        return int(doc["leaf_index"]), [base64.b64decode(p) for p in doc["proof"]]


# ---------------------------------------------------------------------------------------------- the check


def _keys(texts: list[str], report: Report, what: str) -> list[VerifierKey]:
    out = []
    for t in texts:
        try:
            out.append(VerifierKey.parse(t))
        except NoteError as exc:
            report.problems.append(f"{what} key {t[:40]!r} is invalid: {exc}")
    return out


def verify(
    source: Source,
    *,
    log_keys: list[str] | None = None,
    witness_keys: list[str] | None = None,
    min_cosigners: int = 0,
    saved_checkpoint: str | None = None,
    include: list[bytes] | None = None,
) -> Report:
    """Check everything the source offers; `include` holds entries (bytes) that must be in the log."""
    report = Report(source.name)
    if isinstance(source, ExportSource):
        for index, msg in source.read_problems:
            report.bad(index, msg)
    if log_keys is None:
        log_keys = source.log_keys()
        report.notes.append("no log key given: trusting the keys the source itself publishes")
    if witness_keys is None:
        witness_keys = source.witness_keys()
    trusted = [k for k in _keys(log_keys, report, "log") if k.alg == ALG_ED25519]
    witnesses = [k for k in _keys(witness_keys, report, "witness") if k.alg == ALG_COSIGNATURE_V1]

    # 1. the checkpoint: log signature, then cosignatures
    try:
        note = parse_note(source.checkpoint())
        cp = Checkpoint.parse_text(note.text)
    except NoteError as exc:
        report.bad(None, f"checkpoint is unreadable: {exc}")
        return report
    report.tree_size, report.root = cp.size, base64.b64encode(cp.root).decode()
    report.signed_by = [k.name + "+" + k.key_id.hex() for k in verified_by(note, trusted)]
    if not report.signed_by:
        report.bad(None, f"checkpoint of size {cp.size} has no valid signature by a trusted log key")
    report.cosigned_by = [k.name for k in verified_by(note, witnesses)]
    if len(report.cosigned_by) < min_cosigners:
        report.bad(
            None, f"checkpoint has {len(report.cosigned_by)} valid cosignatures, {min_cosigners} required"
        )

    saved: Checkpoint | None = None
    if saved_checkpoint is not None:
        try:
            saved_note = parse_note(saved_checkpoint)
            saved = Checkpoint.parse_text(saved_note.text)
            if not verified_by(saved_note, trusted):
                report.bad(None, f"saved checkpoint of size {saved.size} is not signed by a trusted log key")
            if saved.origin != cp.origin:
                report.bad(None, f"saved checkpoint is for origin {saved.origin!r}, the log is {cp.origin!r}")
            if saved.size > cp.size:
                report.bad(
                    None, f"the log shrank: saved checkpoint has size {saved.size}, the log now {cp.size}"
                )
        except NoteError as exc:
            report.bad(None, f"saved checkpoint is unreadable: {exc}")
            saved = None

    # 2. every entry: readable, canonical, hashing to the leaf the log stored
    history: dict[int, bytes] = {}
    for text in source.historical_checkpoints():
        try:
            hist_note = parse_note(text)
            h = Checkpoint.parse_text(hist_note.text)
        except NoteError as exc:
            report.bad(None, f"an earlier checkpoint in the source is damaged: {exc}")
            continue
        if verified_by(hist_note, trusted) and h.size <= cp.size:
            history[h.size] = h.root
        elif h.size <= cp.size:
            report.bad(
                None, f"earlier checkpoint of size {h.size} has no valid signature by a trusted log key"
            )
    stored = source.stored_nodes(cp.size)
    wanted = {merkle.leaf_hash(e): None for e in (include or [])}
    size, frontier = 0, list[bytes]()
    roots: dict[int, bytes] = {}
    checkpoint_sizes = set(history) | {cp.size} | ({saved.size} if saved else set())
    leaf_index: dict[bytes, int] = {}
    bad_entries: set[int] = set()
    node_problems: list[int] = []  # first leaf of each stored node that disagrees with its entries
    if 0 in checkpoint_sizes:
        roots[0] = merkle.EMPTY_ROOT
    for item in source.items(cp.size):
        report.entries_checked += 1
        i = item.index
        problems_before = len(report.problems)
        if item.error or item.entry is None:
            report.bad(i, item.error or f"entry {i} is unreadable")
            leaf = item.stored_leaf if item.stored_leaf and len(item.stored_leaf) == 32 else bytes(32)
        else:
            leaf = merkle.leaf_hash(item.entry)
            try:
                parse_entry(item.entry)
            except ValueError as exc:
                report.bad(i, f"entry {i} is not a well-formed ledger entry: {exc}")
            if item.stored_leaf is not None and item.stored_leaf != leaf:
                report.bad(
                    i,
                    f"entry {i} does not hash to the leaf hash the log stored for it "
                    f"(the entry or its stored hash was altered)",
                )
        if len(report.problems) > problems_before:
            bad_entries.add(i)
        if leaf in wanted:
            leaf_index.setdefault(leaf, i)
        size, frontier, new_nodes = merkle.extend(size, frontier, [leaf])
        for level, index, node_h in new_nodes:
            got = stored.get((level, index))
            if got is not None and got != node_h:
                lo, hi = index << level, (index + 1) << level
                if any(lo <= b < hi for b in bad_entries):
                    continue  # explained by an altered entry below it
                node_problems.append(lo)
                report.problems.append(
                    f"stored node at level {level} index {index} (entries {lo}..{hi - 1}) "
                    f"differs from the hash of those entries"
                )
        if size in checkpoint_sizes:
            roots[size] = merkle.frontier_root(frontier)
    if size != cp.size:
        report.bad(size, f"the source holds {size} entries, the checkpoint says {cp.size}")
        return report

    if report.first_bad_index is None and node_problems:
        report.first_bad_index = min(node_problems)

    # 3. the signed roots: the newest, and every earlier checkpoint the source kept
    if roots.get(cp.size) != cp.root:
        report.bad(None, f"the {cp.size} entries do not hash to the root the checkpoint signed")
        prev = 0
        for hist_size in sorted(history):
            if roots.get(hist_size) != history[hist_size]:
                break
            prev = hist_size
        if report.first_bad_index is None:
            report.notes.append(
                f"no stored hash pins the change down: the first altered entry is at index "
                f"{prev} or later (earlier checkpoints still match)"
            )
            report.first_bad_index = prev

    # 4. the saved checkpoint: the log must have grown from it
    if saved is not None and saved.size <= cp.size:
        if saved.size and roots.get(saved.size) != saved.root:
            report.bad(
                None, f"the log's first {saved.size} entries no longer hash to the saved checkpoint's root"
            )
        if 0 < saved.size:
            proof = source.consistency_proof(saved.size, cp.size)
            if proof is not None:
                try:
                    merkle.verify_consistency(saved.size, cp.size, proof, saved.root, cp.root)
                except merkle.ProofError as exc:
                    report.bad(None, f"consistency proof from the saved size {saved.size}: {exc}")

    # 5. entries the caller wants proven present
    for entry in include or []:
        leaf = merkle.leaf_hash(entry)
        served = source.inclusion_proof(leaf, cp.size)
        if served is not None:
            index, proof = served
            try:
                merkle.verify_inclusion(index, cp.size, leaf, proof, cp.root)
                report.notes.append(f"entry included at index {index} (proof verified)")
            except merkle.ProofError as exc:
                report.bad(index, f"inclusion proof for entry at index {index}: {exc}")
        elif leaf in leaf_index:
            report.notes.append(f"entry included at index {leaf_index[leaf]} (recomputed tree)")
        else:
            report.bad(None, f"entry with leaf hash {base64.b64encode(leaf).decode()} is not in the log")
    return report
