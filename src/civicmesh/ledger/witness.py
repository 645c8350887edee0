"""A witness: another organization that cosigns the log's checkpoints after checking it only ever grew.

The witness keeps, per log origin, the last checkpoint it cosigned (a small JSON state file it owns). It
cosigns a new checkpoint only if the log's own signature verifies and a consistency proof links the old
tree to the new one; otherwise it refuses, and a log that forked or rewrote history can no longer get
cosignatures.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from civicmesh.ledger import merkle
from civicmesh.ledger.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    NoteError,
    SignerKey,
    VerifierKey,
    cosign,
    open_checkpoint,
)


class WitnessRefused(Exception):
    """The witness will not cosign: the checkpoint does not consistently extend what it cosigned."""


@dataclass
class WitnessState:
    size: int
    root: bytes


class Witness:
    def __init__(self, key: SignerKey, state_path: Path) -> None:
        if key.alg != ALG_COSIGNATURE_V1:
            raise NoteError("a witness signs with a cosignature/v1 (type 0x04) key")
        self.key = key
        self.state_path = state_path

    def _load(self) -> dict[str, dict[str, object]]:
        if not self.state_path.exists():
            return {}
        states: dict[str, dict[str, object]] = json.loads(self.state_path.read_text())
        return states

    def state(self, origin: str) -> WitnessState | None:
        got = self._load().get(origin)
        if got is None:
            return None
        return WitnessState(int(got["size"]), base64.b64decode(str(got["root"])))  # type: ignore[call-overload]

    def _save(self, cp: Checkpoint) -> None:
        data = self._load()
        data[cp.origin] = {"size": cp.size, "root": base64.b64encode(cp.root).decode()}
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.state_path)

    def cosign(
        self,
        signed_checkpoint: str,
        log_keys: list[VerifierKey],
        proof: Sequence[bytes],
        timestamp: int | None = None,
    ) -> str:
        """Check and cosign; returns the signature line to hand back to the log. `proof` is the consistency
        proof from the size this witness last cosigned for the origin (ignored the first time)."""
        try:
            cp, note = open_checkpoint(signed_checkpoint, log_keys)
        except NoteError as exc:
            raise WitnessRefused(f"checkpoint rejected: {exc}") from None
        prev = self.state(cp.origin)
        if prev is not None:
            if cp.size < prev.size:
                raise WitnessRefused(
                    f"checkpoint size {cp.size} is smaller than size {prev.size} already cosigned"
                )
            if prev.size > 0:
                try:
                    merkle.verify_consistency(prev.size, cp.size, list(proof), prev.root, cp.root)
                except merkle.ProofError as exc:
                    raise WitnessRefused(
                        f"{cp.origin} at size {cp.size} is not consistent with size {prev.size} "
                        f"cosigned before: {exc}"
                    ) from None
        line = cosign(note.text, self.key, timestamp).line()
        self._save(cp)
        return line.rstrip("\n")
