"""Live: the real app on a loopback port, driven over HTTP by httpx, the witness CLI and the verifier CLI."""

from __future__ import annotations

import base64
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from civicmesh.app import create_app, service
from civicmesh.config import Settings
from civicmesh.ledger import merkle
from civicmesh.ledger.api import LedgerService
from civicmesh.ledger.cli import ledger_app
from civicmesh.ledger.note import Checkpoint, parse_note

pytestmark = pytest.mark.live
ORIGIN = "live.city.example/ledger"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[tuple[str, object]]:
    app = create_app(Settings(database_url=db_url, ledger_key_dir=tmp_path / "keys", ledger_origin=ORIGIN))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", service(app, LedgerService).ledger
    srv.should_exit = True
    thread.join(10)


def _wait_size(http: httpx.Client, base: str, size: int) -> Checkpoint:
    deadline = time.monotonic() + 20  # the integrator runs every second; this only bounds a hang
    while True:
        cp = Checkpoint.parse_text(parse_note(http.get(f"{base}/ledger/checkpoint").text).text)
        if cp.size >= size or time.monotonic() > deadline:
            return cp
        time.sleep(0.1)


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["detail"] and body["title"] and body["detail"] != body["title"]
    return body


def _tamper_entry(db_url: str, index: int) -> None:
    """What an insider with database access would do: change one byte of a stored entry."""
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url[len("sqlite:///") :])
        (entry,) = conn.execute("SELECT entry FROM ledger_entries WHERE idx = ?", (index,)).fetchone()
        changed = bytearray(entry)
        changed[changed.index(b"urn:") + 1] ^= 0x01
        conn.execute("UPDATE ledger_entries SET entry = ? WHERE idx = ?", (bytes(changed), index))
        conn.commit()
        conn.close()
        return
    import psycopg

    parsed = urlparse(db_url)
    schema = parse_qs(parsed.query)["options"][0].split("=")[1]
    with psycopg.connect(db_url.split("?")[0], autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema}")
        (entry,) = conn.execute("SELECT entry FROM ledger_entries WHERE idx = %s", (index,)).fetchone()
        changed = bytearray(entry)
        changed[changed.index(b"urn:") + 1] ^= 0x01
        conn.execute("UPDATE ledger_entries SET entry = %s WHERE idx = %s", (bytes(changed), index))


def test_live_ledger_end_to_end(server: tuple[str, object], db_url: str, tmp_path: Path) -> None:
    base, ledger = server
    runner = CliRunner()
    http = httpx.Client(timeout=10)

    first = http.get(f"{base}/ledger/checkpoint")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
    assert first.text.startswith(f"{ORIGIN}\n0\n")

    items = [
        {
            "kind": "data-rights.registered",
            "actor": "urn:org:transit",
            "subject": "urn:asset:bus-gps",
            "payload": {"owner": "urn:org:transit", "n": i},
        }
        for i in range(5)
    ]
    r = http.post(f"{base}/ledger/entries", json=items)
    assert r.status_code == 201 and r.json() == {"indices": [0, 1, 2, 3, 4]}
    cp = _wait_size(http, base, 5)
    assert cp.size == 5

    proof = http.get(f"{base}/ledger/proof/inclusion", params={"index": 3}).json()
    merkle.verify_inclusion(
        3, 5, base64.b64decode(proof["leaf_hash"]), [base64.b64decode(p) for p in proof["proof"]], cp.root
    )
    by_hash = http.get(f"{base}/ledger/proof/inclusion", params={"leaf_hash": proof["leaf_hash"]}).json()
    assert by_hash["leaf_index"] == 3
    cons = http.get(f"{base}/ledger/proof/consistency", params={"size1": 2, "size2": 5}).json()
    assert len(cons["proof"]) >= 1
    tile = http.get(f"{base}/ledger/tile/0/000.p/5")
    assert tile.status_code == 200 and len(tile.content) == 5 * 32
    assert "immutable" in tile.headers["cache-control"]
    assert merkle.root_of([tile.content[i : i + 32] for i in range(0, 160, 32)]) == cp.root
    bundle = http.get(f"{base}/ledger/tile/entries/000.p/5").content
    assert merkle.leaf_hash(bundle[2 : 2 + int.from_bytes(bundle[:2], "big")]) == tile.content[:32]
    listed = http.get(f"{base}/ledger/entries", params={"subject": "urn:asset:bus-gps"}).json()
    assert [e["index"] for e in listed["entries"]] == [0, 1, 2, 3, 4]
    assert listed["entries"][2]["inclusion"]["tree_size"] == 5

    # bad input: clear ProblemDetails, never a 500, nothing written
    _problem(http.get(f"{base}/ledger/proof/inclusion", params={"index": 5}), 400)
    _problem(http.get(f"{base}/ledger/proof/inclusion", params={"index": 0, "size": 0}), 400)
    _problem(http.get(f"{base}/ledger/proof/inclusion", params={"index": 0, "size": 99}), 400)
    _problem(http.get(f"{base}/ledger/proof/inclusion", params={"index": -1}), 400)
    _problem(http.get(f"{base}/ledger/proof/inclusion", params={"index": "x"}), 400)
    _problem(http.get(f"{base}/ledger/proof/inclusion"), 400)
    assert (
        "base64"
        in _problem(http.get(f"{base}/ledger/proof/inclusion", params={"leaf_hash": "%%%"}), 400)["detail"]
    )
    assert (
        "32"
        in _problem(http.get(f"{base}/ledger/proof/inclusion", params={"leaf_hash": "AAAA"}), 400)["detail"]
    )
    _problem(
        http.get(
            f"{base}/ledger/proof/inclusion", params={"leaf_hash": base64.b64encode(bytes(32)).decode()}
        ),
        404,
    )
    _problem(http.get(f"{base}/ledger/proof/consistency", params={"size1": 0, "size2": 5}), 400)
    _problem(http.get(f"{base}/ledger/proof/consistency", params={"size1": 3, "size2": 50}), 400)
    _problem(http.get(f"{base}/ledger/tile/0/12"), 400)
    _problem(http.get(f"{base}/ledger/tile/0/000"), 404)
    _problem(http.get(f"{base}/ledger/tile/0/000.p/6"), 404)
    _problem(http.get(f"{base}/ledger/checkpoints/3"), 404)
    huge = "99999999999999999999"  # beyond 64 bits: refused before it reaches the database
    _problem(http.get(f"{base}/ledger/entries/{huge}"), 400)
    _problem(http.get(f"{base}/ledger/checkpoints/{huge}"), 400)
    _problem(http.get(f"{base}/ledger/entries", params={"subject": "s", "after": huge}), 400)
    _problem(http.get(f"{base}/ledger/proof/inclusion", params={"index": huge}), 400)
    _problem(http.get(f"{base}/ledger/proof/consistency", params={"size1": 1, "size2": huge}), 400)
    _problem(http.get(f"{base}/ledger/tile/0/x{'9' * 3}/x999/x999/x999/x999/x999/x999/999"), 404)
    before = ledger.store.next_index()
    _problem(
        http.post(
            f"{base}/ledger/entries", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
    )
    _problem(http.post(f"{base}/ledger/entries", json=[items[0], {**items[0], "kind": "NOT OK"}]), 400)
    _problem(http.post(f"{base}/ledger/entries", json=[]), 400)
    assert ledger.store.next_index() == before

    # a second organization registers a witness, cosigns with the CLI; the checkpoint shows it
    wkey = tmp_path / "energy.key"
    out = runner.invoke(ledger_app, ["witness-keygen", "energy.example/witness", "--out", str(wkey)])
    assert out.exit_code == 0, out.output
    wvkey = out.output.strip()
    r = http.post(
        f"{base}/ledger/witnesses",
        json={"name": "energy.example/witness", "vkey": wvkey, "organization": "urn:org:energy"},
    )
    assert r.status_code == 201, r.text
    _problem(
        http.post(
            f"{base}/ledger/witnesses", json={"name": "w", "vkey": "garbage+1+AA==", "organization": "o"}
        ),
        400,
    )
    log_vkey = (tmp_path / "keys" / "log.vkey").read_text().strip()
    state = tmp_path / "witness-state.json"
    cosign_args = ["cosign", "--url", base, "--key", str(wkey), "--state", str(state), "--log-key", log_vkey]
    out = runner.invoke(ledger_app, cosign_args)
    assert out.exit_code == 0, out.output
    assert "— energy.example/witness " in http.get(f"{base}/ledger/checkpoint").text
    assert http.get(f"{base}/ledger/witnesses").json()[0]["last_cosigned_size"] == 5
    _problem(
        http.post(
            f"{base}/ledger/witnesses/energy.example/witness/cosignatures",
            json={"size": 5, "cosignature": "— energy.example/witness AAAAAAAAAAAA"},
        ),
        400,
    )

    # the log grows; the witness checks consistency from size 5 and cosigns again
    http.post(f"{base}/ledger/entries", json=items[:3])
    _wait_size(http, base, 8)
    out = runner.invoke(ledger_app, cosign_args)
    assert out.exit_code == 0, out.output
    saved = tmp_path / "saved-checkpoint.txt"
    out = runner.invoke(
        ledger_app,
        [
            "verify",
            "--url",
            base,
            "--log-key",
            log_vkey,
            "--witness-key",
            wvkey,
            "--min-cosigners",
            "1",
            "--save-checkpoint",
            str(saved),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "cosigned by: energy.example/witness" in out.output

    # an insider edits one stored byte: the verifier names the index
    _tamper_entry(db_url, 6)
    out = runner.invoke(
        ledger_app,
        ["verify", "--url", base, "--log-key", log_vkey, "--saved-checkpoint", str(saved), "--json"],
    )
    assert out.exit_code == 1
    assert '"first_bad_index": 6' in out.output
