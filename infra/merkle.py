"""The journal's Merkle tree, by the hashing rules of RFC 6962 (2.1; RFC 9162 2.1.1):

    leaf hash  = SHA-256(0x00 || record)
    node hash  = SHA-256(0x01 || left || right)
    MTH(D[n])  = for n > 1, node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

One tree per journal partition, its leaves the partition's records in offset order, each
record the value exactly as stored in Kafka (the codec's orjson bytes: never re-encoded,
so an upcaster added later does not change an old leaf). ``Frontier`` grows a tree one
leaf at a time in O(log n) memory (the roots of its full subtrees, largest first), which
is all a notary that reads a partition once needs; ``inclusion_proof`` and
``verify_inclusion`` (RFC 9162 2.1.3) prove one record is in a tree of a signed size
without the rest of the log. Standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_BYTES = 32


def leaf_hash(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) (RFC 6962 2.1)


class Frontier:
    """A tree of ``size`` leaves as the roots of its full subtrees (one per bit of
    ``size``, largest first): append a leaf hash, ask the root, at any size."""

    __slots__ = ("size", "hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if bin(size).count("1") != len(hashes):
            raise ValueError(f"a tree of {size} leaves has {bin(size).count('1')} full "
                             f"subtrees, not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        hashes, node = self.hashes, leaf
        size = self.size
        while size & 1:  # each full subtree of the same size merges with the new one
            node = node_hash(hashes.pop(), node)
            size >>= 1
        hashes.append(node)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        hashes = self.hashes
        node = hashes[-1]
        for left in reversed(hashes[:-1]):
            node = node_hash(left, node)
        return node

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """MTH of these leaf hashes."""
    frontier = Frontier()
    frontier.extend(leaves)
    return frontier.root()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 2.1.1: the sibling hashes from the leaf up."""
    size = len(leaves) if size is None else size
    if not 0 <= index < size <= len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            proof.append(tree_root(leaves[lo + k:hi]))
            hi = lo + k
        else:
            proof.append(tree_root(leaves[lo:lo + k]))
            lo += k
    proof.reverse()
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` of the tree of ``size``
    leaves whose root is ``root`` (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, node = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == root
