"""Secrets on disk (issue 13, finding 20): the ledger's signing key and the bootstrap admin key live in the
configured data directory, never relative to where the server happens to start, and the bootstrap key is never
readable by anyone but its owner, not even for a moment."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server

BOOTSTRAP = "exchange-bootstrap-admin.key"

# (event, file, permission bits at that moment) for audit events that touch the bootstrap key, while a test
# records them. Audit hooks cannot be removed, so the hook stays installed and records only when this is a list.
_seen: list[tuple[str, str, int]] | None = None


def _mode(path: Any) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except (OSError, TypeError, ValueError):
        return None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _seen is None or event not in ("os.chmod", "os.rename", "open"):
        return
    # os.chmod(path, mode): the bits the file had until now; os.rename/os.replace(src, dst): the bits the file
    # has when it takes the key's name; open: a key file that already exists as it is opened.
    if event == "os.rename":
        source, target = args[0], args[1]
    else:
        source = target = args[0]
    if not isinstance(target, (str, bytes, os.PathLike)) or not os.fsdecode(target).endswith(BOOTSTRAP):
        return
    mode = _mode(source)
    if mode is not None:
        _seen.append((event, os.fsdecode(target), mode))


sys.addaudithook(_audit)


@pytest.mark.live  # starts its own server
def test_the_bootstrap_key_is_never_readable_by_others(private_database: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    global _seen
    monkeypatch.setenv("CIVICMESH_DATA_DIR", str(tmp_path / "data"))
    previous_umask = os.umask(0o022)  # the usual umask: a plain new file would be 0644
    _seen = []
    try:
        server = start_server(private_database)
        server.stop()
        seen = list(_seen)
    finally:
        _seen = None
        os.umask(previous_umask)
    keys = {Path(name) for _, name, _ in seen}
    assert keys, "the first start wrote no bootstrap key"
    exposed = [(event, name, oct(mode)) for event, name, mode in seen if mode & 0o077]
    assert exposed == [], "the bootstrap key was readable by others while it was written"
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_text().strip()


@pytest.mark.live  # starts its own server
def test_the_ledger_key_lives_beside_the_sqlite_database_not_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    city, elsewhere = tmp_path / "city", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("CIVICMESH_DATA_DIR", raising=False)
    server = start_server(f"sqlite:///{city / 'civicmesh.db'}")
    server.stop()
    assert stat.S_IMODE((city / "ledger-keys" / "log.key").stat().st_mode) == 0o600
    assert (city / BOOTSTRAP).exists()
    assert list(elsewhere.iterdir()) == [], "the server wrote into the directory it was started from"


@pytest.mark.live  # starts its own server
def test_the_ledger_key_follows_the_data_directory_set_after_import(private_database: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # civicmesh was imported long before this test; the data directory is read when settings are made.
    monkeypatch.setenv("CIVICMESH_DATA_DIR", str(tmp_path / "data"))
    server = start_server(private_database)
    server.stop()
    assert (tmp_path / "data" / "ledger-keys" / "log.key").exists()
    assert (tmp_path / "data" / BOOTSTRAP).exists()
