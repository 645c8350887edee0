"""`civicmesh ledger ...`: keys, appending, export, the offline verifier and the witness's cosign command."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from civicmesh.config import Settings
from civicmesh.errors import Problem
from civicmesh.ledger.keys import (
    generate_log_key,
    generate_witness_key,
    read_signer,
    read_verifier,
    write_secret,
)
from civicmesh.ledger.note import NoteError

ledger_app = typer.Typer(
    help="The trusted ledger: an RFC 9162 Merkle log with signed, cosigned checkpoints.", no_args_is_help=True
)
console = Console(soft_wrap=True)  # keys and hashes must stay on one line to be copied
err = Console(stderr=True, soft_wrap=True)

DbOpt = Annotated[
    str | None, typer.Option("--database-url", help="Default: CIVICMESH_DATABASE_URL or settings")
]
OriginOpt = Annotated[str | None, typer.Option("--origin", help="Default: CIVICMESH_LEDGER_ORIGIN")]
KeyDirOpt = Annotated[
    Path | None, typer.Option("--key-dir", help="Default: CIVICMESH_LEDGER_KEY_DIR, else ledger-keys in the data home")
]


def _settings(database_url: str | None) -> Settings:
    """CIVICMESH_* settings with the database given on the command line, if any (the key directory follows it)."""
    return Settings.from_env(database_url=database_url)


def _open(database_url: str | None, origin: str | None, key_dir: Path | None) -> Any:
    from civicmesh.ledger.log import Ledger

    settings = _settings(database_url)
    url = settings.database_url
    kd = key_dir or settings.ledger_keys
    err.print(f"[dim]ledger database {url}, keys in {kd}[/dim]")
    try:
        return Ledger.open(url, origin or settings.ledger_origin, kd)
    except NoteError as exc:
        _fail(str(exc))


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@ledger_app.command()
def keygen(origin: OriginOpt = None, key_dir: KeyDirOpt = None) -> None:
    """Create the log's Ed25519 signing key (named after the origin)."""
    settings = _settings(None)
    kd = key_dir or settings.ledger_keys
    try:
        key = generate_log_key(kd, origin or settings.ledger_origin)
    except NoteError as exc:
        _fail(str(exc))
    console.print(f"log key written to {kd / 'log.key'}; publish this verifier key:")
    console.print(key.verifier.encode(), highlight=False)


@ledger_app.command("witness-keygen")
def witness_keygen(
    name: Annotated[str, typer.Argument(help="Witness name, e.g. energy.city.example/witness")],
    out: Annotated[Path, typer.Option(help="Where to write the private key")],
) -> None:
    """Create a witness (cosigner) key for another organization; prints the vkey to register."""
    if out.exists():
        _fail(f"{out} already exists")
    try:
        key = generate_witness_key(name)
    except NoteError as exc:
        _fail(str(exc))
    write_secret(out, key.encode())
    console.print(key.verifier.encode(), highlight=False)


@ledger_app.command()
def rotate(database_url: DbOpt = None, origin: OriginOpt = None, key_dir: KeyDirOpt = None) -> None:
    """Retire the signing key and start a new one; the current checkpoint is re-signed by both."""
    ledger = _open(database_url, origin, key_dir)
    try:
        new = ledger.rotate_key(key_dir or _settings(database_url).ledger_keys)
    finally:
        ledger.close()
    console.print("new verifier key:")
    console.print(new.verifier.encode(), highlight=False)


@ledger_app.command()
def append(
    kind: Annotated[str, typer.Option()],
    actor: Annotated[str, typer.Option()],
    subject: Annotated[str, typer.Option()],
    payload: Annotated[str, typer.Option(help="JSON text, or @file")] = "{}",
    database_url: DbOpt = None,
    origin: OriginOpt = None,
    key_dir: KeyDirOpt = None,
) -> None:
    """Append one entry and integrate it at once."""
    text = Path(payload[1:]).read_text() if payload.startswith("@") else payload
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        _fail(f"payload is not JSON: {exc}")
    ledger = _open(database_url, origin, key_dir)
    try:
        index = ledger.append(kind, actor, subject, body)
        ledger.integrate()
    except Problem as exc:
        _fail(exc.detail)
    finally:
        ledger.close()
    console.print(f"appended at index {index}")


@ledger_app.command("register-asset")
def register_asset(
    asset: Annotated[str, typer.Argument(help="Asset id, e.g. urn:ngsi-ld:DataProduct:bus-gps")],
    owner: Annotated[str, typer.Option(help="Owning organization id")],
    description: Annotated[Path, typer.Option(help="File describing the asset (hashed)")],
    database_url: DbOpt = None,
    origin: OriginOpt = None,
    key_dir: KeyDirOpt = None,
) -> None:
    """Register a data asset's rights: owner plus the SHA-256 of its description."""
    ledger = _open(database_url, origin, key_dir)
    try:
        index = ledger.register_data_rights(asset, owner, description.read_bytes())
        size = ledger.integrate()
        proof = ledger.inclusion_proof(index, size)
    except Problem as exc:
        _fail(exc.detail)
    finally:
        ledger.close()
    console.print(f"registered {asset} at index {index}; tree size {size}")
    console.print_json(data=proof)


@ledger_app.command()
def checkpoint(database_url: DbOpt = None, origin: OriginOpt = None, key_dir: KeyDirOpt = None) -> None:
    """Print the newest signed checkpoint."""
    ledger = _open(database_url, origin, key_dir)
    try:
        console.print(ledger.checkpoint(), end="", highlight=False)
    finally:
        ledger.close()


@ledger_app.command("witness-add")
def witness_add(
    name: str,
    vkey: Annotated[str, typer.Argument(help="vkey text or file")],
    organization: Annotated[str, typer.Option()],
    database_url: DbOpt = None,
    origin: OriginOpt = None,
    key_dir: KeyDirOpt = None,
) -> None:
    """Register a witness's cosigning key."""
    ledger = _open(database_url, origin, key_dir)
    try:
        ledger.add_witness(name, read_verifier(vkey).encode(), organization)
    except (Problem, NoteError) as exc:
        _fail(getattr(exc, "detail", str(exc)))
    finally:
        ledger.close()
    console.print(f"witness {name} registered for {organization}")


@ledger_app.command()
def export(
    out: Path, database_url: DbOpt = None, origin: OriginOpt = None, key_dir: KeyDirOpt = None
) -> None:
    """Write the log, its checkpoints and stored hashes to a JSON-lines file for offline verification."""
    ledger = _open(database_url, origin, key_dir)
    try:
        size = ledger.export(out)
    finally:
        ledger.close()
    console.print(f"exported {size} entries to {out}")


@ledger_app.command()
def verify(
    url: Annotated[str | None, typer.Option(help="Base URL of a platform, e.g. http://host:8000")] = None,
    file: Annotated[Path | None, typer.Option(help="An export file")] = None,
    log_key: Annotated[list[str] | None, typer.Option(help="Trusted log vkey (text or file)")] = None,
    witness_key: Annotated[list[str] | None, typer.Option(help="Trusted witness vkey")] = None,
    min_cosigners: int = 0,
    saved_checkpoint: Annotated[Path | None, typer.Option(help="A checkpoint saved earlier")] = None,
    save_checkpoint: Annotated[Path | None, typer.Option(help="Save the verified checkpoint here")] = None,
    entry: Annotated[list[Path] | None, typer.Option(help="File with an entry that must be included")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verify a ledger with no database access; exit 1 and name the first bad index when anything is wrong."""
    from civicmesh.ledger.verify import ExportSource, HttpSource, Source
    from civicmesh.ledger.verify import verify as run_verify

    if (url is None) == (file is None):
        _fail("give exactly one of --url or --file")
    try:
        source: Source = HttpSource(url) if url else ExportSource(file)  # type: ignore[arg-type]
        keys = [read_verifier(k).encode() for k in log_key] if log_key else None
        wkeys = [read_verifier(k).encode() for k in witness_key] if witness_key else None
        report = run_verify(
            source,
            log_keys=keys,
            witness_keys=wkeys,
            min_cosigners=min_cosigners,
            saved_checkpoint=saved_checkpoint.read_text() if saved_checkpoint else None,
            include=[p.read_bytes().strip() for p in entry or []],
        )
    except (NoteError, ValueError, OSError) as exc:
        _fail(str(exc))
    if as_json:
        console.print_json(data=report.to_dict())
    else:
        colour = "green" if report.ok else "red"
        console.print(
            f"[{colour}]{'OK' if report.ok else 'FAILED'}[/{colour}] {report.source}: "
            f"{report.entries_checked} entries, tree size {report.tree_size}, root {report.root}"
        )
        console.print(
            f"signed by: {', '.join(report.signed_by) or 'nobody trusted'}; "
            f"cosigned by: {', '.join(report.cosigned_by) or 'no witness'}"
        )
        for note in report.notes:
            console.print(f"[dim]note: {note}[/dim]")
        for problem in report.problems:
            console.print(f"[red]- {problem}[/red]")
        if report.first_bad_index is not None:
            console.print(f"[red bold]first tampered index: {report.first_bad_index}[/red bold]")
    if report.ok and save_checkpoint is not None:
        save_checkpoint.write_text(source.checkpoint())
    raise typer.Exit(0 if report.ok else 1)


@ledger_app.command()
def cosign(
    url: Annotated[str, typer.Option(help="Base URL of the platform whose ledger to witness")],
    key: Annotated[Path, typer.Option(help="This witness's private key file")],
    state: Annotated[Path, typer.Option(help="This witness's state file (last cosigned checkpoints)")],
    log_key: Annotated[str, typer.Option(help="The log's vkey (text or file)")],
) -> None:
    """As a witness: fetch the newest checkpoint, check it extends the last one cosigned, cosign it."""
    import httpx

    from civicmesh.ledger.witness import Witness, WitnessRefused

    base = url.rstrip("/") + "/ledger"
    try:
        witness = Witness(read_signer(key), state)
        log_vkey = read_verifier(log_key)
        with httpx.Client(timeout=30) as http:
            text = http.get(f"{base}/checkpoint").raise_for_status().text
            from civicmesh.ledger.note import Checkpoint, parse_note

            cp = Checkpoint.parse_text(parse_note(text).text)
            prev = witness.state(cp.origin)
            proof: list[bytes] = []
            if prev is not None and 0 < prev.size < cp.size:
                doc = http.get(f"{base}/proof/consistency", params={"size1": prev.size, "size2": cp.size})
                proof = [base64.b64decode(p) for p in doc.raise_for_status().json()["proof"]]
            line = witness.cosign(text, [log_vkey], proof)
            r = http.post(
                f"{base}/witnesses/{witness.key.name}/cosignatures",
                content=json.dumps({"size": cp.size, "cosignature": line}),
                headers={"content-type": "application/json"},
            )
            if r.status_code != 201:
                _fail(f"the platform refused the cosignature ({r.status_code}): {r.text}")
    except WitnessRefused as exc:
        err.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(1) from None
    except (NoteError, httpx.HTTPError) as exc:
        _fail(str(exc))
    console.print(f"cosigned {cp.origin} at size {cp.size}")
