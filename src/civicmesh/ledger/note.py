"""C2SP signed notes, tlog checkpoints and tlog cosignatures with Ed25519.

Formats (c2sp.org/signed-note, c2sp.org/tlog-checkpoint, c2sp.org/tlog-cosignature):
- note = text ending in "\\n", a blank line, then lines "— <key name> base64(key ID || signature)";
- key ID = SHA-256(name || "\\n" || sig type || public key)[:4]; type 0x01 Ed25519 over the text,
  type 0x04 timestamped Ed25519 cosignature over "cosignature/v1\\ntime <t>\\n" || text;
- verifier key "<name>+<hex key ID>+base64(type || public key)"; signer key
  "PRIVATE+KEY+<name>+<hex key ID>+base64(type || seed)" (the Go sumdb/note encoding).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
SIG_PREFIX = "\u2014 "  # em dash and a space
COSIGNATURE_HEADER = b"cosignature/v1\n"


class NoteError(ValueError):
    """A note, key or signature is malformed or does not verify."""


def b64decode_strict(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"{what} is not valid base64: {exc}") from None


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"key name {name!r} must be non-empty without spaces or '+'")


def key_id(name: str, alg: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    name: str
    alg: int
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.alg, self.public)

    def encode(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([self.alg]) + self.public).decode()}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        text = text.strip()
        parts = text.split("+", 2)  # base64 may contain '+': split on the first two only
        if len(parts) != 3:
            raise NoteError(f"verifier key {text!r} is not <name>+<hex id>+<base64 key>")
        name, hex_id, b64 = parts
        _check_name(name)
        raw = b64decode_strict(b64, "verifier key material")
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise NoteError("verifier key must be type 0x01 (Ed25519) or 0x04 (cosignature/v1) with 32 bytes")
        key = cls(name, raw[0], raw[1:])
        if key.key_id.hex() != hex_id.lower():
            raise NoteError(f"verifier key {name}: key ID {hex_id} does not match its public key")
        return key

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
            return True
        except (InvalidSignature, ValueError):
            return False


@dataclass(frozen=True)
class SignerKey:
    name: str
    alg: int
    seed: bytes

    @classmethod
    def generate(cls, name: str, alg: int = ALG_ED25519) -> SignerKey:
        _check_name(name)
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(name, alg, seed)

    @property
    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def verifier(self) -> VerifierKey:
        return VerifierKey(
            self.name, self.alg, self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )

    def encode(self) -> str:
        raw = base64.b64encode(bytes([self.alg]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{raw}"

    @classmethod
    def parse(cls, text: str) -> SignerKey:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("signer key is not PRIVATE+KEY+<name>+<hex id>+<base64 key>")
        _, _, name, hex_id, b64 = parts
        _check_name(name)
        raw = b64decode_strict(b64, "signer key material")
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise NoteError("signer key must be type 0x01 or 0x04 with a 32-byte seed")
        key = cls(name, raw[0], raw[1:])
        if key.verifier.key_id.hex() != hex_id.lower():
            raise NoteError(f"signer key {name}: key ID {hex_id} does not match its key")
        return key

    def sign_raw(self, message: bytes) -> bytes:
        return self._private.sign(message)


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    blob: bytes  # signature bytes after the key ID

    def line(self) -> str:
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + self.blob).decode()}\n"


@dataclass(frozen=True)
class Note:
    text: str  # the note body, ending in "\n"
    signatures: tuple[Signature, ...]

    def encode(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def with_signatures(self, extra: list[Signature]) -> Note:
        seen = {(s.name, s.key_id) for s in self.signatures}
        return Note(self.text, self.signatures + tuple(s for s in extra if (s.name, s.key_id) not in seen))


def parse_note(data: str | bytes) -> Note:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("signed note is not UTF-8") from None
    if any((ord(c) < 0x20 and c != "\n") or ord(c) == 0x7F for c in data):
        raise NoteError("signed note contains control characters other than newline")
    split = data.rfind("\n\n")
    if split < 0 or not data.endswith("\n"):
        raise NoteError("signed note has no blank line between text and signatures, or no final newline")
    text, sig_block = data[: split + 1], data[split + 2 :]
    sigs: list[Signature] = []
    for line in sig_block.splitlines():
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"signature line does not start with an em dash: {line[:60]!r}")
        name, _, b64 = line[len(SIG_PREFIX) :].rpartition(" ")
        _check_name(name)
        raw = b64decode_strict(b64, f"signature by {name}")
        if len(raw) < 5:
            raise NoteError(f"signature by {name} is too short")
        sigs.append(Signature(name, raw[:4], raw[4:]))
    if not sigs:
        raise NoteError("signed note has no signatures")
    return Note(text, tuple(sigs))


def sign_note(text: str, signers: list[SignerKey]) -> Note:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    sigs = []
    for s in signers:
        if s.alg != ALG_ED25519:
            raise NoteError(f"key {s.name} is a cosigner key, not a note signing key")
        sigs.append(Signature(s.name, s.verifier.key_id, s.sign_raw(text.encode())))
    return Note(text, tuple(sigs))


def verified_by(note: Note, keys: list[VerifierKey]) -> list[VerifierKey]:
    """The keys among `keys` with a valid signature on the note; unknown signatures are ignored (C2SP)."""
    ok: list[VerifierKey] = []
    for key in keys:
        for sig in note.signatures:
            if sig.name != key.name or sig.key_id != key.key_id:
                continue
            if key.alg == ALG_ED25519 and key.verify(note.text.encode(), sig.blob):
                ok.append(key)
                break
            if key.alg == ALG_COSIGNATURE_V1 and cosignature_time(note, key, sig) is not None:
                ok.append(key)
                break
    return ok


# ------------------------------------------------------------------------------------------ checkpoints


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse_text(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("checkpoint needs an origin, a size and a root hash line, each ending in newline")
        origin, size_s, root_s = lines[0], lines[1], lines[2]
        if not origin:
            raise NoteError("checkpoint origin line is empty")
        if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
            raise NoteError(f"checkpoint size {size_s!r} is not a decimal without leading zeros")
        root = b64decode_strict(root_s, "checkpoint root hash")
        if len(root) != 32:
            raise NoteError(f"checkpoint root hash is {len(root)} bytes, not 32")
        return cls(origin, int(size_s), root)


def open_checkpoint(data: str | bytes, log_keys: list[VerifierKey]) -> tuple[Checkpoint, Note]:
    """Parse a signed checkpoint and require a valid signature by one of the log's keys."""
    note = parse_note(data)
    if not verified_by(note, [k for k in log_keys if k.alg == ALG_ED25519]):
        names = ", ".join(k.encode() for k in log_keys) or "none given"
        raise NoteError(f"checkpoint carries no valid signature by a trusted log key ({names})")
    return Checkpoint.parse_text(note.text), note


# ------------------------------------------------------------------------------------------ cosignatures


def _cosigned_message(text: str, timestamp: int) -> bytes:
    return COSIGNATURE_HEADER + f"time {timestamp}\n".encode() + text.encode()


def cosign(note_text: str, key: SignerKey, timestamp: int | None = None) -> Signature:
    if key.alg != ALG_COSIGNATURE_V1:
        raise NoteError(f"key {key.name} is not a cosignature/v1 (type 0x04) key")
    ts = int(time.time()) if timestamp is None else timestamp
    sig = key.sign_raw(_cosigned_message(note_text, ts))
    return Signature(key.name, key.verifier.key_id, struct.pack(">Q", ts) + sig)


def cosignature_time(note: Note, key: VerifierKey, sig: Signature) -> int | None:
    """The timestamp of a valid cosignature by `key`, or None when it does not verify."""
    if key.alg != ALG_COSIGNATURE_V1 or len(sig.blob) != 8 + 64 or sig.key_id != key.key_id:
        return None
    (ts,) = struct.unpack(">Q", sig.blob[:8])
    if ts >= 1 << 63:
        return None
    return ts if key.verify(_cosigned_message(note.text, ts), sig.blob[8:]) else None


def parse_signature_line(line: str) -> Signature:
    line = line.rstrip("\n")
    if not line.startswith(SIG_PREFIX):
        raise NoteError("a signature line starts with an em dash and a space")
    name, _, b64 = line[len(SIG_PREFIX) :].rpartition(" ")
    _check_name(name)
    raw = b64decode_strict(b64, f"signature by {name}")
    if len(raw) < 5:
        raise NoteError(f"signature by {name} is too short")
    return Signature(name, raw[:4], raw[4:])
