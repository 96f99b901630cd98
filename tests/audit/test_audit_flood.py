"""The audit stays clean with surge mode and the per-prefix limit on: any journal the core
writes through the shells' steps (bursts, clock ticks, redeliveries, live policy changes,
refunds of replies not sent, prices from delivery reports) is re-decided exactly."""

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.commands import ChangePolicy, CreditBudget, Tick
from schemas.events import ReplyDeferred
from streams.audit import audit, to_json
from tests.factories import T0, journal_of
from tests.factories import story_campaign as audit_campaign

MINUTE = 60_000
FLOOD = {"surge_multiple": 2, "surge_min_rate": 3, "surge_quiet_minutes": 2, "surge_queue": 3,
         "surge_ttl_ms": 10 * MINUTE, "surge_release_per_minute": 2,
         "prefix_burst": 2, "prefix_period_ms": 5 * MINUTE}
PREFIXES = ["33-612", "33-756", "33-699", ""]


@st.composite
def flood_scenarios(draw):
    campaigns = [audit_campaign(cid=f"c{k}", budget=draw(st.integers(1, 30)) * 100_000,
                                pacing=draw(st.booleans()))
                 for k in range(draw(st.integers(1, 2)))]
    steps: list = [ChangePolicy(command_id=f"flood-{c.id}", campaign_id=c.id, changes=dict(FLOOD),
                                operator="op", occurred_at=T0) for c in campaigns]
    texts: list = []
    at = T0
    for n in range(draw(st.integers(0, 30))):
        at += draw(st.sampled_from([0, 0, 1_000, 30_000, 2 * MINUTE, 12 * MINUTE]))
        cid = draw(st.sampled_from([c.id for c in campaigns]))
        kind = draw(st.sampled_from(["burst"] * 5 + ["tick", "tick", "again", "policy", "credit"]))
        if kind == "tick":
            steps.append(Tick(campaign_id=cid, occurred_at=at))
        elif kind == "again" and texts:
            steps.append(draw(st.sampled_from(texts)))  # a redelivered webhook
        elif kind == "policy":
            changes = draw(st.sampled_from([{"surge_multiple": 0}, {"surge_multiple": 3},
                                            {"prefix_burst": 0}, {"surge_queue": 1},
                                            {"surge_release_per_minute": 5}]))
            steps.append(ChangePolicy(command_id=f"op{n}", campaign_id=cid, changes=changes, operator="op",
                                      occurred_at=at))
        elif kind == "credit":
            steps.append(CreditBudget(command_id=f"op{n}", campaign_id=cid,
                                      amount_micros=draw(st.integers(1, 300_000)), source="gift",
                                      operator="op", occurred_at=at))
        else:
            for j in range(draw(st.integers(1, 6))):
                text = (f"m{n}.{j}", cid, f"s{draw(st.integers(0, 40))}", at,
                        draw(st.sampled_from(PREFIXES)))
                texts.append(text)
                steps.append(text)
    mids = [t[0] for t in texts]
    redeliver = set(draw(st.lists(st.sampled_from(mids), max_size=3))) if mids else set()
    # Some replies are not sent and refunded, some priced by a delivery report.
    fail = set(draw(st.lists(st.sampled_from(mids), max_size=3))) if mids else set()
    priced = {m: draw(st.sampled_from([70_000, 100_000, 160_000]))
              for m in (draw(st.lists(st.sampled_from(mids), max_size=3)) if mids else [])}
    return campaigns, steps, {"partitions": draw(st.integers(1, 3)),
                              "batch": draw(st.integers(1, 5)), "redeliver": redeliver,
                              "fail": fail, "refund": True, "priced": priced}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flood_scenarios())
def test_any_journal_with_surges_and_prefix_floods_audits_clean(scenario):
    campaigns, steps, kw = scenario
    journal = journal_of(steps, campaigns, **kw)
    event("deferrals" if any(isinstance(e, ReplyDeferred) for e in journal) else "no deferral")
    result = audit(journal, campaigns)
    assert result.ok, [m.to_json() for m in result.mismatches[:3]]
    one_partition = journal_of(steps, campaigns, **{**kw, "partitions": 1})
    assert to_json(audit(one_partition, campaigns))["campaigns"] == to_json(result)["campaigns"]
