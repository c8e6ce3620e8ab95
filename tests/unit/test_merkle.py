"""The RFC 9162 tree, checked against an independent implementation (pymerkle) and the
Certificate Transparency reference vectors, and against proofs that must not verify."""

from __future__ import annotations

import hashlib
import random
from functools import cache
from typing import Any

import pytest
import rfc8785
from pymerkle import InmemoryTree
from pymerkle import verify_inclusion as pymerkle_verify_inclusion

from services.ledger.merkle import (
    EMPTY_ROOT,
    Frontier,
    NodeHashes,
    NodeId,
    canonical_bytes,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    perfect_cover,
    root_plan,
    verify_consistency,
    verify_inclusion,
)

LARGEST = 200
# One more than the largest tree checked, for proofs presented against a tree one larger.
ENTRIES = [f"entry {i}: 占道经营".encode() for i in range(LARGEST + 1)]


@cache
def reference() -> InmemoryTree:
    """pymerkle with its default hashing, which is RFC 9162's: sha256, 0x00 leaf and 0x01 node
    prefixes (``disable_security=False``), entries hashed as given, SHA-256("") when empty."""
    tree = InmemoryTree(algorithm="sha256")
    for entry in ENTRIES:
        tree.append_entry(entry)
    return tree


@cache
def stored_nodes() -> NodeHashes:
    """Our tree as the ledger stores it: every node each append completed."""
    nodes: dict[NodeId, bytes] = {}
    frontier = Frontier()
    for entry in ENTRIES:
        nodes.update(frontier.append(leaf_hash(entry)))
    return nodes


@cache
def root(size: int) -> bytes:
    value: bytes = reference().get_root(size)
    return value


def inclusion(index: int, size: int) -> list[bytes]:
    return inclusion_plan(index, size).hashes(stored_nodes())


def consistency(old: int, new: int) -> list[bytes]:
    return consistency_plan(old, new).hashes(stored_nodes())


def test_certificate_transparency_reference_roots() -> None:
    """The roots of the CT project's reference tree (certificate-transparency, merkle tree
    tests), eight leaves of growing length."""
    leaves = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43"]
    leaves += [bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
    expected = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT == hashlib.sha256(b"").digest()
    for leaf, want in zip(leaves, expected, strict=True):
        frontier.append(leaf_hash(leaf))
        assert frontier.root().hex() == want


def test_roots_match_pymerkle_for_every_size() -> None:
    nodes = stored_nodes()
    frontier = Frontier()
    for size in range(LARGEST + 1):
        assert root_plan(size).hashes(nodes) == [root(size)], size
        assert frontier.root() == root(size), size
        frontier.append(leaf_hash(ENTRIES[size]))


def test_inclusion_proofs_match_pymerkle_and_verify_for_every_leaf_and_size() -> None:
    tree = reference()
    for size in range(1, LARGEST + 1):
        for index in range(size):
            ours = inclusion(index, size)
            # pymerkle's path is the leaf followed by RFC 9162's audit path.
            theirs = tree.prove_inclusion(index + 1, size)
            assert theirs.path[1:] == ours, (index, size)
            pymerkle_verify_inclusion(leaf_hash(ENTRIES[index]), root(size), theirs)
            assert verify_inclusion(leaf_hash(ENTRIES[index]), index, size, ours, root(size))


def test_consistency_proofs_verify_against_pymerkle_roots_for_every_pair_of_sizes() -> None:
    """pymerkle lays out consistency proofs differently from RFC 9162 (it always sends the old
    root and splits at m = k the other way), so ours are checked against its roots: a proof
    verifies only if it recomputes both, independently computed, roots."""
    for new in range(1, LARGEST + 1):
        for old in range(1, new + 1):
            proof = consistency(old, new)
            assert verify_consistency(old, new, root(old), root(new), proof), (old, new)


def test_inclusion_proofs_fail_for_the_wrong_leaf_index_size_or_path() -> None:
    for size in range(1, LARGEST + 1):
        for index in range(size):
            proof = inclusion(index, size)
            leaf = leaf_hash(ENTRIES[index])
            other_leaf = leaf_hash(ENTRIES[(index + 1) % LARGEST])
            assert not verify_inclusion(other_leaf, index, size, proof, root(size))
            assert not verify_inclusion(leaf, index, size, proof, root(size - 1))
            for wrong in {index - 1, index + 1} - {-1, size}:
                assert not verify_inclusion(leaf, wrong, size, proof, root(size)), (index, size)
            assert not verify_inclusion(leaf, index, size + 1, proof, root(size + 1))
            assert not verify_inclusion(leaf, index, size, [*proof, leaf], root(size))
            if proof:
                assert not verify_inclusion(leaf, index, size, proof[:-1], root(size))
                tampered = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
                assert not verify_inclusion(leaf, index, size, tampered, root(size))
            assert not verify_inclusion(leaf, size, size, proof, root(size))


def test_consistency_proofs_fail_for_swapped_sizes_wrong_roots_or_a_damaged_path() -> None:
    for new in range(2, LARGEST + 1):
        for old in range(1, new):
            proof = consistency(old, new)
            assert not verify_consistency(new, old, root(new), root(old), proof)
            assert not verify_consistency(old, new, root(old - 1), root(new), proof)
            assert not verify_consistency(old, new, root(old), root(new - 1), proof)
            assert not verify_consistency(old, new, root(old), root(new), proof[:-1])
            assert not verify_consistency(old, new, root(old), root(new), [*proof, root(old)])
            assert not verify_consistency(old, new + 1, root(old), root(new + 1), proof)
    assert not verify_consistency(3, 3, root(3), root(3), [root(3)])
    assert not verify_consistency(3, 3, root(3), root(4), [])
    assert verify_consistency(0, 5, EMPTY_ROOT, root(5), [])
    assert not verify_consistency(0, 5, root(1), root(5), [])


def test_a_frontier_holds_one_hash_per_maximal_subtree() -> None:
    assert Frontier.node_ids(13) == [NodeId(3, 0), NodeId(2, 2), NodeId(0, 12)]
    with pytest.raises(ValueError, match="3 maximal subtrees"):
        Frontier(13, [EMPTY_ROOT])
    frontier = Frontier()
    completed = [frontier.append(leaf_hash(e)) for e in ENTRIES[:8]]
    assert [node for node, _ in completed[7]] == [
        NodeId(0, 7),
        NodeId(1, 3),
        NodeId(2, 1),
        NodeId(3, 0),
    ]
    assert [node for node, _ in completed[6]] == [NodeId(0, 6)]


def test_only_subtrees_of_the_rfc_tree_are_composed_from_stored_nodes() -> None:
    assert perfect_cover(8, 13) == [NodeId(2, 2), NodeId(0, 12)]
    with pytest.raises(ValueError, match="not a subtree"):
        perfect_cover(3, 7)
    with pytest.raises(ValueError):
        inclusion_plan(5, 5)
    with pytest.raises(ValueError):
        consistency_plan(0, 5)
    with pytest.raises(LookupError, match="no node"):
        root_plan(LARGEST + 2).hashes(stored_nodes())


def _random_document(rng: random.Random, depth: int = 0) -> Any:
    """JSON values with the awkward cases: floats of every magnitude, integral floats, -0.0,
    big integers, control characters, non-ASCII and astral keys and strings."""
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 7, 2**53 - 1, -(2**53) + 1, rng.randrange(-(10**6), 10**6)])
    if kind == 2:
        exponent = rng.uniform(-8, 22)
        value = rng.choice([1, -1]) * 10**exponent
        return rng.choice([value, float(round(value)), -0.0, 0.5, 30.123456, 1e-4, 1e16])
    if kind in (3, 4):
        alphabet = 'ab"\\\n\t\x00\x1f\x7f中文\u2028\U0001f600é/'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
    if kind in (5, 6):
        keys = ["a", "b", "data", "z", "中", "\U0001f600", "é", "\ufb01", "A"]
        return {rng.choice(keys): _random_document(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [_random_document(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_canonical_bytes_are_rfc8785_whichever_encoder_writes_them() -> None:
    rng = random.Random(8785)
    for _ in range(20_000):
        document = {"data": _random_document(rng), "id": "x"}
        assert canonical_bytes(document) == rfc8785.dumps(document), document


def test_an_event_with_coordinates_and_chinese_text_is_canonical() -> None:
    document = {
        "data": {"location": {"lat": 30.274084, "lon": 120.15507}, "text": "占道经营\n第2次"},
        "id": "1",
        "time": "2026-11-21T12:00:00Z",
        "confidence": 1.0,
    }
    assert canonical_bytes(document) == rfc8785.dumps(document)
    assert b'"confidence":1,' in canonical_bytes(document)
