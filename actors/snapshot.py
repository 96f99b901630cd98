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

from actors.evidence import Cohorts, WordStats
from actors.pacing import AllowanceState
from actors.queue import RequestQueue
from actors.state import CampaignState, idempotency_key
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
        "cohorts": state.cohorts.to_dict(),
        "words": state.words.to_dict(),
        "requests": state.queue.to_dict(),
        "release_tat": state.release_tat,
        "surges": state.surges,
        "held_released": {str(m): n for m, n in state.held_released.items()},
        "raid_refused": {str(m): n for m, n in state.raid_refused.items()},
        "decided": [codec.to_dict(e) for e in state.decided.values()],
        "commands": [codec.to_dict(e) for e in state.commands.values()],
        "journal_offsets": {str(p): o for p, o in journal_offsets.items()},
    }), 1)


class SnapshotOutdated(ValueError):
    """A snapshot written before the campaign kept its cohorts, word statistics and request
    queue (issue 28): its state cannot be completed, so the campaign is rebuilt from the
    whole journal instead (what a campaign without a snapshot does)."""


def decode_snapshot(data: bytes) -> tuple[CampaignState, dict[int, int]]:
    if not data.startswith(b"{"):  # zlib; plain JSON before compression
        data = zlib.decompress(data)
    raw: dict[str, Any] = codec.load_data(data)
    if "cohorts" not in raw:
        raise SnapshotOutdated(f"campaign {raw.get('campaign_id')!r}: snapshot of an older format")
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
        # Absent from snapshots taken before the per-prefix limit.
        prefix_tat=dict(raw.get("prefix_tat", {})),
        cohorts=Cohorts.from_dict(raw["cohorts"]),
        words=WordStats.from_dict(raw["words"]),
        queue=RequestQueue.from_dict(raw["requests"]),
        release_tat=raw.get("release_tat", 0),
        surges=[list(s) for s in raw["surges"]],
        held_released={int(m): n for m, n in raw["held_released"].items()},
        raid_refused={int(m): n for m, n in raw["raid_refused"].items()},
        decided=OrderedDict((idempotency_key(e), e) for e in decided),
        commands=OrderedDict((idempotency_key(e), e) for e in commands),
    )
    return state, {int(p): o for p, o in raw["journal_offsets"].items()}
