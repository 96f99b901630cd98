"""Campaign snapshots: a campaign's state as bytes, so recovery reads a snapshot plus the
journal after it instead of the whole history.

A snapshot record (on the compacted ``<app>.campaign-snapshots`` topic, key: campaign id)
holds the state at ``seq`` and ``journal_offsets``: the journal's end offsets read *before*
the state was taken. Every event with a higher ``seq`` was decided after that read, so it
lies at or after those offsets; events there with ``seq`` at or below the snapshot's are
skipped by ``evolve_campaign``.

Size: a snapshot carries the campaign's remembered decisions (up to 50,000, about 290 bytes
each as JSON), so it is zlib-compressed (about 3x) and its topic and producer allow records
up to ``MAX_SNAPSHOT_BYTES``; Kafka's 1 MiB default crashed the worker's snapshot timer after
about 3,500 decisions. Uncompressed (older) snapshots still decode.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from typing import Any

from actors.campaign_state import CampaignState, _new_queue, idempotency_key
from actors.pacing import AllowanceState
from actors.surge import DeferralQueue, SurgeState
from schemas import codec
from schemas.policy import Policy

# Largest snapshot record: the snapshot topic's max.message.bytes and the producer's
# max_request_size. 50,000 remembered decisions are about 14 MiB before compression.
MAX_SNAPSHOT_BYTES = 32 * 2**20


def encode_snapshot(state: CampaignState, journal_offsets: dict[int, int]) -> bytes:
    return zlib.compress(codec.dump_data({
        "campaign_id": state.campaign_id,
        "seq": state.seq,
        "balance_micros": state.balance_micros,
        "spent_micros": state.spent_micros,
        "credited_micros": state.credited_micros,
        "approved": state.approved,
        "denied": state.denied,
        "refunded_micros": state.refunded_micros,
        "policy": state.policy.to_dict(),
        "pacing": state.pacing.to_dict(),
        "ends_at": state.ends_at,
        "prefix_tat": state.prefix_tat,
        "surge": state.surge.to_dict(),
        "queue": state.queue.to_dict(),
        "queued": state.queued,
        "release_tat": state.release_tat,
        "surge_arrival_ranges": state.surge_arrival_ranges,
        "surge_promoted_ranges": state.surge_promoted_ranges,
        "decided": [codec.to_dict(e) for e in state.decided.values()],
        "commands": [codec.to_dict(e) for e in state.commands.values()],
        "journal_offsets": {str(p): o for p, o in journal_offsets.items()},
    }), 1)


def _by_range(raw: dict[str, Any], name: str, total_name: str) -> dict[str, int]:
    """A surge count by number range (``name``); in snapshots from before it was kept by
    range, its total (``total_name``) as one range (counted as it was then)."""
    if name in raw:
        return dict(raw[name])
    total = raw.get(total_name, 0)
    return {"": total} if total else {}


def decode_snapshot(data: bytes) -> tuple[CampaignState, dict[int, int]]:
    if not data.startswith(b"{"):  # zlib; plain JSON before compression
        data = zlib.decompress(data)
    raw: dict[str, Any] = codec.load_data(data)
    decided = [codec.from_dict(d) for d in raw["decided"]]
    # Operator commands sat among the decisions in snapshots before they were kept apart.
    commands = [codec.from_dict(d) for d in raw.get("commands", [])] + [
        e for e in decided if idempotency_key(e).startswith("cmd:")]
    decided = [e for e in decided if not idempotency_key(e).startswith("cmd:")]
    state = CampaignState(
        campaign_id=raw["campaign_id"],
        balance_micros=raw["balance_micros"],
        policy=Policy.from_dict(raw["policy"]),
        pacing=AllowanceState.from_dict(raw["pacing"]),
        ends_at=raw.get("ends_at", 0),  # the shard sets it from the campaign in any case
        spent_micros=raw["spent_micros"],
        credited_micros=raw["credited_micros"],
        approved=raw["approved"],
        denied=raw["denied"],
        refunded_micros=raw.get("refunded_micros", 0),  # snapshots before refunds existed
        seq=raw["seq"],
        # Absent from snapshots taken before the per-prefix limit and surge mode.
        prefix_tat=dict(raw.get("prefix_tat", {})),
        surge=SurgeState.from_dict(raw["surge"]) if "surge" in raw else SurgeState(),
        queue=DeferralQueue.from_dict(raw["queue"]) if "queue" in raw else _new_queue(),
        queued={mid: (v[0], v[1]) for mid, v in raw.get("queued", {}).items()},
        release_tat=raw.get("release_tat", 0),
        surge_arrival_ranges=_by_range(raw, "surge_arrival_ranges", "surge_arrivals"),
        surge_promoted_ranges=_by_range(raw, "surge_promoted_ranges", "surge_promoted"),
        decided=OrderedDict((idempotency_key(e), e) for e in decided),
        commands=OrderedDict((idempotency_key(e), e) for e in commands),
    )
    return state, {int(p): o for p, o in raw["journal_offsets"].items()}
