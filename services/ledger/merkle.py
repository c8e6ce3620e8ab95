"""The ledger's Merkle tree: RFC 9162 (Certificate Transparency v2) §2.1, written from the RFC.

Hashing (§2.1.1): a leaf is ``SHA-256(0x00 ‖ entry)``, an interior node ``SHA-256(0x01 ‖ left ‖
right)``, the empty tree ``SHA-256()``. The tree over ``n`` entries splits at ``k``, the largest
power of two smaller than ``n``: ``MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))``.

Storage: the log keeps the hash of every *perfect* subtree, ``NodeId(level, index)`` covering
the leaves ``[index·2^level, (index+1)·2^level)`` (level 0 are the leaves themselves). Appending
leaf ``n`` completes at most ``log2(n)`` of them, and any subtree the RFC's recursive definitions
mention is a run of at most ``log2(n)`` perfect subtrees, so roots and proofs take O(log n)
stored hashes whatever the size. A proof is computed in two steps, so that the hashes can come
from anywhere (a database, a dict in a test): a :class:`Plan` says which subtrees the proof is
made of and which stored nodes that needs; given those nodes, it yields the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import rfc8785

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """RFC 8785 JSON canonicalisation: the same event always hashes the same.

    Most events are written exactly alike by the standard library's C encoder, at a tenth of
    the cost (the ledger canonicalises every event it records); the others by ``rfc8785``.
    """
    if _written_alike(document):
        return json.dumps(
            document, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode()
    return rfc8785.dumps(document)


# Integers RFC 8785 (an IEEE double) holds exactly; beyond them rfc8785 decides.
_EXACT_INTEGER = 2**53 - 1


def _written_alike(value: Any) -> bool:
    """Whether ``json.dumps`` writes ``value`` byte for byte as RFC 8785 does.

    Strings are escaped alike (only ``"``, ``\\`` and control characters, short forms, else
    lowercase ``\\u00xx``). Keys must be ASCII: RFC 8785 orders them by UTF-16 code units,
    Python by code points, which differ only beyond the Basic Multilingual Plane. A float must
    be one that ECMAScript and Python's ``repr`` both write in plain decimal digits — the same
    shortest round-trip digits: not integral (ECMAScript writes ``2``, Python ``2.0``) and
    between 1e-4 and 1e16, where Python's ``repr`` turns to exponents.
    """
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and k.isascii() and _written_alike(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_written_alike(v) for v in value)
    if isinstance(value, int):
        return abs(value) <= _EXACT_INTEGER
    if isinstance(value, float):
        return math.isfinite(value) and value != math.floor(value) and 1e-4 <= abs(value) < 1e16
    return False


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


class NodeId(NamedTuple):
    """A perfect subtree: ``2**level`` leaves starting at leaf ``index * 2**level``."""

    level: int
    index: int


NodeHashes = Mapping[NodeId, bytes]


def split(n: int) -> int:
    """``k`` of RFC 9162 §2.1.1: the largest power of two smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_cover(start: int, end: int) -> list[NodeId]:
    """The perfect subtrees that ``D[start:end]`` is made of, left to right, largest first.

    Every subtree the RFC's recursion reaches starts at a multiple of its own size rounded up
    to a power of two, so greedy binary decomposition follows the tree's own shape.
    """
    nodes = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start % (1 << level):
            raise ValueError(f"D[{start}:{end}] is not a subtree of an RFC 9162 tree")
        nodes.append(NodeId(level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a subtree from the hashes of its perfect cover (largest first).

    The left part of every split is the next perfect subtree, so the hash folds from the right.
    """
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def subtree_hash(start: int, end: int, nodes: NodeHashes) -> bytes:
    """MTH(D[start:end]) from stored perfect subtrees."""
    try:
        return fold([nodes[node] for node in perfect_cover(start, end)])
    except KeyError as exc:
        raise LookupError(f"the tree has no node {exc.args[0]}") from exc


@dataclass(frozen=True)
class Plan:
    """The subtrees, ``[start, end)``, whose hashes make up a root or a proof, in proof order."""

    ranges: tuple[tuple[int, int], ...]

    def nodes(self) -> set[NodeId]:
        return {node for start, end in self.ranges for node in perfect_cover(start, end)}

    def hashes(self, nodes: NodeHashes) -> list[bytes]:
        return [subtree_hash(start, end, nodes) for start, end in self.ranges]


def root_plan(size: int) -> Plan:
    return Plan(((0, size),))


def inclusion_plan(index: int, size: int) -> Plan:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1: sibling subtrees from the leaf upwards."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    ranges = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return Plan(tuple(ranges))


def consistency_plan(old_size: int, new_size: int) -> Plan:
    """PROOF(old_size, D[new_size]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1.

    Empty when the sizes are equal (nothing to prove beyond equal roots).
    """
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    ranges = []
    start, end, m = 0, new_size, old_size
    # ``m`` counts the old tree's leaves inside D[start:end]; ``whole`` is the RFC's ``b``: the
    # old tree is still the whole left edge, so its root need not be sent.
    whole = True
    while m != end - start:
        k = split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return Plan(tuple(ranges))


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove ``leaf`` at ``index`` in the tree ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree ``new_root`` the tree ``old_root`` with entries appended?

    The RFC defines proofs for ``0 < old_size < new_size``; equal sizes are consistent when the
    roots are equal and the proof is empty, and the empty tree is a prefix of every tree.
    """
    if old_size == 0:
        return not path and hmac.compare_digest(old_root, EMPTY_ROOT)
    if old_size == new_size:
        return not path and hmac.compare_digest(old_root, new_root)
    if old_size > new_size or not path:
        return False
    hashes = list(path)
    if old_size & (old_size - 1) == 0:
        hashes.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


class Frontier:
    """The roots of a tree's maximal perfect subtrees, left to right.

    That is all appending needs (each new leaf merges with them like a carry in binary
    addition) and all the root is made of, so a log of any size is extended, and its root
    computed, from at most ``log2(n)`` hashes.
    """

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self.size = size
        self._hashes = list(hashes)
        if len(self._hashes) != size.bit_count():
            raise ValueError(f"a tree of size {size} has {size.bit_count()} maximal subtrees")

    @staticmethod
    def node_ids(size: int) -> list[NodeId]:
        return perfect_cover(0, size)

    @property
    def hashes(self) -> list[bytes]:
        return list(self._hashes)

    def append(self, leaf: bytes) -> list[tuple[NodeId, bytes]]:
        """Add a leaf hash; returns every node it completes, the leaf itself first."""
        index = self.size
        completed = [(NodeId(0, index), leaf)]
        current, level = leaf, 0
        while index >> level & 1:
            current = node_hash(self._hashes.pop(), current)
            level += 1
            completed.append((NodeId(level, index >> level), current))
        self._hashes.append(current)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold(self._hashes)
