"""C2SP signed notes, checkpoints and cosignatures: the Go sumdb/note vector, round trips, rejections."""

from __future__ import annotations

import base64

import pytest

from civicmesh.ledger.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    NoteError,
    SignerKey,
    VerifierKey,
    cosign,
    key_id,
    open_checkpoint,
    parse_note,
    sign_note,
    verified_by,
)

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6"
    "RyyBwJnAM=\n"
)


def test_go_signed_note_vector_byte_for_byte() -> None:
    key = SignerKey.parse(GO_SKEY)
    assert key.verifier.encode() == GO_VKEY
    note = sign_note(GO_TEXT, [key])
    assert note.encode() == GO_TEXT + "\n" + GO_SIG
    parsed = parse_note(note.encode())
    assert verified_by(parsed, [VerifierKey.parse(GO_VKEY)]) == [VerifierKey.parse(GO_VKEY)]


def test_wrong_key_and_altered_text_are_rejected() -> None:
    note = sign_note(GO_TEXT, [SignerKey.parse(GO_SKEY)])
    other = SignerKey.generate("PeterNeumann").verifier
    assert verified_by(parse_note(note.encode()), [other]) == []
    altered = note.encode().replace("answer", "Answer")
    assert verified_by(parse_note(altered), [VerifierKey.parse(GO_VKEY)]) == []


def test_key_id_rule_and_bad_vkeys() -> None:
    vk = VerifierKey.parse(GO_VKEY)
    assert key_id("PeterNeumann", 1, vk.public).hex() == "c74f20a3"
    with pytest.raises(NoteError, match="key ID"):
        VerifierKey.parse(GO_VKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(NoteError, match="base64"):
        VerifierKey.parse("PeterNeumann+c74f20a3+!!!")
    with pytest.raises(NoteError):
        VerifierKey.parse("no-plus-signs")


@pytest.mark.parametrize(
    "bad",
    [
        "no blank line\n— a AAAAAAA=\n",
        "text\n\n- a AAAAAAAA\n",  # hyphen, not an em dash
        "text\n\n\u2014 a !!!notbase64\n",
        "text\x07bell\n\n\u2014 a AAAAAAAA\n",
        "text\n\n",
    ],
)
def test_malformed_notes_are_rejected(bad: str) -> None:
    with pytest.raises(NoteError):
        parse_note(bad)


def test_checkpoint_round_trip_and_format() -> None:
    key = SignerKey.generate("city.example/ledger")
    cp = Checkpoint("city.example/ledger", 70000, bytes(range(32)))
    text = sign_note(cp.text(), [key]).encode()
    lines = text.split("\n")
    assert lines[:3] == ["city.example/ledger", "70000", base64.b64encode(bytes(range(32))).decode()]
    assert lines[3] == "" and lines[4].startswith("\u2014 city.example/ledger ")
    got, _ = open_checkpoint(text, [key.verifier])
    assert got == cp
    with pytest.raises(NoteError, match="trusted log key"):
        open_checkpoint(text, [SignerKey.generate("city.example/ledger").verifier])


@pytest.mark.parametrize(
    "body",
    [
        "o\n012\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "o\nx\nAAAA\n",
        "o\n1\n",
    ],
)
def test_bad_checkpoint_bodies(body: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse_text(body)


def test_cosignature_v1_message_and_verification() -> None:
    log_key = SignerKey.generate("city.example/ledger")
    wkey = SignerKey.generate("energy.example/witness", ALG_COSIGNATURE_V1)
    note = sign_note(Checkpoint("city.example/ledger", 3, bytes(32)).text(), [log_key])
    sig = cosign(note.text, wkey, timestamp=1679315147)
    assert sig.key_id == key_id("energy.example/witness", 0x04, wkey.verifier.public)
    assert int.from_bytes(sig.blob[:8], "big") == 1679315147 and len(sig.blob) == 72
    # the signed message is "cosignature/v1\ntime <t>\n" followed by the checkpoint body
    message = b"cosignature/v1\ntime 1679315147\n" + note.text.encode()
    assert wkey.verifier.verify(message, sig.blob[8:])
    cosigned = parse_note(note.with_signatures([sig]).encode())
    assert verified_by(cosigned, [wkey.verifier, log_key.verifier]) == [wkey.verifier, log_key.verifier]
    # the cosignature does not carry over to another checkpoint
    other = sign_note(Checkpoint("city.example/ledger", 4, bytes(32)).text(), [log_key]).with_signatures(
        [sig]
    )
    assert verified_by(parse_note(other.encode()), [wkey.verifier]) == []
