"""One campaign in one shard: the shard layout is a deployment fact, held by the running
shards and checked by every worker that starts (issue 29 item 2), on the run's Ray session."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from actors.remote import CampaignShards, ShardLayoutError
from infra.broker import ensure_topics
from infra.journal import KafkaJournal
from schemas.campaign import Campaign
from schemas.commands import RequestReply
from schemas.events import ReplyApproved
from tests.e2e.conftest import CONFIG, new_sender, of

pytestmark = pytest.mark.services


def campaign(cid: str, price: int = 80_000) -> Campaign:
    return Campaign(id=cid, number="3364463000" + str(len(cid)), reply_text="Non c'est non.",
                    language="fr", country="FR", budget_micros=160_000,
                    price_per_segment_micros=price, starts_at=0, ends_at=10**13,
                    originator="AntiRelou", pacing=False, policy=(("reply_delay_ms", 0),))


def shards_of(kafka: str, app: str, campaigns, n: int) -> CampaignShards:
    return CampaignShards(campaigns, journal=KafkaJournal(kafka), journal_topic=f"{app}.journal",
                          snapshot_topic=f"{app}.snapshots", n_shards=n, namespace=app)


def test_a_facade_with_another_number_of_shards_or_campaigns_refuses(kafka, ray_address):
    # Issue 29 item 2: Ray hands a worker the running actors by name and ignores the
    # campaigns it passes; with another --shards one campaign was in two shards: 4 replies
    # approved on a 2-reply budget, both shards handing out seqs 1-3.
    app = "layout-" + uuid.uuid4().hex[:8]
    ensure_topics(kafka, {f"{app}.journal": 2, f"{app}.snapshots": 1})
    campaigns = [campaign("paris"), campaign("lyon"), campaign("tiny")]
    running = shards_of(kafka, app, campaigns, 2)
    with pytest.raises(ShardLayoutError) as refused:
        shards_of(kafka, app, campaigns, 1)
    assert "2 shard(s) running, 1 here" in str(refused.value)
    assert "\n" not in str(refused.value)
    with pytest.raises(ShardLayoutError, match="campaigns lyon, paris, tiny running, "):
        shards_of(kafka, app, campaigns[:2], 2)
    changed = [campaign("paris", price=90_000), *campaigns[1:]]
    with pytest.raises(ShardLayoutError, match="campaign paris: price_per_segment_micros differ"):
        shards_of(kafka, app, changed, 2)
    # The same layout shares the running shards: one budget, one seq.
    same = shards_of(kafka, app, campaigns, 2)
    first = asyncio.run(running.decide([RequestReply(
        message_id="m1", campaign_id="paris", sender="s_a", occurred_at=1_000, reply_to="x")]))
    second = asyncio.run(same.decide([RequestReply(
        message_id="m2", campaign_id="paris", sender="s_b", occurred_at=2_000, reply_to="x")]))
    assert [type(e) for e in first + second] == [ReplyApproved, ReplyApproved]
    assert (first[0].seq, second[0].seq) == (1, 2)


def test_a_worker_started_with_another_shards_refuses_with_one_line(
        workers, tmp_path, kafka, ray_address):
    for name in "abc":
        (tmp_path / name).mkdir()
    first = workers.start(tmp_path / "a", kafka, ray_address, {}, args=("--shards", "2"))
    with pytest.raises(RuntimeError) as refused:
        workers.start(tmp_path / "b", kafka, ray_address, {}, app_id=first.app_id,
                      args=("--shards", "1"))
    said = str(refused.value)
    assert said.startswith("worker exited 2:"), said[:300]
    lines = [line for line in said.splitlines() if "another layout" in line]
    assert len(lines) == 1 and lines[0].startswith("antirelou: the campaign shards"), said
    assert "2 shard(s) running, 1 here" in lines[0]
    assert "Traceback" not in said
    # A campaign file changed under a running deployment: refused too, until it can.
    with pytest.raises(RuntimeError, match="campaign paris: .*reply_text"):
        workers.start(tmp_path / "c", kafka, ray_address, {}, app_id=first.app_id,
                      args=("--shards", "2"),
                      config_text=CONFIG.replace("Ce numero est un numero anti-relou.",
                                                 "Un autre texte."))
    # The first worker goes on deciding.
    text = first.post(sender=new_sender())
    first.wait_for(lambda ev: of(ev, text.message_id, "ReplyApproved"))
