"""Raids through the real worker with the shipped default policy, checked on what the local
MessageBird server received (issue 12's end-to-end test; issue 28's launch and raid).

The raid scenario (a genuine stream, then a raid at >= 40x its rate: persistent,
SIM-rotating and one-shot numbers) is replayed through the signed webhook as fast as the
worker takes it, its ``createdDatetime`` on the scenario's own timeline ending a minute ago
(event time comes from the provider, so the decisions are the ones the real timeline gets).
The worker's clock timer is slowed down so that its wall-clock ticks do not land in the
middle of that past timeline; the test sends the ticks the timer would have sent (one a
minute of the timeline, after the texts before them, then past the 30-minute safety delay
and the TTL), as `Tick` records on reply-requests, like the leader timer does. What went out is
counted at the provider: every genuine sender outside the raid answered, at least 30 % of
those inside, trolls paid at most 15 % of what answering every sender once costs, nobody
twice, the audit clean.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter

import pytest

from infra.journal import iter_journal
from schemas.events import (
    ReplyApproved,
    ReplyDeferred,
    ReplyDenied,
    ReplyExpired,
    SenderScreened,
    SurgeEnded,
    SurgeStarted,
)
from streams.simulate import REPLY_2017, drive_webhook
from streams.simulate.grid import baseline, score, targets_missed
from streams.simulate.grid_traffic import draw_cell, generate_cell
from streams.simulate.scenarios import REPLY_COST_MICROS, TROLL_KINDS, generate_plan, retimed, run_plan
from tests.e2e.conftest import (
    ACCESS_KEY,
    ADMIN_TOKEN,
    SIGNING_KEY,
    send_ticks,
    start_worker,
    stop_worker,
)

pytestmark = [pytest.mark.services, pytest.mark.timeout(1200)]

NUMBER = "33644630009"
LAUNCH_NUMBER = "33644630010"  # a campaign of its own: fresh, its clock not ahead of its texts
CONFIG = "".join(f"""
[[campaign]]
id = "{cid}"
number = "+{number}"
reply_text = "{REPLY_2017}"
language = "fr"
budget_eur = "3700.00"
price_per_segment_eur = "0.08"
start = 2026-01-01
end = 2099-12-31
originator = "AntiRelou"
""" for cid, number in (("raid", NUMBER), ("launch", LAUNCH_NUMBER)))


@pytest.fixture(scope="module")
def raid_worker(tmp_path_factory, kafka, ray_address, messagebird):
    w = start_worker(tmp_path_factory.mktemp("raid"), kafka, ray_address, {
        "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
        "ANTIRELOU_ADMIN_TOKEN": ADMIN_TOKEN, "ANTIRELOU_TICK_INTERVAL_S": "3600",
        # A replay of the past day: its createdDatetime is kept, not clamped to arrival.
        "ANTIRELOU_EVENT_SKEW_MINUTES": "1440"},
        config_text=CONFIG)
    yield w
    stop_worker(w)


def test_a_raid_through_the_real_worker_starves_the_trolls_and_answers_the_genuine(
        raid_worker, messagebird):
    w = raid_worker
    plan = generate_plan("raid", 4)
    span = plan.texts[-1].at_ms - plan.texts[0].at_ms
    plan = retimed(plan, (int(time.time()) - 60) * 1000 - span)  # ends a minute ago
    predicted = run_plan(plan)["runs"][0]
    before = len(messagebird.messages)
    journal = _replay(w, plan.texts, "raid", NUMBER)

    kind = {t.sender: t.kind for t in plan.texts}
    first = {}
    for t in plan.texts:
        first.setdefault(t.sender, t.at_ms)
    sent = Counter(r for m in messagebird.messages[before:] for r in m["recipients"])
    assert max(sent.values()) == 1, "a sender got two SMS"
    genuine = [s for s, k in kind.items() if k == "genuine"]
    lo, hi = plan.raid
    inside = [s for s in genuine if lo <= first[s] <= hi]
    outside = [s for s in genuine if s not in inside]
    share_out = sum(s in sent for s in outside) / len(outside)
    share_in = sum(s in sent for s in inside) / max(1, len(inside))
    troll_eur = sum(n for s, n in sent.items() if kind.get(s) in TROLL_KINDS) * REPLY_COST_MICROS / 1e6
    answer_once_eur = sum(1 for k in kind.values() if k in TROLL_KINDS) * REPLY_COST_MICROS / 1e6
    assert share_out >= 0.98, (share_out, predicted)
    assert share_in >= 0.30 or not inside, (share_in, predicted)
    assert troll_eur <= 0.15 * answer_once_eur, (troll_eur, answer_once_eur, predicted)
    # The raid's words were found and its requests refused for them, not paid.
    assert any(isinstance(e, ReplyDenied | ReplyExpired) and e.reason == "raid_words" for e in journal)

    audited = w.cli("audit")
    assert audited.returncode == 0, audited.stdout[-2000:] + audited.stderr[-2000:]


def test_a_launch_overlapping_a_copy_paste_raid_through_the_real_worker(raid_worker, messagebird):
    # A fresh campaign launched by a media mention (60 first texts a minute for 12 minutes
    # after a quiet half hour), a 3-minute raid of 1,500 numbers pasting slogans in its
    # middle, then ordinary traffic: the grid's targets, on what the provider received.
    w = raid_worker
    cell = dataclasses.replace(
        draw_cell("during", "copied", False, 1, 7), vocabulary="diverse", launch_per_min=60.0,
        launch_minutes=12, launch_climb_minutes=0, quiet_minutes=30, quiet_per_min=2.0,
        ordinary_per_min=4.0, raid_numbers=(1_500,), raid_minutes=(3.0,), persistent=2,
        sim_share=0.1, raid_retext=0.2, genuine_retext=0.3)
    traffic = generate_cell(cell)
    shift = (int(time.time()) - 60) * 1000 - traffic.texts[-1].at_ms  # ends a minute ago
    shift -= shift % 1000
    texts = [dataclasses.replace(t, at_ms=t.at_ms + shift) for t in traffic.texts]
    traffic = dataclasses.replace(
        traffic, texts=texts,
        raids={c: [(lo + shift, hi + shift) for lo, hi in r] for c, r in traffic.raids.items()})
    before = len(messagebird.messages)
    journal = _replay(w, texts, "launch", LAUNCH_NUMBER)

    sent = {r for m in messagebird.messages[before:] for r in m["recipients"]}
    approved = {e.message_id: (e.cost_micros, e.send_at) for e in journal if isinstance(e, ReplyApproved)}
    paid = {t.message_id: approved[t.message_id] for t in texts
            if t.message_id in approved and t.sender in sent}
    once = baseline(traffic, once=True)
    trolls = {t.message_id for t in texts if t.kind in TROLL_KINDS}
    row = score(traffic, paid, sum(c for m, (c, _) in once.items() if m in trolls))
    assert targets_missed(cell, row) == [], row
    assert row["genuine_answered_inside_raid"] >= 0.30, row
    audited = w.cli("audit")
    assert audited.returncode == 0, audited.stdout[-2000:] + audited.stderr[-2000:]


class _Tail:
    """The journal read on from where it was last read (a whole re-read per poll would grow
    with the journal)."""

    def __init__(self, w) -> None:
        self.w, self.events, self.start = w, [], {}

    def poll(self) -> list:
        async def read() -> None:
            async for partition, offset, event in iter_journal(self.w.kafka, self.w.journal_topic,
                                                               start=dict(self.start)):
                self.events.append(event)
                self.start[partition] = offset + 1
        asyncio.run(read())
        return self.events


def _chunks(texts) -> list:
    """The texts as the webhook gets them at their pace: a minute of the timeline at a time
    (a dense minute alone; quiet minutes together until they hold a few texts). Posted all at
    once, the screen stage's partitions would hand the campaign one partition's hour before
    another's, and a first text counts in the minute it reaches the campaign."""
    chunks, chunk = [], []
    for t in texts:
        if chunk and t.at_ms // 60_000 != chunk[-1].at_ms // 60_000 and len(chunk) >= 10:
            chunks.append(chunk)
            chunk = []
        chunk.append(t)
    return chunks + [chunk] if chunk else chunks


def _replay(w, texts, campaign: str, number: str) -> list:
    """Post the texts through the signed webhook at their pace (``_chunks``), each chunk
    decided before the next is posted and followed by the ticks of the minutes it spans (one
    a minute, as the leader's timer sends them, never ahead of a text still to come), then
    the ticks after the last text (past the safety delay and the TTL), until every request
    has ended (paid and sent, or expired) and the surges are over."""
    tail = _Tail(w)
    decided_types = (ReplyDeferred, ReplyDenied, ReplyApproved, ReplyExpired)
    chunks = _chunks(texts)
    ticked = texts[0].at_ms
    for i, chunk in enumerate(chunks):
        counts = drive_webhook(chunk, w.url + "/webhooks/messagebird/sms", number, SIGNING_KEY)
        assert set(counts) == {"200"}, counts
        ids = {t.message_id for t in chunk}
        deadline = time.monotonic() + 120
        while True:
            events = tail.poll()
            forwarded = {e.message_id for e in events if isinstance(e, SenderScreened)
                         and e.message_id in ids and e.verdict == "forward"}
            screened = {e.message_id for e in events if isinstance(e, SenderScreened)}
            decided = {e.message_id for e in events if isinstance(e, decided_types)}
            if ids <= screened and forwarded <= decided:
                break
            assert time.monotonic() < deadline, f"chunk {i} of {len(chunks)} not decided"
            time.sleep(0.1)
        until = chunks[i + 1][0].at_ms if i + 1 < len(chunks) else chunk[-1].at_ms + 1
        ticks = list(range(ticked + 60_000, until, 60_000))
        if ticks:
            send_ticks(w, campaign, ticks)
            ticked = ticks[-1]
    send_ticks(w, campaign, [ticked + m * 60_000 for m in range(1, 7 * 60)])

    def settled(events):
        events = [e for e in events if getattr(e, "campaign_id", campaign) == campaign]
        kinds = Counter(type(e) for e in events)
        deferred = {e.message_id for e in events if isinstance(e, ReplyDeferred)}
        ended = {e.message_id for e in events if isinstance(e, ReplyExpired)
                 or (isinstance(e, ReplyApproved) and e.deferred_at is not None)}
        return (kinds[SurgeEnded] >= kinds[SurgeStarted] >= 1 and deferred <= ended
                and _unsent(events) == 0)
    return w.wait_for(settled, timeout=600)


def _unsent(events) -> int:
    """Approved replies with no outcome yet (sent, failed or uncertain)."""
    approved = {e.message_id for e in events if isinstance(e, ReplyApproved)}
    done = {e.message_id for e in events if e.TYPE in ("ReplySent", "ReplyFailed", "ReplyUncertain")}
    return len(approved - done)
