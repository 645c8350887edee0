"""The trusted ledger: an append-only RFC 9162 Merkle log with signed C2SP checkpoints and witnesses.

Writing happens in two steps, like Tessera's "promise then proof": `append` gives an entry its index at
once (one short transaction), and `integrate` (every `interval` seconds, or as soon as `batch_size` entries
wait) hashes the waiting entries into the tree, stores the new perfect-subtree nodes and signs one
checkpoint for the whole batch. Proofs for any size up to the newest checkpoint are folded from stored
nodes: O(log n) reads.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import threading
import time as _time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from civicmesh.errors import Problem
from civicmesh.ledger import entries as E
from civicmesh.ledger import merkle, tiles
from civicmesh.ledger.keys import load_or_create_log_key, rotate_log_key
from civicmesh.ledger.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    NoteError,
    SignerKey,
    VerifierKey,
    cosignature_time,
    parse_note,
    parse_signature_line,
    sign_note,
)
from civicmesh.store.db import Database
from civicmesh.store.ledger import Integration, LedgerStore, NewEntry
from civicmesh.workers import Periodic

log = logging.getLogger("civicmesh.ledger")

EXPORT_FORMAT = "civicmesh-ledger-export/1"


MAX_INDEX = (1 << 63) - 1  # both engines store indices and sizes as signed 64-bit integers


def check_index(value: int, name: str, *, minimum: int = 0) -> int:
    """Refuse numbers the database cannot hold before they reach it (they would otherwise be a 500)."""
    if not minimum <= value <= MAX_INDEX:
        raise Problem("BadRequestData", f"{name} {value} is outside {minimum}..{MAX_INDEX}")
    return value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Ledger:
    def __init__(
        self,
        store: LedgerStore,
        origin: str,
        signer: SignerKey,
        *,
        batch_size: int = 1000,
        interval: float = 1.0,
        extra_signers: Iterable[SignerKey] = (),
    ) -> None:
        if signer.name != origin:
            raise NoteError(f"signer key name {signer.name!r} differs from origin {origin!r}")
        self.store = store
        self.origin = origin
        self.signer = signer
        # Keys that also sign the next checkpoints: used for one hand-over checkpoint after a rotation.
        self._extra_signers = list(extra_signers)
        self.batch_size = batch_size
        self.interval = interval
        self._integrate_lock = threading.Lock()
        self._integrator = Periodic("ledger-integrator", self._integrate_round, interval, wait_first=True)
        # The largest tree size seen: the log never shrinks, so a requested size up to it needs no query.
        self._known_size = 0
        self.store.record_key(signer.verifier.encode(), "active", E.utc_now())
        self.integrate()  # the empty tree (or a tree left unintegrated by a crash) gets its checkpoint now

    @classmethod
    def on_database(cls, db: Database, origin: str, key_dir: Path, **kw: Any) -> Ledger:
        """The ledger on an open Database the platform shares (call from a worker thread); `close` leaves the
        Database open."""
        store = LedgerStore(db)
        store.migrate()
        return cls(store, origin, load_or_create_log_key(key_dir, origin), **kw)

    @classmethod
    def open(cls, database_url: str, origin: str, key_dir: Path, **kw: Any) -> Ledger:
        store = LedgerStore.open(database_url)
        try:
            return cls(store, origin, load_or_create_log_key(key_dir, origin), **kw)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    @property
    def log_keys(self) -> list[VerifierKey]:
        """Every key this log has signed with (active and retired), as published at /ledger/keys."""
        return [VerifierKey.parse(k["vkey"]) for k in self.store.keys()]

    # ------------------------------------------------------------------------------------------ appending

    def _new_entry(
        self,
        kind: str,
        actor: str,
        subject: str,
        payload: Any,
        time: str | None,
        dedupe_key: str | None,
        keep_payload: bool,
    ) -> NewEntry:
        digest, raw = E.payload_digest(payload)
        entry = E.build_entry(kind, actor, subject, digest, time)
        record = orjson.loads(entry)
        kept = None
        if keep_payload and not isinstance(payload, bytes | bytearray):
            kept = raw.decode()
        if dedupe_key is not None and (not isinstance(dedupe_key, str) or not 0 < len(dedupe_key) <= 256):
            raise Problem("BadRequestData", "dedupe_key must be a string of 1..256 characters")
        return NewEntry(
            merkle.leaf_hash(entry), entry, kind, actor, subject, record["time"], kept, dedupe_key
        )

    def append(
        self,
        kind: str,
        actor: str,
        subject: str,
        payload: Any,
        *,
        time: str | None = None,
        dedupe_key: str | None = None,
        keep_payload: bool = True,
    ) -> int:
        """Sequence one entry and return its index. The entry is provable after the next integration (at most
        `interval` seconds, or at once when `batch_size` entries are waiting). With a `dedupe_key` an entry
        that was already appended (e.g. an event delivered twice) returns its first index."""
        return self.append_many(
            [
                {
                    "kind": kind,
                    "actor": actor,
                    "subject": subject,
                    "payload": payload,
                    "time": time,
                    "dedupe_key": dedupe_key,
                    "keep_payload": keep_payload,
                }
            ]
        )[0]

    def append_many(self, items: Iterable[Mapping[str, Any]]) -> list[int]:
        """Sequence many entries in one transaction; all or none are written."""
        rows = []
        for n, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise Problem("BadRequestData", f"entry {n} is not an object")
            unknown = set(item) - {
                "kind",
                "actor",
                "subject",
                "payload",
                "time",
                "dedupe_key",
                "keep_payload",
            }
            if unknown:
                raise Problem("BadRequestData", f"entry {n} has unknown fields: {', '.join(sorted(unknown))}")
            if "payload" not in item:
                raise Problem("BadRequestData", f"entry {n} has no payload")
            rows.append(
                self._new_entry(
                    item.get("kind", ""),
                    item.get("actor", ""),
                    item.get("subject", ""),
                    item["payload"],
                    item.get("time"),
                    item.get("dedupe_key"),
                    bool(item.get("keep_payload", True)),
                )
            )
        if not rows:
            return []
        indices = self.store.append(rows)
        if indices[-1] + 1 - self.integrated_size() >= self.batch_size:
            self.integrate()
        return indices

    # The one typed helper (the `ledger register-asset` command uses it); every other record goes through `append`
    # with its own kind, so the ledger knows no room's vocabulary.

    def register_data_rights(
        self,
        asset: str,
        owner: str,
        description: Any,
        *,
        actor: str | None = None,
        rights: str = "ownership",
        **kw: Any,
    ) -> int:
        """A data product or asset, its owner and the hash of its description (e.g. its DCAT record)."""
        desc_hash, _ = E.payload_digest(description)
        return self.append(
            E.DATA_RIGHTS_REGISTERED,
            actor or owner,
            asset,
            {"asset": asset, "owner": owner, "rights": rights, "description_sha256": desc_hash},
            **kw,
        )

    # ------------------------------------------------------------------------------------------ integrating

    def _step(self, size: int, frontier: list[bytes], leaves: list[bytes]) -> Integration:
        new_size, new_frontier, nodes = merkle.extend(size, frontier, leaves)
        cp = Checkpoint(self.origin, new_size, merkle.frontier_root(new_frontier))
        note = sign_note(cp.text(), [self.signer, *self._extra_signers])
        return Integration(new_size, new_frontier, nodes, note.encode(), E.utc_now())

    def integrate(self, max_entries: int | None = None) -> int:
        """Integrate waiting entries (up to `max_entries`, default all), sign a checkpoint; the new size."""
        with self._integrate_lock:
            while True:
                done = self.store.integrate(max_entries or 100_000, self._step)
                if done is None or max_entries is not None or done.size >= self.store.next_index():
                    break
            if done is not None:
                self._extra_signers = []
        return self.integrated_size()

    def integrated_size(self) -> int:
        size = self.store.tree_size()
        self._known_size = max(self._known_size, size)
        return size

    async def _integrate_round(self) -> None:
        # A transient database error is logged by the Periodic and the next round retries: integration never
        # stops for good.
        await asyncio.to_thread(self.integrate)

    def start(self) -> None:
        self._integrator.start()

    async def stop(self) -> None:
        await self._integrator.stop()
        try:
            await asyncio.to_thread(self.integrate)
        except RuntimeError:  # the interpreter is exiting and its thread pool is gone: the next start integrates
            log.warning("ledger: final integration skipped; the next start integrates what is sequenced")

    # ------------------------------------------------------------------------------------------ checkpoints

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint (newest, or at `size`) with every cosignature it has collected."""
        if size is None:
            latest = self.store.latest_checkpoint()
            if latest is None:
                raise Problem("ResourceNotFound", "the ledger has no checkpoint yet")
            size, text = latest
        else:
            found = self.store.checkpoint(check_index(size, "tree size"))
            if found is None:
                raise Problem("ResourceNotFound", f"no checkpoint was signed at tree size {size}")
            text = found
        note = parse_note(text)
        cosigs = [parse_signature_line(line) for _, line in self.store.cosignatures(size)]
        return note.with_signatures(cosigs).encode()

    def cosigned_checkpoint(self) -> str:
        size = self.store.latest_cosigned_size()
        if size is None:
            raise Problem("ResourceNotFound", "no witness has cosigned a checkpoint of this ledger yet")
        return self.checkpoint(size)

    def tree(self, size: int | None = None) -> Checkpoint:
        return Checkpoint.parse_text(parse_note(self.checkpoint(size)).text)

    def rotate_key(self, key_dir: Path) -> SignerKey:
        """Replace the signing key; the newest checkpoint is re-signed by both keys (the hand-over)."""
        with self._integrate_lock:
            old, new = rotate_log_key(key_dir, self.origin)
            self.store.record_key(old.verifier.encode(), "retired", E.utc_now())
            self.store.record_key(new.verifier.encode(), "active", E.utc_now())
            self.signer = new
            latest = self.store.latest_checkpoint()
            if latest is not None:
                size, text = latest
                both = sign_note(parse_note(text).text, [new, old])
                self.store.replace_checkpoint_note(size, both.encode())
        return new

    # ------------------------------------------------------------------------------------------ proofs

    def _size_arg(self, size: int | None) -> int:
        if size is not None and 0 < size <= self._known_size:
            return size
        current = self.integrated_size()
        if size is None:
            return current
        if size > current:
            raise Problem(
                "BadRequestData", f"tree size {size} is beyond the newest checkpoint (size {current})"
            )
        if size <= 0:
            raise Problem("BadRequestData", f"tree size must be at least 1, not {size}")
        return size

    def _fold(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        nodes = self.store.nodes(merkle.nodes_for(ranges))
        return [merkle.range_hash(lo, hi, nodes) for lo, hi in ranges]

    def root_at(self, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        return self._fold([(0, size)])[0]

    def inclusion_proof(self, index: int, size: int | None = None) -> dict[str, Any]:
        tree_size = self._size_arg(size)
        if tree_size == 0:
            raise Problem("BadRequestData", "the tree is empty: no entry can be proven yet")
        if not 0 <= index < tree_size:
            raise Problem("BadRequestData", f"leaf index {index} is outside the tree of size {tree_size}")
        ranges = merkle.inclusion_ranges(index, tree_size)
        nodes = self.store.nodes(merkle.nodes_for(ranges) | {(0, index)})
        leaf = nodes[(0, index)]
        proof = [merkle.range_hash(lo, hi, nodes) for lo, hi in ranges]
        return {
            "leaf_index": index,
            "tree_size": tree_size,
            "leaf_hash": b64(leaf),
            "proof": [b64(p) for p in proof],
        }

    def inclusion_proof_by_hash(self, leaf_hash: bytes, size: int | None = None) -> dict[str, Any]:
        if len(leaf_hash) != 32:
            raise Problem("BadRequestData", f"leaf hash is {len(leaf_hash)} bytes, a SHA-256 hash is 32")
        tree_size = self._size_arg(size)
        index = self.store.index_of_leaf(leaf_hash, tree_size)
        if index is None:
            raise Problem(
                "ResourceNotFound", f"no leaf with hash {b64(leaf_hash)} in the tree of size {tree_size}"
            )
        return self.inclusion_proof(index, tree_size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> dict[str, Any]:
        tree_size = self._size_arg(size2)
        if size1 <= 0:
            raise Problem(
                "BadRequestData",
                f"size1 must be at least 1 (a proof from an empty tree proves nothing), not {size1}",
            )
        if size1 > tree_size:
            raise Problem("BadRequestData", f"size1 {size1} is larger than size2 {tree_size}")
        proof = self._fold(merkle.consistency_ranges(size1, tree_size))
        return {"size1": size1, "size2": tree_size, "proof": [b64(p) for p in proof]}

    # ------------------------------------------------------------------------------------------ tiles

    def tile(self, level: int, index: int, width: int) -> bytes:
        size = self.integrated_size()
        available = tiles.nodes_at(level, size) - index * tiles.TILE_WIDTH
        if available < width:
            raise Problem(
                "ResourceNotFound",
                f"tile {tiles.tile_path(level, index, width)} is not available at tree size {size}",
            )
        start = index * tiles.TILE_WIDTH
        hashes = self.store.node_run(tiles.TILE_HEIGHT * level, start, start + width)
        return b"".join(hashes)

    def entry_bundle(self, index: int, width: int) -> bytes:
        size = self.integrated_size()
        if size - index * tiles.TILE_WIDTH < width:
            raise Problem(
                "ResourceNotFound",
                f"entry bundle {tiles.tile_path('entries', index, width)} is not "
                f"available at tree size {size}",
            )
        start = index * tiles.TILE_WIDTH
        rows = self.store.entries(start, start + width)
        return b"".join(struct.pack(">H", len(r.entry)) + r.entry for r in rows)

    # ------------------------------------------------------------------------------------------ entries

    def entry(self, index: int) -> dict[str, Any]:
        row = self.store.entry(check_index(index, "entry index"))
        if row is None:
            raise Problem("ResourceNotFound", f"no ledger entry at index {index}")
        return self._entry_doc(row, self.integrated_size())

    def _entry_doc(self, row: Any, size: int, with_proof: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "index": row.index,
            "entry": row.entry.decode(),
            "leaf_hash": b64(row.leaf_hash),
            "payload": None if row.payload is None else orjson.loads(row.payload),
            "integrated": row.index < size,
        }
        if with_proof and row.index < size:
            doc["inclusion"] = self.inclusion_proof(row.index, size)
        return doc

    def entries_by_subject(
        self,
        subject: str,
        *,
        kind: str | None = None,
        after: int = -1,
        limit: int = 100,
        with_proofs: bool = True,
    ) -> dict[str, Any]:
        """Entries about one subject, each with its inclusion proof in the newest checkpoint."""
        check_index(after, "after", minimum=-1)
        size = self.integrated_size()
        rows = self.store.entries_by_subject(subject, kind, after, limit)
        return {
            "checkpoint": self.checkpoint(size),
            "tree_size": size,
            "entries": [self._entry_doc(r, size, with_proofs) for r in rows],
        }

    # ------------------------------------------------------------------------------------------ witnesses

    def add_witness(self, name: str, vkey: str, organization: str) -> dict[str, Any]:
        try:
            key = VerifierKey.parse(vkey)
        except NoteError as exc:
            raise Problem("BadRequestData", f"witness key: {exc}") from None
        if key.alg != ALG_COSIGNATURE_V1:
            raise Problem("BadRequestData", "a witness key must be a cosignature/v1 key (type 0x04)")
        if key.name != name:
            raise Problem("BadRequestData", f"witness key is named {key.name!r}, not {name!r}")
        if not organization:
            raise Problem("BadRequestData", "a witness belongs to an organization: give its id")
        if not self.store.add_witness(name, key.encode(), organization, E.utc_now()):
            raise Problem("AlreadyExists", f"a witness named {name!r} is already registered")
        return {"name": name, "vkey": key.encode(), "organization": organization}

    def witnesses(self) -> list[dict[str, Any]]:
        return self.store.witnesses()

    def add_cosignature(self, witness: str, size: int, line: str) -> dict[str, Any]:
        """Accept a witness's cosignature on the checkpoint of `size`, after checking it verifies."""
        check_index(size, "tree size")
        registered = {w["name"]: w for w in self.store.witnesses()}
        if witness not in registered:
            raise Problem("ResourceNotFound", f"no witness named {witness!r} is registered")
        key = VerifierKey.parse(registered[witness]["vkey"])
        try:
            sig = parse_signature_line(line)
        except NoteError as exc:
            raise Problem("BadRequestData", f"cosignature: {exc}") from None
        if sig.name != witness or sig.key_id != key.key_id:
            raise Problem(
                "BadRequestData",
                f"cosignature is by {sig.name!r} key {sig.key_id.hex()}, not by the "
                f"registered key of {witness!r} ({key.key_id.hex()})",
            )
        text = self.store.checkpoint(size)
        if text is None:
            raise Problem("ResourceNotFound", f"no checkpoint was signed at tree size {size}")
        last = registered[witness]["last_cosigned_size"]
        if last is not None and size < last:
            raise Problem(
                "Conflict",
                f"witness {witness!r} already cosigned size {last}; a cosignature for the "
                f"smaller size {size} is refused",
            )
        note = parse_note(text)
        ts = cosignature_time(note, key, sig)
        if ts is None:
            raise Problem(
                "BadRequestData",
                f"cosignature by {witness!r} does not verify for the checkpoint of size {size}",
            )
        if ts > _time.time() + 300:
            raise Problem("BadRequestData", f"cosignature timestamp {ts} is in the future")
        self.store.add_cosignature(size, witness, sig.line().rstrip("\n"), E.utc_now())
        return {
            "witness": witness,
            "size": size,
            "time": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    # ------------------------------------------------------------------------------------------ export

    def export(self, path: Path) -> int:
        """Write the log (up to the newest checkpoint) as JSON lines for offline verification; its size."""
        size = self.integrated_size()
        header = {
            "format": EXPORT_FORMAT,
            "origin": self.origin,
            "tree_size": size,
            "log_keys": [k["vkey"] for k in self.store.keys()],
            "witnesses": [
                {"name": w["name"], "vkey": w["vkey"], "organization": w["organization"]}
                for w in self.store.witnesses()
            ],
            "exported_at": E.utc_now(),
        }
        tmp = path.with_name(path.name + ".part")
        with tmp.open("wb") as f:
            f.write(orjson.dumps(header) + b"\n")
            for cp_size, _ in self.store.checkpoints():
                f.write(orjson.dumps({"checkpoint": self.checkpoint(cp_size)}) + b"\n")
            step = 10_000
            for start in range(0, size, step):
                for row in self.store.entries(start, min(size, start + step)):
                    f.write(
                        orjson.dumps(
                            {
                                "index": row.index,
                                "entry": row.entry.decode(),
                                "leaf_hash": b64(row.leaf_hash),
                                "payload": None if row.payload is None else orjson.loads(row.payload),
                            }
                        )
                        + b"\n"
                    )
            for level, index, h in self.store.iter_nodes(size):
                f.write(orjson.dumps({"node": [level, index], "hash": b64(h)}) + b"\n")
        tmp.replace(path)
        return size
