"""C2SP tlog-tiles path encoding and tile arithmetic (the spec's worked example)."""

from __future__ import annotations

import pytest

from civicmesh.ledger import tiles


def test_index_encoding() -> None:
    assert tiles.encode_index(1234067) == "x001/x234/067"
    assert tiles.encode_index(0) == "000"
    assert tiles.encode_index(500) == "500"
    assert tiles.tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tiles.tile_path("entries", 3, 17) == "tile/entries/003.p/17"


def test_worked_example_tree_of_70000() -> None:
    """Size 70,000: 273 full level-0 tiles + width 112; 1 full level-1 tile + width 17; level 2 width 1."""
    size = 70000
    assert tiles.nodes_at(0, size) // 256 == 273 and tiles.partial_width(0, size) == 112
    assert tiles.nodes_at(1, size) // 256 == 1 and tiles.partial_width(1, size) == 17
    assert tiles.nodes_at(2, size) // 256 == 0 and tiles.partial_width(2, size) == 1


def test_parse_round_trip() -> None:
    assert tiles.parse_tile_path("1/x001/x234/067.p/8") == ("1", 1234067, 8)
    assert tiles.parse_tile_path("entries/000") == ("entries", 0, 256)


@pytest.mark.parametrize(
    "bad", ["0/1", "0/x000/001", "0/001.p/0", "0/001.p/256", "0/001.p/07", "abc/000", "0/0001", "64/000", "0"]
)
def test_bad_tile_paths(bad: str) -> None:
    with pytest.raises(tiles.TilePathError):
        tiles.parse_tile_path(bad)
