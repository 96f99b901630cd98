"""Signed checkpoints of the journal: the C2SP signed-note and tlog-checkpoint formats that
transparency logs use (Go's sumdb, Sigstore's Rekor v2, the Armored Witness), so any of
their tools reads them.

A checkpoint is a note whose body is::

    <origin>                   antirelou/<app id>/journal/<partition>: one log per partition
    <size>                     how many records of the partition it covers
    <base64 root hash>         the RFC 6962 root of those records (``infra.merkle``)
    time <ISO 8601 UTC>        when it was signed (an extension line)

followed by a blank line and ``— <key name> <base64(key id || Ed25519 signature)>``. The
key id is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key); the verifier
key a donor is given is ``<name>+<key id hex>+<base64(0x01 || public key)>`` (the
``note.Verifier`` text form). The signing key is derived from the deployment secret
(``signing_key``), so every worker of a deployment holds the same one and nothing new is
configured; another deployment (another secret) signs with another key.

``Notary`` is what the notary stage (``streams.stages.notary``) runs: it reads each
partition once, in offset order, and says when a checkpoint is due.

Errors::

    NoteError (ValueError)     a note or verifier key that does not parse or verify
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from infra.merkle import Frontier, leaf_hash

ALG_ED25519 = b"\x01"
SIG_PREFIX = "\u2014 "  # an em dash and a space begin each signature line
CHUNK = 16_384  # leaves per notary record at most (512 KiB raw: under Kafka's 1 MiB)


class NoteError(ValueError):
    """A signed note, checkpoint or verifier key that does not parse or does not verify."""


def signing_key(secret: bytes) -> Ed25519PrivateKey:
    """The deployment's checkpoint key: its Ed25519 seed derived one-way from the secret."""
    seed = hashlib.sha256(b"antirelou/checkpoint-key\0" + secret).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public).digest()[:4]


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise NoteError(f"key name {name!r}: no spaces, no '+', printable")
    return name


def verifier_key(name: str, public: bytes) -> str:
    """The text a donor is given to check checkpoints: ``name+keyid+base64(0x01||key)``."""
    _check_name(name)
    return f"{name}+{key_id(name, public).hex()}+{base64.b64encode(ALG_ED25519 + public).decode()}"


@dataclass(frozen=True)
class Verifier:
    name: str
    id: bytes
    public: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("the key is not a verifier key (NAME+KEYID+BASE64, as `antirelou "
                            "up` prints it)")
        name, hex_id, b64 = parts
        try:
            raw = base64.b64decode(b64, validate=True)
            kid = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise NoteError("the verifier key's id or key is not hex / base64") from None
        if len(raw) != 33 or raw[:1] != ALG_ED25519 or len(kid) != 4:
            raise NoteError("the verifier key is not an Ed25519 key (0x01 and 32 bytes)")
        if key_id(name, raw[1:]) != kid:
            raise NoteError("the verifier key's id does not match its name and key")
        return cls(name, kid, Ed25519PublicKey.from_public_bytes(raw[1:]))


def sign_note(body: str, name: str, key: Ed25519PrivateKey) -> str:
    if not body.endswith("\n") or "\n\n" in body:
        raise NoteError("a note body ends with one newline and has no blank line")
    public = key.public_key().public_bytes_raw()
    sig = key_id(_check_name(name), public) + key.sign(body.encode())
    return f"{body}\n{SIG_PREFIX}{name} {base64.b64encode(sig).decode()}\n"


def open_note(text: str, verifier: Verifier) -> str:
    """The body of ``text`` if one of its signatures is ``verifier``'s, else NoteError."""
    body, sep, sigs = text.partition("\n\n")
    if not sep or not body:
        raise NoteError("not a signed note (no blank line before the signatures)")
    body += "\n"
    others = []
    for line in sigs.splitlines():
        if not line.startswith(SIG_PREFIX):
            raise NoteError("a signature line does not begin with an em dash")
        name, _, b64 = line[len(SIG_PREFIX):].rpartition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise NoteError("a signature is not base64") from None
        if name != verifier.name or raw[:4] != verifier.id:
            others.append(f"{name}+{raw[:4].hex()}")
            continue
        try:
            verifier.public.verify(raw[4:], body.encode())
        except InvalidSignature:
            raise NoteError(f"the signature of {name} does not verify: the note was "
                            "changed after it was signed") from None
        return body
    raise NoteError(f"signed by {', '.join(others) or 'nobody'}, not by "
                    f"{verifier.name}+{verifier.id.hex()}")


def iso_s(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms // 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_origin(origin: str, partition: int) -> str:
    return f"{origin}/journal/{partition}"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's body, read (``parse``) or to be signed (``body``)."""

    origin: str
    size: int
    root: bytes
    at: str  # ISO 8601 UTC, to the second

    def body(self) -> str:
        return (f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"
                f"time {self.at}\n")

    @property
    def partition(self) -> int:
        return int(self.origin.rsplit("/", 1)[1])

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        lines = body.splitlines()
        try:
            origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
            at = next((x[5:] for x in lines[3:] if x.startswith("time ")), "")
            cp = cls(origin, size, root, at)
            cp.partition  # noqa: B018 - the origin ends with the partition
        except (IndexError, ValueError, binascii.Error):
            raise NoteError("not a journal checkpoint (origin, size, root hash)") from None
        if size < 0 or len(root) != 32:
            raise NoteError("not a journal checkpoint (a size and a 32-byte root)")
        return cls(origin, size, root, at)


def read_notes(text: str) -> Iterator[str]:
    """The signed notes of a text of notes, each after the other (a note's body and its
    signatures are apart by one blank line; two notes by one blank line too)."""
    body: list[str] = []
    sigs: list[str] = []
    for line in text.splitlines():
        if line.startswith(SIG_PREFIX):
            sigs.append(line)
        elif line:
            if sigs:
                yield "\n".join(body) + "\n\n" + "\n".join(sigs) + "\n"
                body, sigs = [], []
            body.append(line)
    if body:
        yield "\n".join(body) + "\n\n" + "\n".join(sigs) + "\n"


@dataclass
class PartitionLog:
    frontier: Frontier = field(default_factory=Frontier)
    next_offset: int = 0
    pending: list[bytes] = field(default_factory=list)  # leaves since the last checkpoint
    signed_at: int = 0  # ms of the last checkpoint


@dataclass(frozen=True)
class Signed:
    """One checkpoint made: the note, and what the stage writes of it."""

    partition: int
    note: str
    size: int
    first: int  # the index of the first of ``leaves``
    leaves: bytes  # the leaf hashes since the previous checkpoint, concatenated
    state: dict  # what a notary resumes from (the compacted checkpoints topic)


class Notary:
    """The notary's state: per partition, the tree so far and the offset after it."""

    def __init__(self, origin: str, key: Ed25519PrivateKey) -> None:
        self.origin, self.key = origin, key
        self.logs: dict[int, PartitionLog] = {}

    def resume(self, partition: int, state: dict) -> None:
        """Go on from a checkpoint record the notary wrote (``Signed.state``)."""
        frontier = Frontier(state["size"], [base64.b64decode(h) for h in state["frontier"]])
        self.logs[partition] = PartitionLog(frontier, state["next_offset"],
                                            signed_at=state["at"])

    def log(self, partition: int) -> PartitionLog:
        found = self.logs.get(partition)
        if found is None:
            found = self.logs[partition] = PartitionLog()
        return found

    def add(self, partition: int, offset: int, value: bytes) -> bool:
        """Take the record at ``offset`` (once: an offset already taken is passed over);
        whether a chunk is full (a checkpoint is then due)."""
        log = self.log(partition)
        if offset < log.next_offset:
            return False
        leaf = leaf_hash(value)
        log.frontier.append(leaf)
        log.pending.append(leaf)
        log.next_offset = offset + 1
        return len(log.pending) >= CHUNK

    def due(self, partition: int, now_ms: int, interval_ms: int) -> bool:
        """A checkpoint is due: records wait and the interval has passed, or a chunk is
        full, or a UTC day has ended since the last one (one per day, grown or not)."""
        log = self.log(partition)
        if log.signed_at // 86_400_000 != now_ms // 86_400_000:
            return True
        return bool(log.pending) and (now_ms - log.signed_at >= interval_ms
                                      or len(log.pending) >= CHUNK)

    def sign(self, partition: int, now_ms: int) -> Signed:
        log = self.log(partition)
        cp = Checkpoint(log_origin(self.origin, partition), log.frontier.size,
                        log.frontier.root(), iso_s(now_ms))
        note = sign_note(cp.body(), self.origin, self.key)
        leaves, log.pending = b"".join(log.pending), []
        log.signed_at = now_ms
        state = {"partition": partition, "size": cp.size, "next_offset": log.next_offset,
                 "frontier": [base64.b64encode(h).decode() for h in log.frontier.hashes],
                 "at": now_ms, "note": note}
        return Signed(partition, note, cp.size, cp.size - len(leaves) // 32, leaves, state)


def notary_line(signed: Signed) -> bytes:
    """A checkpoint with its leaf hashes, as the ``<app>.notary`` topic and an export's
    ``FILE.checkpoints`` hold it (one JSON object a line)."""
    return orjson.dumps({"partition": signed.partition, "first": signed.first,
                         "leaves": base64.b64encode(signed.leaves).decode(),
                         "note": signed.note}) + b"\n"
