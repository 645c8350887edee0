"""The ledger on both engines: appends, batched integration, proofs from stored nodes, witnesses, keys, export
and the offline verifier naming the first tampered index."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from civicmesh.errors import Problem
from civicmesh.ledger import merkle
from civicmesh.ledger.keys import generate_witness_key
from civicmesh.ledger.log import Ledger
from civicmesh.ledger.note import NoteError, VerifierKey, open_checkpoint, parse_note, verified_by
from civicmesh.ledger.verify import ExportSource, verify
from civicmesh.ledger.witness import Witness, WitnessRefused

ORIGIN = "city.example/ledger"


@pytest.fixture
def ledger(db_url: str, tmp_path: Path):
    lg = Ledger.open(db_url, ORIGIN, tmp_path / "keys", batch_size=1000)
    yield lg
    lg.close()


def _b(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def _fill(ledger: Ledger, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        ledger.append(
            "data-rights.registered",
            "urn:org:transit",
            f"urn:asset:{i % 4}",
            {"n": i},
            time="2026-11-28T10:00:00.000000Z",
        )


def test_empty_ledger_has_a_signed_checkpoint(ledger: Ledger) -> None:
    cp, note = open_checkpoint(ledger.checkpoint(), ledger.log_keys)
    assert (cp.origin, cp.size, cp.root) == (ORIGIN, 0, merkle.EMPTY_ROOT)


def test_append_is_provable_after_integration_and_matches_reference(ledger: Ledger) -> None:
    _fill(ledger, 41)
    assert ledger.integrated_size() == 0  # sequenced, waiting for the batch
    assert ledger.integrate() == 41
    cp, _ = open_checkpoint(ledger.checkpoint(), ledger.log_keys)
    rows = ledger.store.entries(0, 41)
    assert [r.index for r in rows] == list(range(41))
    reference = merkle.MemoryTree(merkle.leaf_hash(r.entry) for r in rows)
    assert cp.root == reference.root()
    for size in (1, 2, 3, 7, 8, 9, 16, 17, 40, 41):
        assert ledger.root_at(size) == reference.root(size)
        for i in range(size):
            p = ledger.inclusion_proof(i, size)
            assert _b(p["proof"]) == reference.inclusion_proof(i, size)
        for s1 in range(1, size + 1):
            assert _b(ledger.consistency_proof(s1, size)["proof"]) == reference.consistency_proof(s1, size)
    by_hash = ledger.inclusion_proof_by_hash(rows[17].leaf_hash)
    assert by_hash["leaf_index"] == 17
    merkle.verify_inclusion(17, 41, rows[17].leaf_hash, _b(by_hash["proof"]), cp.root)


def test_batches_integrate_by_count_and_checkpoints_stay_consistent(db_url: str, tmp_path: Path) -> None:
    lg = Ledger.open(db_url, ORIGIN, tmp_path / "keys", batch_size=10)
    try:
        _fill(lg, 25)
        assert lg.integrated_size() == 20  # two full batches integrated on their own
        lg.integrate()
        sizes = [s for s, _ in lg.store.checkpoints()]
        assert sizes == [0, 10, 20, 25]
        old = lg.tree(10)
        new = lg.tree()
        merkle.verify_consistency(10, 25, _b(lg.consistency_proof(10)["proof"]), old.root, new.root)
    finally:
        lg.close()


def test_entries_by_subject_with_proofs_and_the_rights_helper(ledger: Ledger) -> None:
    i = ledger.register_data_rights("urn:ngsi-ld:DataProduct:bus-gps", "urn:org:transit", b"GTFS-RT feed v2")
    j = ledger.append(
        "data-asset.transaction",
        "urn:org:transit",
        "urn:ngsi-ld:DataProduct:bus-gps",
        {
            "agreement": "urn:agreement:7",
            "asset": "urn:ngsi-ld:DataProduct:bus-gps",
            "provider": "urn:org:transit",
            "consumer": "urn:org:logistics",
            "price": "120.00",
            "currency": "CNY",
            "settlement": "settled",
        },
    )
    ledger.append("agreement.transition", "urn:org:logistics", "urn:agreement:7",
                  {"agreement": "urn:agreement:7", "from": "offered", "to": "active", "policy_sha256": None})
    ledger.append("gate.decision", "urn:org:logistics", "urn:ngsi-ld:Bus:1",
                  {"action": "read", "allowed": True, "reason": "agreement 7", "agreement": None})
    ledger.append("metering.record", "urn:org:logistics", "urn:agreement:7",
                  {"agreement": "urn:agreement:7", "consumer": "urn:org:logistics",
                   "asset": "urn:ngsi-ld:DataProduct:bus-gps", "quantity": 42, "unit": "entities",
                   "period": ["2026-11-28T00:00:00Z", "2026-11-28T01:00:00Z"]})
    ledger.append("citizen.milestone", "urn:org:hotline", "urn:open311:req:9",
                  {"request": "urn:open311:req:9", "milestone": "dispatched", "detail": {}})
    ledger.append("access-request.transition", "urn:org:logistics", "urn:req:1",
                  {"request": "urn:req:1", "from": None, "to": "pending", "reason": None})
    ledger.integrate()
    got = ledger.entries_by_subject("urn:ngsi-ld:DataProduct:bus-gps")
    assert [e["index"] for e in got["entries"]] == [i, j]
    cp, _ = open_checkpoint(got["checkpoint"], ledger.log_keys)
    for e in got["entries"]:
        record = orjson.loads(e["entry"])
        assert record["subject"] == "urn:ngsi-ld:DataProduct:bus-gps"
        merkle.verify_inclusion(
            e["index"], cp.size, base64.b64decode(e["leaf_hash"]), _b(e["inclusion"]["proof"]), cp.root
        )
    first = orjson.loads(got["entries"][0]["entry"])
    assert first["kind"] == "data-rights.registered" and first["actor"] == "urn:org:transit"
    import hashlib

    assert (
        got["entries"][0]["payload"]["description_sha256"] == hashlib.sha256(b"GTFS-RT feed v2").hexdigest()
    )


def test_dedupe_key_appends_once(ledger: Ledger) -> None:
    a = ledger.append("citizen.milestone", "urn:org:x", "urn:r:1", {"m": 1}, dedupe_key="outbox:5")
    b = ledger.append("citizen.milestone", "urn:org:x", "urn:r:1", {"m": 1}, dedupe_key="outbox:5")
    assert a == b and ledger.store.next_index() == 1


@pytest.mark.parametrize(
    "item,match",
    [
        ({"kind": "Bad Kind", "actor": "a", "subject": "s", "payload": {}}, "kind"),
        ({"kind": "x.y", "actor": "", "subject": "s", "payload": {}}, "actor"),
        ({"kind": "x.y", "actor": "a", "subject": "s\n", "payload": {}}, "control"),
        ({"kind": "x.y", "actor": "a", "subject": "s", "payload": {}, "time": "yesterday"}, "time"),
        ({"kind": "x.y", "actor": "a", "subject": "s"}, "payload"),
        ({"kind": "x.y", "actor": "a", "subject": "s", "payload": {}, "extra": 1}, "unknown"),
        ({"kind": "x.y", "actor": "a" * 600, "subject": "s", "payload": {}}, "limit"),
    ],
)
def test_malformed_entries_write_nothing(ledger: Ledger, item: dict, match: str) -> None:
    good = {"kind": "x.y", "actor": "a", "subject": "s", "payload": {}}
    with pytest.raises(Problem, match=match):
        ledger.append_many([good, item])
    assert ledger.store.next_index() == 0


def test_proof_requests_beyond_or_below_the_tree(ledger: Ledger) -> None:
    _fill(ledger, 5)
    ledger.integrate()
    for call in (
        lambda: ledger.inclusion_proof(5),
        lambda: ledger.inclusion_proof(0, 6),
        lambda: ledger.inclusion_proof(0, 0),
        lambda: ledger.consistency_proof(0, 5),
        lambda: ledger.consistency_proof(4, 9),
        lambda: ledger.consistency_proof(5, 4),
        lambda: ledger.inclusion_proof_by_hash(b"short"),
    ):
        with pytest.raises(Problem) as exc:
            call()
        assert exc.value.status == 400
    with pytest.raises(Problem) as missing:
        ledger.inclusion_proof_by_hash(bytes(32))
    assert missing.value.status == 404


def test_tiles_hold_the_stored_hashes(ledger: Ledger) -> None:
    ledger.append_many(
        [{"kind": "k.t", "actor": "a", "subject": f"s{i}", "payload": {"i": i}} for i in range(600)]
    )
    ledger.integrate()
    rows = ledger.store.entries(0, 600)
    tile = ledger.tile(0, 1, 256)
    assert tile == b"".join(r.leaf_hash for r in rows[256:512])
    partial = ledger.tile(0, 2, 600 - 512)
    assert len(partial) == 88 * 32
    level1 = ledger.tile(1, 0, 2)  # tree level 8: two complete 256-leaf subtrees
    reference = merkle.MemoryTree(r.leaf_hash for r in rows)
    assert level1 == reference.nodes[(8, 0)] + reference.nodes[(8, 1)]
    bundle = ledger.entry_bundle(0, 256)
    assert int.from_bytes(bundle[:2], "big") == len(rows[0].entry)
    assert bundle[2 : 2 + len(rows[0].entry)] == rows[0].entry
    with pytest.raises(Problem):
        ledger.tile(0, 2, 256)  # not full yet
    with pytest.raises(Problem):
        ledger.tile(1, 0, 3)


def test_witness_cosigns_consistent_growth_and_refuses_a_fork(
    ledger: Ledger, tmp_path: Path, db_url: str
) -> None:
    wkey = generate_witness_key("energy.example/witness")
    ledger.add_witness("energy.example/witness", wkey.verifier.encode(), "urn:org:energy")
    witness = Witness(wkey, tmp_path / "witness-state.json")
    _fill(ledger, 6)
    ledger.integrate()
    line = witness.cosign(ledger.checkpoint(), ledger.log_keys, [])
    ledger.add_cosignature("energy.example/witness", 6, line)
    shown = parse_note(ledger.checkpoint())
    assert verified_by(shown, [VerifierKey.parse(wkey.verifier.encode())])
    assert ledger.witnesses()[0]["last_cosigned_size"] == 6

    _fill(ledger, 3, start=6)
    ledger.integrate()
    proof = _b(ledger.consistency_proof(6)["proof"])
    witness.cosign(ledger.checkpoint(), ledger.log_keys, proof)
    assert witness.state(ORIGIN).size == 9

    # A second log with the same key but different history (a fork) cannot get a cosignature.
    # The forks live in their own SQLite files: what is under test here is the witness, not the engine.
    fork_url = f"sqlite:///{tmp_path / 'fork.db'}"
    fork = Ledger(Ledger.open(fork_url, ORIGIN, tmp_path / "keys").store, ORIGIN, ledger.signer)
    try:
        for i in range(12):
            fork.append("data-rights.registered", "urn:org:evil", f"urn:asset:{i}", {"forged": i})
        fork.integrate()
        with pytest.raises(WitnessRefused, match="not consistent"):
            witness.cosign(fork.checkpoint(), ledger.log_keys, _b(fork.consistency_proof(9)["proof"]))
        smaller = Ledger(
            Ledger.open(fork_url.replace("fork", "small"), ORIGIN, tmp_path / "keys").store,
            ORIGIN,
            ledger.signer,
        )
        smaller.append("x.y", "a", "s", {})
        smaller.integrate()
        with pytest.raises(WitnessRefused, match="smaller"):
            witness.cosign(smaller.checkpoint(), ledger.log_keys, [])
        smaller.close()
    finally:
        fork.close()
    assert witness.state(ORIGIN).size == 9  # nothing was recorded by the refusals


def test_platform_rejects_bad_cosignatures(ledger: Ledger) -> None:
    wkey = generate_witness_key("w.example/w1")
    other = generate_witness_key("w.example/w1")
    ledger.add_witness("w.example/w1", wkey.verifier.encode(), "urn:org:w")
    with pytest.raises(Problem) as dup:
        ledger.add_witness("w.example/w1", other.verifier.encode(), "urn:org:w")
    assert dup.value.status == 409
    from civicmesh.ledger.note import cosign as make_cosig

    text = parse_note(ledger.checkpoint()).text
    forged = make_cosig(text, other).line()
    with pytest.raises(Problem, match="registered key"):
        ledger.add_cosignature("w.example/w1", 0, forged)
    with pytest.raises(Problem, match="no witness"):
        ledger.add_cosignature("nobody", 0, forged)
    with pytest.raises(Problem, match="base64"):
        ledger.add_cosignature("w.example/w1", 0, "\u2014 w.example/w1 @@@")
    with pytest.raises(Problem):
        ledger.add_witness("w2", ledger.signer.verifier.encode(), "urn:org:w")  # not a cosigner key
    assert ledger.store.cosignatures(0) == []


def test_key_rotation_publishes_the_handover(ledger: Ledger, tmp_path: Path) -> None:
    _fill(ledger, 3)
    ledger.integrate()
    old = ledger.signer.verifier
    new = ledger.rotate_key(tmp_path / "keys").verifier
    note = parse_note(ledger.checkpoint())
    assert set(verified_by(note, [old, new])) == {old, new}
    _fill(ledger, 2, start=3)
    ledger.integrate()
    assert verified_by(parse_note(ledger.checkpoint()), [old, new]) == [new]
    assert {k["status"] for k in ledger.store.keys()} == {"active", "retired"}
    reopened = Ledger(ledger.store, ORIGIN, ledger.signer)
    assert reopened.integrated_size() == 5
    with pytest.raises(NoteError):
        Ledger.open("sqlite:///" + str(tmp_path / "other.db"), "other.example/log", tmp_path / "keys")


def _export(ledger: Ledger, tmp_path: Path, n: int = 40) -> tuple[Path, list[bytes]]:
    _fill(ledger, n)
    ledger.integrate()
    path = tmp_path / "ledger-export.jsonl"
    ledger.export(path)
    return path, path.read_bytes().splitlines(keepends=True)


def test_export_verifies_offline(ledger: Ledger, tmp_path: Path) -> None:
    path, _ = _export(ledger, tmp_path)
    keys = [k.encode() for k in ledger.log_keys]
    entry = ledger.store.entry(7).entry
    report = verify(ExportSource(path), log_keys=keys, include=[entry])
    assert report.ok, report.problems
    assert report.entries_checked == 40 and report.first_bad_index is None
    assert any("index 7" in n for n in report.notes)
    wrong = verify(
        ExportSource(path), log_keys=[generate_witness_key("x").verifier.encode().replace("x+", "x+")]
    )
    assert not wrong.ok


def _line_of_index(lines: list[bytes], index: int) -> int:
    return next(n for n, line in enumerate(lines) if line.startswith(b'{"index":%d,' % index))


@pytest.mark.parametrize("where", ["entry", "leaf_hash"])
def test_flipped_byte_in_an_entry_is_named(ledger: Ledger, tmp_path: Path, where: str) -> None:
    path, lines = _export(ledger, tmp_path)
    n = _line_of_index(lines, 23)
    line = bytearray(lines[n])
    pos = line.index(b"urn:org:transit") + 4 if where == "entry" else line.index(b'"leaf_hash":"') + 14
    line[pos] ^= 0x01
    lines[n] = bytes(line)
    path.write_bytes(b"".join(lines))
    report = verify(ExportSource(path), log_keys=[k.encode() for k in ledger.log_keys])
    assert not report.ok
    assert report.first_bad_index == 23, report.problems


def test_flipped_byte_in_a_stored_node_is_named(ledger: Ledger, tmp_path: Path) -> None:
    path, lines = _export(ledger, tmp_path)
    n = next(i for i, line in enumerate(lines) if line.startswith(b'{"node":[2,3]'))  # entries 12..15
    line = bytearray(lines[n])
    pos = line.index(b'"hash":"') + 8
    line[pos] = ord("A") if line[pos] != ord("A") else ord("B")  # another base64 digit: another first byte
    lines[n] = bytes(line)
    path.write_bytes(b"".join(lines))
    report = verify(ExportSource(path), log_keys=[k.encode() for k in ledger.log_keys])
    assert report.first_bad_index == 12
    assert any("level 2 index 3" in p for p in report.problems)


def test_rewritten_history_is_caught_by_the_signed_root(ledger: Ledger, tmp_path: Path) -> None:
    """An attacker who rewrites an entry and recomputes its leaf hash and every node still cannot re-sign."""
    path, lines = _export(ledger, tmp_path)
    n = _line_of_index(lines, 30)
    rec = orjson.loads(lines[n])
    rec["entry"] = rec["entry"].replace("urn:org:transit", "urn:org:forger")
    rec["leaf_hash"] = base64.b64encode(merkle.leaf_hash(rec["entry"].encode())).decode()
    lines[n] = orjson.dumps(rec) + b"\n"
    kept = [ln for ln in lines if not ln.startswith(b'{"node"')]  # drop the nodes that would betray it
    path.write_bytes(b"".join(kept))
    report = verify(ExportSource(path), log_keys=[k.encode() for k in ledger.log_keys])
    assert not report.ok
    assert any("do not hash to the root" in p for p in report.problems)


def test_saved_checkpoint_consistency(ledger: Ledger, tmp_path: Path) -> None:
    _fill(ledger, 10)
    ledger.integrate()
    saved = ledger.checkpoint()
    path, _ = _export(ledger, tmp_path, 5)
    keys = [k.encode() for k in ledger.log_keys]
    assert verify(ExportSource(path), log_keys=keys, saved_checkpoint=saved).ok
    # a checkpoint the log never signed for this history
    from civicmesh.ledger.note import Checkpoint, sign_note

    forged = sign_note(Checkpoint(ORIGIN, 10, bytes(32)).text(), [ledger.signer]).encode()
    report = verify(ExportSource(path), log_keys=keys, saved_checkpoint=forged)
    assert any("no longer hash to the saved checkpoint" in p for p in report.problems)


def test_exchange_and_citizen_events_become_entries_once(ledger: Ledger) -> None:
    import asyncio

    from civicmesh.events import ChangeEvent
    from civicmesh.ledger.api import _event_recorder

    handle = _event_recorder(lambda: ledger)
    agreed = ChangeEvent(
        seq=41,
        tenant="default",
        kind="exchange.agreement.activated",
        subject="urn:agreement:7",
        at="2026-11-28T10:00:00Z",
        data={"actor": "urn:org:logistics", "policy": "odrl:use"},
    )
    entity = ChangeEvent(
        seq=42,
        tenant="default",
        kind="entity.updated",
        subject="urn:ngsi-ld:Bus:1",
        at="2026-11-28T10:00:01Z",
    )

    async def deliver() -> None:
        await handle(agreed)
        await handle(agreed)  # at-least-once delivery: the replay must not append twice
        await handle(entity)

    asyncio.run(deliver())
    assert ledger.store.next_index() == 1
    row = ledger.store.entry(0)
    record = orjson.loads(row.entry)
    assert (record["kind"], record["actor"], record["subject"]) == (
        "exchange.agreement.activated",
        "urn:org:logistics",
        "urn:agreement:7",
    )
