"""The journal's Merkle tree against a tiny independent implementation of RFC 6962's
hashing rules, written here from the RFC's text (2.1 and 2.1.1), not from infra.merkle."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.merkle import EMPTY_ROOT, Frontier, inclusion_proof, leaf_hash, tree_root, verify_inclusion


def rfc_leaf(d: bytes) -> bytes:
    return hashlib.sha256(bytes([0]) + d).digest()


def rfc_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256().digest()
    if n == 1:
        return rfc_leaf(d[0])
    k = 1
    while k * 2 < n:  # the largest power of two smaller than n
        k *= 2
    return hashlib.sha256(bytes([1]) + rfc_mth(d[:k]) + rfc_mth(d[k:])).digest()


def rfc_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return rfc_path(m, d[:k]) + [rfc_mth(d[k:])]
    return rfc_path(m - k, d[k:]) + [rfc_mth(d[:k])]


def rfc_root_from_path(m: int, n: int, leaf: bytes, path: list[bytes]) -> bytes:
    """Recompute the root the way the RFC builds the path: recursively, by the same split."""
    if n == 1:
        assert path == []
        return leaf
    k = 1
    while k * 2 < n:
        k *= 2
    *rest, sibling = path
    if m < k:
        return hashlib.sha256(b"\x01" + rfc_root_from_path(m, k, leaf, rest) + sibling).digest()
    return hashlib.sha256(b"\x01" + sibling + rfc_root_from_path(m - k, n - k, leaf, rest)).digest()


RECORDS = [b'{"type":"TextReceived","n":%d}' % i for i in range(70)]


def test_the_root_of_every_size_is_the_rfc_s():
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT == rfc_mth([])
    for n in range(1, len(RECORDS) + 1):
        frontier.append(leaf_hash(RECORDS[n - 1]))
        assert frontier.root() == rfc_mth(RECORDS[:n]), n


def test_a_frontier_resumed_from_its_hashes_grows_the_same_tree():
    frontier = Frontier()
    frontier.extend(leaf_hash(r) for r in RECORDS[:37])
    resumed = Frontier(frontier.size, list(frontier.hashes))
    resumed.extend(leaf_hash(r) for r in RECORDS[37:])
    assert resumed.root() == rfc_mth(RECORDS)
    with pytest.raises(ValueError):
        Frontier(37, frontier.hashes[:-1])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 64, 70])
def test_every_inclusion_proof_is_the_rfc_s_path_and_verifies(n):
    leaves = [leaf_hash(r) for r in RECORDS[:n]]
    root = rfc_mth(RECORDS[:n])
    for m in range(n):
        proof = inclusion_proof(leaves, m)
        assert proof == rfc_path(m, RECORDS[:n])
        assert rfc_root_from_path(m, n, rfc_leaf(RECORDS[m]), proof) == root
        assert verify_inclusion(leaves[m], m, n, proof, root)


@given(st.integers(2, 70).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1),
                                                      st.integers(0, 31))))
def test_a_proof_for_another_place_another_leaf_or_a_changed_hash_fails(case):
    n, m, byte = case
    leaves = [leaf_hash(r) for r in RECORDS[:n]]
    root = tree_root(leaves)
    proof = inclusion_proof(leaves, m)
    other = (m + 1) % n
    assert not verify_inclusion(leaves[m], other, n, proof, root)
    assert not verify_inclusion(leaves[other], m, n, proof, root)
    if proof:
        bad = bytearray(proof[0])
        bad[byte] ^= 1
        assert not verify_inclusion(leaves[m], m, n, [bytes(bad), *proof[1:]], root)
