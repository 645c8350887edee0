"""RFC 9162 §2.1 Merkle tree hashing, proof planning and proof verification.

The log stores the hash of every *perfect* subtree (a run of 2**level leaves starting at a multiple of
2**level), addressed as (level, index). Any subtree hash a proof needs is then a fold of at most ~log2(n)
stored hashes, so proofs never recompute the whole tree. The planning functions here say *which* stored
hashes a proof needs; the caller fetches them in one query and `range_hash` folds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[
    int, int
]  # (level, index): the perfect subtree of leaves [index << level, (index + 1) << level)
Range = tuple[int, int]  # [lo, hi) leaf range


class ProofError(ValueError):
    """A proof or its inputs are malformed or do not verify."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_pow2_below(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2): the RFC 9162 split point."""
    return 1 << ((n - 1).bit_length() - 1)


# ---------------------------------------------------------------------------------------------- building


def extend(
    size: int, frontier: list[bytes], leaves: Iterable[bytes]
) -> tuple[int, list[bytes], list[tuple[int, int, bytes]]]:
    """Append leaf hashes to a tree given by its compact frontier.

    `frontier` holds the roots of the perfect subtrees that make up a tree of `size` leaves, one per set
    bit of `size`, highest level first. Returns the new size, the new frontier and every new perfect
    subtree node of level >= 1 as (level, index, hash). Cost: amortised one node hash per leaf.
    """
    frontier = list(frontier)
    new_nodes: list[tuple[int, int, bytes]] = []
    for h in leaves:
        index, level = size, 0
        while index & 1:
            h = node_hash(frontier.pop(), h)
            level += 1
            index >>= 1
            new_nodes.append((level, index, h))
        frontier.append(h)
        size += 1
    return size, frontier, new_nodes


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """The RFC 9162 root of a tree from its frontier: the right edge folds smaller subtrees first."""
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for h in reversed(frontier[:-1]):
        root = node_hash(h, root)
    return root


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes (reference implementation used by tests and the verifier)."""
    return frontier_root(extend(0, [], leaf_hashes)[1])


def frontier_for(size: int, get: Callable[[NodeId], bytes]) -> list[bytes]:
    """Rebuild the frontier of a tree of `size` leaves from stored perfect nodes."""
    return [get(node) for node in perfect_pieces(0, size)]


# ---------------------------------------------------------------------------------------------- planning


def perfect_pieces(lo: int, hi: int) -> list[NodeId]:
    """Split [lo, hi) into aligned perfect subtrees, left to right (largest first)."""
    pieces: list[NodeId] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo:
            level = min(level, (lo & -lo).bit_length() - 1)
        pieces.append((level, lo >> level))
        lo += 1 << level
    return pieces


def range_hash(lo: int, hi: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH(D[lo:hi]) for the ranges proofs use (lo aligned to the subtree that contains them)."""
    return frontier_root([nodes[p] for p in perfect_pieces(lo, hi)])


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtree ranges whose hashes form the RFC 9162 §2.1.3.1 inclusion proof, in proof order."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    path: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_pow2_below(hi - lo)
        if index < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo = lo + k
    path.reverse()  # the RFC lists the sibling nearest the leaf first
    return path


def consistency_ranges(size1: int, size2: int) -> list[Range]:
    """The subtree ranges of the RFC 9162 §2.1.4.1 consistency proof from size1 to size2, in proof order."""
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}: need 0 < size1 <= size2")
    tail: list[Range] = []
    lo, hi, m, complete = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                tail.append((lo, hi))
            break
        k = _largest_pow2_below(n)
        if m <= k:
            tail.append((lo + k, hi))
            hi = lo + k
        else:
            tail.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    tail.reverse()
    return tail


def nodes_for(ranges: Iterable[Range]) -> set[NodeId]:
    needed: set[NodeId] = set()
    for lo, hi in ranges:
        needed.update(perfect_pieces(lo, hi))
    return needed


# ---------------------------------------------------------------------------------------------- verifying


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, a SHA-256 hash is {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    if size <= 0 or not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash("leaf hash", leaf)
    fn, sn, r = index, size - 1, leaf
    for i, p in enumerate(proof):
        _check_hash(f"proof hash {i}", p)
        if sn == 0:
            raise ProofError(
                f"inclusion proof has {len(proof)} hashes, more than a tree of size {size} needs"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof has {len(proof)} hashes, fewer than a tree of size {size} needs")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless `proof` shows leaf `index` with hash `leaf` is in the tree `(size, root)`."""
    _check_hash("root", root)
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(
            f"inclusion proof for leaf {index} does not lead to the root of the tree of size {size}"
        )


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Raise ProofError unless `proof` shows tree (size1, root1) is a prefix of tree (size2, root2)."""
    if size1 <= 0:
        raise ProofError("a consistency proof from an empty tree proves nothing (size1 must be >= 1)")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}")
    if size1 == size2:
        if proof:
            raise ProofError("trees of equal size need an empty consistency proof")
        if root1 != root2:
            raise ProofError(f"two different roots for the same size {size1}")
        return
    if not proof:
        raise ProofError("empty consistency proof between different sizes")
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    for i, p in enumerate(proof):
        _check_hash(f"proof hash {i}", p)
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the tree sizes allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the tree sizes need")
    if fr != root1:
        raise ProofError(f"consistency proof does not lead to the root of the tree of size {size1}")
    if sr != root2:
        raise ProofError(f"consistency proof does not lead to the root of the tree of size {size2}")


# ---------------------------------------------------------------------------------------------- in memory


class MemoryTree:
    """A whole tree held in memory: for tests, the verifier and worked examples."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self.nodes: dict[NodeId, bytes] = {}
        self.size = 0
        self.frontier: list[bytes] = []
        self.append_hashes(leaf_hashes)

    def append_hashes(self, leaf_hashes: Iterable[bytes]) -> None:
        start = self.size
        hashes = list(leaf_hashes)
        for i, h in enumerate(hashes):
            self.nodes[(0, start + i)] = h
        self.size, self.frontier, new = extend(self.size, self.frontier, hashes)
        for level, index, h in new:
            self.nodes[(level, index)] = h

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return range_hash(0, size, self.nodes) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        return [range_hash(lo, hi, self.nodes) for lo, hi in inclusion_ranges(index, size)]

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self.size if size2 is None else size2
        return [range_hash(lo, hi, self.nodes) for lo, hi in consistency_ranges(size1, size2)]
