"""Campaign snapshots: a state survives the round trip, and events it already holds are not
applied twice when the journal tail after it is replayed."""

import pytest

from actors.campaign import REMEMBERED_DECISIONS, CampaignState, evolve_campaign
from actors.shard import CampaignShard
from actors.snapshot import MAX_SNAPSHOT_BYTES, decode_snapshot, encode_snapshot
from schemas.commands import ChangePolicy, CreditBudget
from tests.factories import campaign_2017 as campaign
from tests.factories import request


def busy_shard():
    shard = CampaignShard([campaign(budget_micros=1_000_000)])
    events = [*shard.decide([request("m1"), request("m2")]),
              *shard.control([ChangePolicy(
                  command_id="c1", campaign_id="paris", changes={"reserve_micros": 100_000}, operator="al",
                  occurred_at=1,
              )]),
              *shard.control([CreditBudget(command_id="k1", campaign_id="paris", amount_micros=50_000,
                                           source="leetchi", operator="al", occurred_at=2)]),
              *shard.decide([request("m3")])]
    return shard, events


def test_a_snapshot_round_trips_with_its_offsets():
    shard, _ = busy_shard()
    state = shard._states["paris"]
    restored, offsets = decode_snapshot(encode_snapshot(state, {0: 12, 1: 7}))
    assert restored == state and offsets == {0: 12, 1: 7}


def test_snapshot_plus_overlapping_tail_equals_the_full_replay():
    shard, events = busy_shard()
    snap_state, _ = decode_snapshot(encode_snapshot(shard._states["paris"], {}))
    more = shard.decide([request("m4"), request("m5")])
    # The tail read after the snapshot's offsets may start earlier than the snapshot's seq.
    rebuilt = CampaignShard([campaign(budget_micros=1_000_000)])
    rebuilt._states["paris"] = snap_state
    rebuilt.recover(events[-2:] + more)
    assert rebuilt.status() == shard.status()


def test_idempotency_memory_is_bounded():
    c = campaign(budget_micros=10**15)
    shard = CampaignShard([c])
    # All at once: no surge mode, which would queue them (this is about the memory).
    shard.control([ChangePolicy(command_id="p0", campaign_id="paris", changes={"surge_multiple": 0},
                                operator="alice", occurred_at=0)])
    n = REMEMBERED_DECISIONS + 10
    decided = shard.decide([request(f"m{i}") for i in range(n)])
    state: CampaignState = shard._states["paris"]
    assert len(state.decided) == REMEMBERED_DECISIONS and state.approved == n
    assert "m0" not in state.decided and f"m{n - 1}" in state.decided
    # The first decision, forgotten by id, is still not applied again: its seq is old.
    before = (state.balance_micros, state.seq, state.approved)
    evolve_campaign(state, decided[0])
    assert (state.balance_micros, state.seq, state.approved) == before


def test_a_full_idempotency_memory_fits_in_one_snapshot_record():
    # Kafka's 1 MiB default crashed the snapshot timer after ~3,500 decisions.
    import hashlib

    shard = CampaignShard([campaign(budget_micros=10**15)])
    shard.decide([request(hashlib.sha256(str(i).encode()).hexdigest()[:32])
                  for i in range(REMEMBERED_DECISIONS)])
    data = encode_snapshot(shard._states["paris"], {0: 1})
    assert len(data) < MAX_SNAPSHOT_BYTES
    assert decode_snapshot(data)[0] == shard._states["paris"]


def test_an_uncompressed_snapshot_from_before_still_decodes():
    import zlib

    shard, _ = busy_shard()
    plain = zlib.decompress(encode_snapshot(shard._states["paris"], {0: 3}))
    assert decode_snapshot(plain) == (shard._states["paris"], {0: 3})


def test_a_snapshot_from_before_the_evidence_is_refused_and_the_state_rebuilt_from_the_journal():
    import zlib

    import orjson

    from actors.snapshot import SnapshotOutdated

    shard, _ = busy_shard()
    state = shard._states["paris"]
    raw = orjson.loads(zlib.decompress(encode_snapshot(state, {})))
    # As snapshots held it before issue 28: a surge state and one queue, no cohorts nor words.
    old = {k: v for k, v in raw.items() if k not in ("cohorts", "words", "requests")}
    old.update(surge={"minute": -1, "count": 0, "history": [], "active": False,
                      "last_surge_minute": -1}, queue={"capacity": 100_000, "items": []})
    with pytest.raises(SnapshotOutdated, match="older format"):
        decode_snapshot(orjson.dumps(old))
    assert decode_snapshot(encode_snapshot(state, {}))[0] == state
