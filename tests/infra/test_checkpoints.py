"""The notary's state (``infra.checkpoints.Notary``): when a checkpoint is due, what it
signs, and that a notary resumed from its last checkpoint record grows the same tree."""

import orjson

from infra.checkpoints import (
    CHUNK,
    Checkpoint,
    Notary,
    Verifier,
    open_note,
    signing_key,
    verifier_key,
)
from infra.merkle import leaf_hash, tree_root
from schemas import codec
from tests.journals import ORIGIN, SECRET, stories_journal

DAY = 86_400_000
T = 20_000 * DAY + 3_600_000  # 01:00 UTC of some day
MIN = 60_000


def records(n, tag=b"r"):
    return [b'{"type":"%s","n":%d}' % (tag, i) for i in range(n)]


def test_a_checkpoint_signs_the_partition_s_root_its_size_and_time():
    notary = Notary(ORIGIN, signing_key(SECRET))
    for offset, value in enumerate(records(5)):
        notary.add(2, offset, value)
    signed = notary.sign(2, T)
    verifier = Verifier.parse(verifier_key(ORIGIN, signing_key(SECRET).public_key().public_bytes_raw()))
    cp = Checkpoint.parse(open_note(signed.note, verifier))
    assert (cp.origin, cp.size) == (f"{ORIGIN}/journal/2", 5)
    assert cp.at == "2024-10-04T01:00:00Z"
    assert cp.root == tree_root([leaf_hash(r) for r in records(5)])
    assert signed.note.splitlines()[3] == f"time {cp.at}" and signed.note.splitlines()[4] == ""
    assert signed.note.splitlines()[5].startswith(f"\u2014 {ORIGIN} ")
    assert (signed.first, len(signed.leaves)) == (0, 5 * 32)


def test_due_after_the_interval_with_records_waiting_per_chunk_and_at_each_day_s_end():
    notary = Notary(ORIGIN, signing_key(SECRET))
    notary.sign(0, T)  # the day's first (empty) checkpoint
    assert not notary.due(0, T + 10 * MIN, 5 * MIN)  # nothing waits
    notary.add(0, 0, b"x")
    assert not notary.due(0, T + 4 * MIN, 5 * MIN)
    assert notary.due(0, T + 5 * MIN, 5 * MIN)
    notary.sign(0, T + 5 * MIN)
    assert notary.due(0, T - 3_600_000 + DAY, 5 * MIN)  # the next day: grown or not
    full = [notary.add(0, 1 + i, b"y") for i in range(CHUNK)]
    assert full[-1] and not any(full[:-1])


def test_a_resumed_notary_grows_the_same_tree_and_takes_no_record_twice():
    values = records(40)
    one = Notary(ORIGIN, signing_key(SECRET))
    for offset, value in enumerate(values[:23]):
        one.add(1, offset + 100, value)  # offsets need not start at 0
    state = orjson.loads(orjson.dumps(one.sign(1, T).state))  # as the compacted topic keeps it
    two = Notary(ORIGIN, signing_key(SECRET))
    two.resume(1, state)
    for offset, value in enumerate(values):  # read again from the start: 23 passed over
        two.add(1, offset + 100, value)
    signed = two.sign(1, T + MIN)
    assert (signed.size, signed.first) == (40, 23)
    assert signed.state["next_offset"] == 140
    assert two.log(1).frontier.root() == tree_root([leaf_hash(v) for v in values])


def test_the_codec_s_bytes_are_canonical_an_event_encodes_again_to_the_same_bytes():
    _, events = stories_journal()
    for e in events:
        stored = codec.encode(e)
        assert codec.encode(codec.decode(stored)) == stored
