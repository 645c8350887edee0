"""The log's signing keys on disk: generation, loading and rotation.

Layout of the key directory (Settings.ledger_keys: CIVICMESH_LEDGER_KEY_DIR, else ledger-keys in the data home):
  log.key              the active Ed25519 signer key, "PRIVATE+KEY+<origin>+<id>+<base64>", mode 0600
  log.vkey             its verifier key, safe to publish
  retired/<id>.key     earlier keys; kept so an operator can prove the hand-over, never used to sign again
The key name is the log's origin, as C2SP checkpoints are conventionally signed under the origin's name.
"""

from __future__ import annotations

import os
from pathlib import Path

from civicmesh.ledger.note import ALG_COSIGNATURE_V1, ALG_ED25519, NoteError, SignerKey, VerifierKey


def write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def read_signer(path: Path) -> SignerKey:
    try:
        return SignerKey.parse(path.read_text())
    except FileNotFoundError:
        raise NoteError(f"no key file at {path}") from None


def read_verifier(text_or_path: str) -> VerifierKey:
    """A verifier key given inline or as a path to a file containing one."""
    candidate = Path(text_or_path)
    if "+" not in text_or_path or candidate.is_file():
        try:
            text_or_path = candidate.read_text()
        except OSError as exc:
            raise NoteError(f"cannot read verifier key file {text_or_path}: {exc}") from None
    return VerifierKey.parse(text_or_path)


def generate_log_key(key_dir: Path, origin: str, *, overwrite: bool = False) -> SignerKey:
    active = key_dir / "log.key"
    if active.exists() and not overwrite:
        raise NoteError(f"{active} already exists; use rotate to replace it")
    key = SignerKey.generate(origin, ALG_ED25519)
    write_secret(active, key.encode())
    (key_dir / "log.vkey").write_text(key.verifier.encode() + "\n")
    return key


def load_or_create_log_key(key_dir: Path, origin: str) -> SignerKey:
    active = key_dir / "log.key"
    if not active.exists():
        return generate_log_key(key_dir, origin)
    key = read_signer(active)
    if key.name != origin:
        raise NoteError(
            f"the ledger key in {active} is named {key.name!r} but the log origin is {origin!r}; "
            "set CIVICMESH_LEDGER_ORIGIN to match or rotate to a key for the new origin"
        )
    return key


def rotate_log_key(key_dir: Path, origin: str) -> tuple[SignerKey, SignerKey]:
    """Retire the active key and create a new one; returns (old, new)."""
    old = read_signer(key_dir / "log.key")
    retired = key_dir / "retired" / f"{old.verifier.key_id.hex()}.key"
    write_secret(retired, old.encode())
    new = generate_log_key(key_dir, origin, overwrite=True)
    return old, new


def generate_witness_key(name: str) -> SignerKey:
    return SignerKey.generate(name, ALG_COSIGNATURE_V1)
