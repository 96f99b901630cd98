"""The dashboard/metrics projection: journals made by the real core (tests/audit/test_audit.py's
pipeline), read partition after partition with redeliveries, give the shard's own status."""

from __future__ import annotations

from collections import Counter

from actors.shard import CampaignShard, is_campaign_event
from schemas.commands import ChangePolicy, CreditBudget
from streams.console.metrics import Projection
from tests.factories import DAY, T0, journal_of
from tests.factories import story_campaign as audit_campaign

MIN = 60_000


def flood():
    paris, lyon = audit_campaign("paris", budget=350_000), audit_campaign("lyon", budget=10**9)
    steps = []
    for i in range(40):
        sender = f"s_{i % 13}"
        steps.append((f"m{i}", "paris" if i % 3 else "lyon", sender, T0 + i * MIN, "33-612"))
    steps.append(ChangePolicy(command_id="c1", campaign_id="lyon", changes={"reserve_micros": 5_000_000},
                              operator="alice", occurred_at=T0 + 50 * MIN))
    steps.append(CreditBudget(command_id="c2", campaign_id="paris", amount_micros=1_000_000, source="leetchi",
                              operator="alice", occurred_at=T0 + 51 * MIN))
    for i in range(40, 50):
        steps.append((f"m{i}", "paris", f"s_new{i}", T0 + DAY + i * MIN, "33-612"))
    steps.append(("m3", "lyon", "s_3", T0 + 3 * MIN, "33-612"))  # a redelivered webhook
    return [paris, lyon], journal_of(steps, [paris, lyon], redeliver={"m4", "m41"})


def test_projection_matches_the_shard_and_counts_each_text_once():
    campaigns, journal = flood()
    p = Projection(campaigns)
    p.feed([(e, e.occurred_at) for e in journal])
    expected = CampaignShard(campaigns, [e for e in journal if is_campaign_event(e)]).status()
    for cid in ("paris", "lyon"):
        assert p.status(cid) == expected[cid]
        verdicts = Counter()
        seen = set()
        for e in journal:
            if e.TYPE == "SenderScreened" and e.campaign_id == cid and e.message_id not in seen:
                seen.add(e.message_id)
                verdicts[(e.verdict, e.reason or "")] += 1
        assert p.figures[cid].texts == verdicts
        sent = {e.message_id for e in journal if e.TYPE == "ReplySent" and e.campaign_id == cid}
        assert p.figures[cid].replies["sent"] == len(sent) > 0
    assert p.figures["lyon"].policy_by == "alice"
    assert p.figures["paris"].state.credited_micros == 1_000_000
    # a restated verdict is in the journal twice, counted once
    assert sum(1 for e in journal if e.TYPE == "SenderScreened" and e.message_id == "m3") == 2


def test_campaign_events_out_of_seq_order_wait_for_the_gap():
    campaigns, journal = flood()
    decisions = [e for e in journal if is_campaign_event(e) and e.campaign_id == "paris"]
    decisions.sort(key=lambda e: -e.seq)  # worst case: newest first
    p = Projection(campaigns)
    p.feed([(e, e.occurred_at) for e in decisions[:-1]])
    assert p.figures["paris"].state.seq == 0  # seq 1 missing: nothing applied yet
    p.feed([(decisions[-1], decisions[-1].occurred_at)])
    assert p.figures["paris"].state.seq == max(e.seq for e in decisions)


def test_latency_from_the_webhook_record_whichever_topic_is_read_first():
    campaigns, journal = flood()
    p = Projection(campaigns)
    screened = [e for e in journal if e.TYPE == "SenderScreened"]
    first, second = screened[0], screened[1]
    p.webhook_seen(first.message_id, 1_000)
    p.apply(first, 1_250)  # verdict 0.25 s after the webhook
    p.apply(second, 2_000)  # verdict read before the webhook's record
    p.webhook_seen(second.message_id, 1_500)
    got = sorted(p.take_latencies())
    assert [(k, round(s, 3)) for k, _, s in got] == [("verdict", 0.25), ("verdict", 0.5)]
    assert {c for _, c, _ in got} == {first.campaign_id, second.campaign_id}
    assert p.take_latencies() == []


def test_minute_summary_and_snapshot_use_no_number_or_pseudonym_as_a_key():
    campaigns, journal = flood()
    p = Projection(campaigns)
    p.feed([(e, e.occurred_at) for e in journal])
    lines = p.minute_summary(T0 // MIN + 1)
    assert set(lines) == {"paris"}
    assert lines["paris"].startswith("1 texts (forward 1)") and "balance EUR" in lines["paris"]
    snap = p.snapshot(T0 + DAY + 50 * MIN)
    keys = set(snap["campaigns"]["paris"]["texts"]) | set(snap["campaigns"]["paris"]["decisions"])
    assert keys and not any(k.startswith("s_") or k[:1].isdigit() for k in keys)
    assert snap["campaigns"]["paris"]["last"] and all(
        d["sender"].startswith("s_") for d in snap["campaigns"]["paris"]["last"])


def test_prometheus_export_and_the_grafana_dashboard_use_the_same_names():
    import json
    import re
    from pathlib import Path

    from prometheus_client import CollectorRegistry, Histogram, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from streams.console.metrics import TEXT_BUCKETS
    from streams.console.ops import ProjectionCollector

    campaigns, journal = flood()
    p = Projection(campaigns)
    p.feed([(e, e.occurred_at) for e in journal])
    registry = CollectorRegistry()
    for name in ("antirelou_webhook_to_verdict_seconds", "antirelou_webhook_to_reply_sent_seconds"):
        Histogram(name, "h", ["campaign"], buckets=TEXT_BUCKETS, registry=registry).labels("paris")
    registry.register(ProjectionCollector(p, lambda: (T0 + DAY) / 1000, lambda: {"screening": 3}))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(generate_latest(registry).decode())
               for s in f.samples}
    paris = Counter({(v, r): n for (v, r), n in p.figures["paris"].texts.items()})
    for (verdict, reason), n in paris.items():
        assert samples[("antirelou_texts_total", (("campaign", "paris"), ("reason", reason),
                                                  ("verdict", verdict)))] == n
    assert samples[("antirelou_balance_eur", (("campaign", "paris"),))] == \
        p.status("paris")["balance_micros"] / 1e6
    assert samples[("antirelou_consumer_lag", (("stage", "screening"),))] == 3
    names = {n for n, _ in samples}  # with samples, and declared (empty here)
    names |= {f.name + ("_total" if f.type == "counter" else "") for f in registry.collect()}
    dashboard = json.loads(Path("infra/grafana/antirelou-dashboard.json").read_text())
    used = {m for panel in dashboard["panels"] for t in panel["targets"]
            for m in re.findall(r"antirelou_\w+", t["expr"])}
    assert used and used <= names, used - names
    # never a number or a pseudonym as a label value
    values = {v for _, labels in samples for _, v in labels}
    assert not [v for v in values if v.startswith("s_") or re.fullmatch(r"\+?\d{6,}", v)]


def test_a_text_written_again_after_its_verdict_is_no_latency():
    # A broker restart has the webhook write its last texts again; their verdicts were
    # journaled before the new records: that is no wait of 0 s (the histogram showed
    # hundreds of them, summing to 0, after a restart).
    campaigns, journal = flood()
    p = Projection(campaigns)
    first = next(e for e in journal if e.TYPE == "SenderScreened")
    p.apply(first, 5_000)
    p.webhook_seen(first.message_id, 9_000)
    assert p.take_latencies() == []
