"""C2SP tlog-tiles paths and tile arithmetic.

A tile at level L, index N holds up to 256 hashes: entry i is the hash of the perfect subtree at tree level
8*L, index N*256 + i. For a tree of s leaves, tree level 8*L has s >> (8*L) complete nodes, so tile (L, N)
is full when (N + 1) * 256 of them exist, and partial with width (s >> 8L) - N*256 otherwise. Full tiles
never change.
"""

from __future__ import annotations

import re

TILE_WIDTH = 256
TILE_HEIGHT = 8
_GROUP = re.compile(r"^(x\d{3}/)*\d{3}$")


class TilePathError(ValueError):
    pass


def encode_index(n: int) -> str:
    """1234067 -> 'x001/x234/067' (three-digit groups, all but the last prefixed with x)."""
    digits = f"{n:d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def tile_path(level: int | str, index: int, width: int = TILE_WIDTH) -> str:
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def parse_tile_path(path: str) -> tuple[str, int, int]:
    """'1/x001/234.p/7' -> ('1', 1234, 7); 'entries/000' -> ('entries', 0, 256). The level is a string
    because 'entries' is a level too."""
    level, sep, rest = path.partition("/")
    if not sep or not (level == "entries" or (level.isdigit() and len(level) <= 2 and int(level) <= 63)):
        raise TilePathError(f"tile level {level!r} must be 0..63 or 'entries'")
    width = TILE_WIDTH
    if ".p/" in rest:
        rest, _, w = rest.partition(".p/")
        if not w.isdigit() or w.startswith("0") or not 1 <= int(w) < TILE_WIDTH:
            raise TilePathError(f"partial tile width {w!r} must be 1..255 without leading zeros")
        width = int(w)
    if not _GROUP.match(rest):
        raise TilePathError(f"tile index {rest!r} must be three-digit groups like x001/234")
    index = int(rest.replace("x", "").replace("/", ""))
    if encode_index(index) != rest:
        raise TilePathError(f"tile index {rest!r} is not in canonical form ({encode_index(index)})")
    return level, index, width


def nodes_at(level: int, size: int) -> int:
    """Complete hashes available at tile level `level` for a tree of `size` leaves."""
    return size >> (TILE_HEIGHT * level)


def partial_width(level: int, size: int) -> int:
    return nodes_at(level, size) % TILE_WIDTH
