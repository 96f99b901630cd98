"""The audit replay: journals made by the real core, audited, tampered with, replayed."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.words import word_keys
from infra.config import load_campaigns
from schemas import codec
from schemas.commands import (
    ChangePolicy,
    CreditBudget,
    RequestReply,
)
from schemas.events import (
    DeliveryReported,
    PolicyChanged,
    ReplyApproved,
    ReplyCostReconciled,
    ReplyDenied,
    ReplyFailed,
    ReplyRefunded,
    ReplySent,
    SenderScreened,
    TextReceived,
)
from streams import cli
from streams.audit import audit, render_text, to_json, what_if
from tests.factories import DAY, HOUR, T0, journal_of
from tests.factories import story_campaign as campaign

STORY = [
    # day 1
    ("m1", "paris", "s_a", T0 + 9 * HOUR),
    ("m2", "paris", "s_b", T0 + 10 * HOUR),
    ("m3", "paris", "s_a", T0 + 11 * HOUR),  # already answered
    ("m3", "paris", "s_a", T0 + 11 * HOUR),  # the webhook again: the same verdict again
    # day 2
    ("m4", "paris", "s_c", T0 + DAY + 8 * HOUR),
    ("m5", "paris", "s_d", T0 + DAY + 9 * HOUR),  # budget exhausted
    ("m6", "paris", "s_e", T0 + DAY + 10 * HOUR),  # budget exhausted
]


def story_journal(**kw):
    kw.setdefault("redeliver", {"m1"})
    kw.setdefault("fail", {"m4"})
    return journal_of(STORY, [campaign()], **kw)


def index_of(journal, cls, mid):
    return next(i for i, e in enumerate(journal) if type(e) is cls and e.message_id == mid)


# --- a clean journal ----------------------------------------------------------------------


def test_a_clean_journal_audits_ok_with_the_right_numbers():
    result = audit(story_journal(), [campaign()])
    assert result.ok and result.mismatches == []
    c = result.counters
    assert (c.texts, c.screenings, c.campaign_events, c.redelivered, c.pending) == (7, 7, 5, 1, 0)
    assert c.restated == 1  # m3 again: its verdict restated, counted once below
    assert (c.replies_sent, c.replies_failed, c.mismatches) == (2, 1, 0)

    paris = to_json(result)["campaigns"]["paris"]
    day1, day2 = paris["days"]
    assert day1 == {
        "day": "2017-10-16", "texts_in": 3, "replies_approved": 2,  # m3 once
        "suppressed": {"already_answered": 1}, "queued": 0,
        "spent_micros": 200_000, "spent_eur": "0.20", "credited_micros": 0, "policy_changes": 0,
        "balance_end_micros": 150_000, "balance_end_eur": "0.15",
        "replies_sent": 2, "replies_failed": 0,
    }
    assert (day2["day"], day2["texts_in"], day2["replies_approved"]) == ("2017-10-17", 3, 1)
    assert day2["suppressed"] == {"budget_exhausted": 2}
    assert (day2["spent_micros"], day2["balance_end_micros"]) == (100_000, 50_000)
    assert (day2["replies_sent"], day2["replies_failed"]) == (0, 1)
    assert paris["budget_ran_out"] == "2017-10-17"
    assert paris["totals"]["suppressed"] == {"already_answered": 1, "budget_exhausted": 2}
    assert paris["totals"]["spent_micros"] == 300_000
    assert (paris["reply_cost_micros"], paris["reply_segments"]) == (100_000, 1)


def test_the_text_report_is_an_aligned_table():
    text = render_text(audit(story_journal(), [campaign()]))
    assert text.startswith("audit OK")
    lines = text.splitlines()
    table = [ln for ln in lines if ln.startswith("  day") or ln.startswith("  2017")
             or ln.startswith("  total")]
    assert len(table) == 4
    assert len({len(ln) for ln in table}) == 1  # right-aligned columns end together
    assert "budget ran out on 2017-10-17" in text


def test_replaying_twice_or_in_another_partition_order_gives_the_same_report():
    journal = story_journal()
    first, again = audit(journal, [campaign()]), audit(journal, [campaign()])
    assert to_json(first) == to_json(again)
    reversed_parts = story_journal(partitions=1)  # one partition: the arrival order
    assert to_json(audit(reversed_parts, [campaign()]))["campaigns"] == to_json(first)["campaigns"]


def test_a_text_for_a_campaign_no_longer_configured_is_denied_and_counted():
    steps = [*STORY, ("m9", "ghost", "s_z", T0 + DAY)]
    journal = journal_of(steps, [campaign()])
    assert any(isinstance(e, ReplyDenied) and e.reason == "unknown_campaign" for e in journal)
    result = audit(journal, [campaign()])
    assert result.ok
    assert result.counters.unknown_campaign == 1
    ghost = to_json(result)["campaigns"]["ghost"]
    assert ghost["budget_micros"] is None
    assert ghost["totals"]["suppressed"] == {"unknown_campaign": 1}


def test_forwarded_texts_without_a_decision_yet_are_pending_not_mismatches():
    journal = story_journal()
    m6 = index_of(journal, ReplyDenied, "m6")
    result = audit(journal[:m6] + journal[m6 + 1:], [campaign()])
    assert result.ok
    assert result.counters.pending == 1
    assert to_json(result)["campaigns"]["paris"]["pending"] == 1


def test_a_forwarded_text_given_again_is_restated_and_its_decision_repeated():
    # After a crash the worker is given the text again: the same verdict, the same decision.
    steps = [*STORY[:2], ("m2", "paris", "s_b", T0 + 10 * HOUR)]
    journal = journal_of(steps, [campaign()], redeliver=())
    assert len([e for e in journal if isinstance(e, SenderScreened) and e.message_id == "m2"]) == 2
    result = audit(journal, [campaign()])
    assert result.ok, result.mismatches
    assert (result.counters.restated, result.counters.redelivered) == (1, 1)
    assert to_json(result)["campaigns"]["paris"]["totals"]["replies_approved"] == 2


def test_a_verdict_lost_in_a_crash_and_restated_later_audits_clean():
    # The crash lost the first copy's TextReceived and verdict (never stored); the copy given
    # again is the only one in the journal, and it is the verdict the text had.
    steps = [*STORY[:2], ("m2", "paris", "s_b", T0 + 10 * HOUR)]
    journal = journal_of(steps, [campaign()], redeliver=())
    first_text = index_of(journal, TextReceived, "m2")
    first_verdict = index_of(journal, SenderScreened, "m2")
    lost = [e for i, e in enumerate(journal) if i not in (first_text, first_verdict)]
    result = audit(lost, [campaign()])
    assert result.ok, result.mismatches
    assert result.counters.restated == 0


def test_a_legacy_duplicate_verdict_is_accepted_as_a_restatement():
    journal = story_journal()
    copies = [i for i, e in enumerate(journal) if isinstance(e, SenderScreened)
              and e.message_id == "m3"]
    assert len(copies) == 2
    journal[copies[1]] = dataclasses.replace(journal[copies[1]], reason="duplicate")
    result = audit(journal, [campaign()])
    assert result.ok, result.mismatches
    assert "duplicate" not in to_json(result)["campaigns"]["paris"]["totals"]["suppressed"]


def test_a_restatement_that_differs_from_the_verdict_is_a_mismatch():
    journal = story_journal()
    copies = [i for i, e in enumerate(journal) if isinstance(e, SenderScreened)
              and e.message_id == "m3"]
    journal[copies[1]] = dataclasses.replace(journal[copies[1]], verdict="forward", reason=None)
    result = audit(journal, [campaign()])
    assert [(m.kind, m.message_id, m.position) for m in result.mismatches][:1] == [
        ("screening", "m3", copies[1])]


# --- tampering ----------------------------------------------------------------------------


def test_a_changed_balance_is_one_mismatch_at_its_position():
    journal = story_journal()
    i = index_of(journal, ReplyApproved, "m2")
    journal[i] = dataclasses.replace(journal[i], balance_after_micros=999)
    result = audit(journal, [campaign()])
    assert not result.ok
    assert result.counters.mismatches == 1
    m = result.mismatches[0]
    assert (m.kind, m.message_id, m.position) == ("decision", "m2", i)
    assert m.recorded["balance_after_micros"] == 999
    assert m.expected["balance_after_micros"] == 150_000


def test_an_approval_turned_into_a_denial_is_a_mismatch():
    journal = story_journal()
    i = index_of(journal, ReplyApproved, "m2")
    a = journal[i]
    journal[i] = ReplyDenied(message_id=a.message_id, campaign_id=a.campaign_id, sender=a.sender,
                             reason="budget_exhausted", cost_micros=a.cost_micros,
                             balance_after_micros=250_000, seq=a.seq, occurred_at=a.occurred_at,
                             policy_version=a.policy_version, prefix=a.prefix)
    result = audit(journal, [campaign()])
    assert [(m.kind, m.message_id, m.position) for m in result.mismatches] == [
        ("decision", "m2", i)]
    assert result.mismatches[0].expected["type"] == "ReplyApproved"
    assert result.mismatches[0].recorded["type"] == "ReplyDenied"


def test_a_flipped_screening_verdict_is_the_first_mismatch():
    journal = story_journal()
    i = index_of(journal, SenderScreened, "m1")
    journal[i] = dataclasses.replace(journal[i], verdict="suppress", reason="already_answered")
    result = audit(journal, [campaign()])
    first = result.mismatches[0]
    assert (first.kind, first.message_id, first.position) == ("screening", "m1", i)
    assert first.expected["verdict"] == "forward"
    # ... and the decision taken for it now has no forwarded text behind it.
    assert [m.kind for m in result.mismatches] == ["screening", "no_forwarded_text"]


def test_a_redelivered_decision_is_not_a_mismatch_but_a_different_one_is():
    journal = story_journal(redeliver=())
    i = index_of(journal, ReplyApproved, "m4")
    again = audit([*journal, journal[i]], [campaign()])
    assert again.ok and again.counters.redelivered == 1
    forged = dataclasses.replace(journal[i], cost_micros=1)
    result = audit([*journal, forged], [campaign()])
    assert [(m.kind, m.message_id, m.position) for m in result.mismatches] == [
        ("conflicting", "m4", len(journal))]


def late_redelivery_steps():
    texts = [(f"m{i}", "paris", f"s_{i}", T0 + i * HOUR) for i in range(5)]
    return [*texts, RequestReply(message_id="m0", campaign_id="paris", sender="s_0", occurred_at=T0,
                                 reply_to="sealed", words=word_keys("salut"))]  # as first sent


def test_a_late_redelivery_the_core_still_remembers_gets_the_same_answer():
    journal = journal_of(late_redelivery_steps(), [campaign(budget=10**6)], batch=1)
    again = [e for e in journal if isinstance(e, ReplyApproved) and e.message_id == "m0"]
    assert len(again) == 2 and again[0] == again[1]
    assert audit(journal, [campaign(budget=10**6)]).counters.redelivered == 1
    # A journal claiming the core decided it afresh (a new seq) is wrong while it remembers.
    i = max(k for k, e in enumerate(journal) if e is again[1])
    journal[i] = dataclasses.replace(again[1], seq=6, balance_after_micros=400_000)
    result = audit(journal, [campaign(budget=10**6)])
    assert [(m.kind, m.message_id, m.position) for m in result.mismatches] == [
        ("decision", "m0", i)]
    assert result.mismatches[0].expected["seq"] == 1


def test_a_late_redelivery_the_core_forgot_is_decided_afresh_and_audits_clean(monkeypatch):
    import actors.evolve

    monkeypatch.setattr(actors.evolve, "REMEMBERED_DECISIONS", 2)
    journal = journal_of(late_redelivery_steps(), [campaign(budget=10**6)], batch=1)
    m0 = [e for e in journal if isinstance(e, ReplyApproved) and e.message_id == "m0"]
    assert [e.seq for e in m0] == [1, 6]  # forgotten, so paid twice: the bound's known cost
    result = audit(journal, [campaign(budget=10**6)])
    assert result.ok, result.mismatches
    assert to_json(result)["campaigns"]["paris"]["totals"]["replies_approved"] == 6


def test_a_lost_text_and_a_lost_screening_are_reported():
    journal = story_journal()
    t = index_of(journal, TextReceived, "m5")
    s = index_of(journal, SenderScreened, "m6")
    kept = [e for k, e in enumerate(journal) if k not in (t, s)]
    kinds = {(m.kind, m.message_id) for m in audit(kept, [campaign()]).mismatches}
    assert ("screening_without_text", "m5") in kinds
    assert ("text_without_screening", "m6") in kinds


# --- policy changes and credits -----------------------------------------------------------


def policy_story():
    c = campaign(budget=200_000, cooldown=None)
    steps = [
        ("m1", "paris", "s_a", T0 + HOUR),
        ("m2", "paris", "s_a", T0 + 2 * HOUR),  # never twice: suppressed
        ChangePolicy(command_id="op-1", campaign_id="paris", changes={"cooldown_ms": HOUR}, operator="alice",
                     occurred_at=T0 + 3 * HOUR),
        ("m3", "paris", "s_a", T0 + 4 * HOUR),  # cooldown passed: forwarded
        ("m4", "paris", "s_b", T0 + 5 * HOUR),  # budget exhausted
        CreditBudget(command_id="op-2", campaign_id="paris", amount_micros=500_000, source="leetchi",
                     operator="alice", occurred_at=T0 + DAY),
        ("m5", "paris", "s_c", T0 + DAY + HOUR),
    ]
    return c, steps


def test_policy_changes_and_credits_are_replayed_in_seq_order():
    c, steps = policy_story()
    journal = journal_of(steps, [c], batch=1)
    result = audit(journal, [c])
    assert result.ok, result.mismatches
    paris = to_json(result)["campaigns"]["paris"]
    day1, day2 = paris["days"]
    assert (day1["replies_approved"], day1["policy_changes"]) == (2, 1)
    assert day1["suppressed"] == {"already_answered": 1, "budget_exhausted": 1}
    assert (day2["credited_micros"], day2["replies_approved"]) == (500_000, 1)
    assert day2["balance_end_micros"] == 200_000 + 500_000 - 3 * 100_000


def test_a_policy_change_read_after_the_verdicts_that_used_it_is_waited_for():
    c, steps = policy_story()
    journal = journal_of(steps, [c], batch=1)
    change = next(e for e in journal if isinstance(e, PolicyChanged))
    late = [e for e in journal if e is not change] + [change]
    result = audit(late, [c])
    assert result.ok, result.mismatches
    assert result.counters.deferred_senders == 3  # s_a, s_b, s_c: screened under v2


def test_a_verdict_under_a_policy_version_that_never_existed_is_a_mismatch():
    c, steps = policy_story()
    journal = journal_of(steps, [c], batch=1)
    i = index_of(journal, SenderScreened, "m3")
    journal[i] = dataclasses.replace(journal[i], policy_version=7)
    result = audit(journal, [c])
    assert (result.mismatches[0].kind, result.mismatches[0].position) == (
        "unknown_policy_version", i)


# --- what-if ------------------------------------------------------------------------------


def test_what_if_a_smaller_budget_shows_fewer_replies_and_the_day_it_ran_out():
    steps = [(f"m{i}", "paris", f"s_{i}", T0 + i * 7 * HOUR) for i in range(8)]
    base = campaign(budget=1_000_000)
    journal = journal_of(steps, [base])
    small = campaign(budget=300_000)
    comparison = what_if(journal, [base], [small])
    summary = to_json(comparison)["summary"]["paris"]
    assert summary["baseline"] == {
        "texts": 8, "replies": 8, "spent_micros": 800_000, "spent_eur": "0.80",
        "budget_left_micros": 200_000, "budget_left_eur": "0.20", "budget_ran_out": None}
    assert summary["what_if"]["replies"] == 3
    assert summary["what_if"]["budget_left_micros"] == 0
    # the 4th text (i=3, at 21:00 on day 1) is the first refused one
    assert summary["what_if"]["budget_ran_out"] == "2017-10-16"
    text = render_text(comparison)
    assert "paris" in text and "never" in text and "2017-10-16" in text


def test_what_if_a_longer_reply_costs_twice_and_the_baseline_matches_the_journal():
    steps = [(f"m{i}", "paris", f"s_{i}", T0 + i * HOUR) for i in range(4)]
    base = campaign(budget=1_000_000)
    journal = journal_of(steps, [base])
    comparison = what_if(journal, [base], [campaign(budget=1_000_000, reply="x" * 200)])
    summary = to_json(comparison)["summary"]["paris"]
    assert summary["baseline"]["spent_micros"] == 400_000
    assert summary["what_if"]["spent_micros"] == 800_000
    recorded = to_json(audit(journal, [base]))["campaigns"]["paris"]["totals"]
    assert recorded["spent_micros"] == summary["baseline"]["spent_micros"]


def test_what_if_ticks_the_campaigns_clock_so_a_spikes_deferred_replies_are_released():
    # 80 first texts in 2 minutes: a surge; the campaign answers some at once and defers
    # the others, which its ticks release once the surge ends (live: the leader's ticker).
    # The journal below holds no tick (this test's shells do not tick): it stops at 15.
    minute = 60_000
    steps = [(f"m{i}", "paris", f"s_{i}", T0 + HOUR + i * 1500) for i in range(80)]
    steps += [(f"r{i}", "paris", f"s_{i}", T0 + HOUR + 3 * minute + i * 1000)
              for i in range(0, 80, 3)]  # a third of them text again a few minutes later
    base = campaign(budget=50_000_000, pacing=True)
    journal = journal_of(steps, [base])
    types = [e.TYPE for e in journal]
    assert types.count("ReplyDeferred") > 40 and types.count("ReplyApproved") < 20
    summary = to_json(what_if(journal, [base], [base]))["summary"]["paris"]
    # Decided afresh with the clock ticking: every one of the 80 answered once.
    assert summary["baseline"]["replies"] == summary["what_if"]["replies"] == 80
    assert summary["what_if"]["spent_micros"] == 80 * 100_000


# --- the CLI ------------------------------------------------------------------------------


TOML = """
[[campaign]]
id = "paris"
number = "+33644630001"
reply_text = "Non, c'est non. Laissez-la tranquille."
language = "fr"
budget_eur = "{budget}"
price_per_segment_eur = "0.10"
start = 2017-10-16
end = 2017-12-31
pacing = false
policy = {{ reply_delay_minutes = "0" }}
"""


@pytest.fixture
def files(tmp_path):
    config = tmp_path / "campaigns.toml"
    config.write_text(TOML.format(budget="0.35"))
    other = tmp_path / "other.toml"
    other.write_text(TOML.format(budget="0.10"))
    campaigns = load_campaigns(config)
    journal = journal_of(STORY, campaigns, redeliver={"m1"})
    path = tmp_path / "journal.jsonl"

    def write(events, transform=lambda d: d):
        path.write_bytes(b"".join(orjson.dumps(transform(codec.to_dict(e))) + b"\n"
                                  for e in events))
        return str(path)

    return {"config": str(config), "other": str(other), "journal": journal, "write": write}


def test_cli_audit_of_a_clean_file_exits_0(files, capsys):
    path = files["write"](files["journal"])
    assert cli.main(["audit", "--config", files["config"], "--file", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("audit OK")
    assert cli.main(["audit", "--config", files["config"], "--file", path, "--json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["counters"]["texts"] == 7


def test_cli_audit_of_a_tampered_file_exits_1_and_shows_the_first_mismatch(files, capsys):
    journal = list(files["journal"])
    i = index_of(journal, ReplyApproved, "m2")
    journal[i] = dataclasses.replace(journal[i], balance_after_micros=1)
    path = files["write"](journal)
    lines = open(path, "rb").read().splitlines(keepends=True)
    lines[1:1] = [b"\n", b"  \n"]  # blank lines are skipped but still counted as lines
    open(path, "wb").write(b"".join(lines))
    assert cli.main(["audit", "--config", files["config"], "--file", path]) == 1
    err = capsys.readouterr().err
    # One line, naming the field that differs (not two whole JSON objects).
    assert err.strip().splitlines()[-1] == (
        f"antirelou: audit: 1 mismatch(es); the first: decision of message m2 (line {i + 3}): "
        "balance_after_micros: expected 150000, recorded 1")


def test_cli_audit_of_a_suppression_with_no_reason_reports_it_and_does_not_crash(files, capsys,
                                                                                tmp_path):
    # A forward flipped to "suppress" (its reason left None), and a denial whose reason is a
    # number: the report crashed on both (len(None), a JSON key that is not a string).
    journal = list(files["journal"])
    i = index_of(journal, SenderScreened, "m1")
    journal[i] = dataclasses.replace(journal[i], verdict="suppress")
    j = next(k for k, e in enumerate(journal) if type(e) is ReplyDenied)
    journal[j] = dataclasses.replace(journal[j], reason=7)
    path = files["write"](journal)
    html = tmp_path / "report.html"
    assert cli.main(["audit", "--config", files["config"], "--file", path]) == 1
    out, err = capsys.readouterr()
    header = next(line for line in out.splitlines() if line.lstrip().startswith("day"))
    assert "(None)" in header.split() and "(7)" in header.split()
    assert "screening of message m1" in err
    assert cli.main(["audit", "--config", files["config"], "--file", path, "--json",
                     "--html", str(html)]) == 1
    data = orjson.loads(capsys.readouterr().out)
    totals = data["campaigns"]["paris"]["totals"]["suppressed"]
    assert totals["(None)"] == 1 and totals["(7)"] == 1
    assert "(None)" in html.read_text()


def test_cli_audit_of_a_bad_line_exits_2_and_names_the_line(files, capsys):
    path = files["write"](files["journal"])
    lines = open(path, "rb").read().splitlines(keepends=True)
    lines[2] = b'{"type": "TextReceived", "v": 1\n'
    open(path, "wb").write(b"".join(lines))
    assert cli.main(["audit", "--config", files["config"], "--file", path]) == 2
    assert "journal.jsonl:3: not JSON" in capsys.readouterr().err
    lines[2] = b'{"type": "Nope", "v": 1}\n'
    open(path, "wb").write(b"".join(lines))
    assert cli.main(["audit", "--config", files["config"], "--file", path]) == 2
    assert ":3: unknown message type" in capsys.readouterr().err
    lines[2] = (b'{"type":"TextReceived","v":1,"message_id":"m","campaign_id":"paris",'
                b'"sender":"s","body":"","occurred_at":"yesterday"}\n')
    open(path, "wb").write(b"".join(lines))
    assert cli.main(["audit", "--config", files["config"], "--file", path]) == 2
    assert "{'line': 3}" in capsys.readouterr().err
    missing = path + ".missing"
    assert cli.main(["audit", "--config", files["config"], "--file", missing]) == 2
    assert "cannot read the journal" in capsys.readouterr().err


def test_cli_audit_what_if_prints_both_sides(files, capsys):
    path = files["write"](files["journal"])
    argv = ["audit", "--config", files["config"], "--file", path, "--what-if", files["other"]]
    assert cli.main([*argv, "--json"]) == 0
    summary = orjson.loads(capsys.readouterr().out)["what_if"]["summary"]["paris"]
    assert (summary["baseline"]["replies"], summary["what_if"]["replies"]) == (3, 1)
    assert cli.main(argv) == 0
    assert "what-if" in capsys.readouterr().out


def test_cli_audit_upcasts_version_1_events(files, capsys):
    # Before live policies, verdicts and decisions had no policy_version (schema v1).
    def as_v1(d):
        if d["type"] in ("SenderScreened", "ReplyApproved", "ReplyDenied"):
            d = {k: v for k, v in d.items() if k != "policy_version"}
            d["v"] = 1
        return d

    path = files["write"](files["journal"], as_v1)
    assert b'"v":1' in open(path, "rb").read()
    assert cli.main(["audit", "--config", files["config"], "--file", path]) == 0
    capsys.readouterr()


# --- property: any journal the core writes audits clean -----------------------------------


@st.composite
def scenarios(draw):
    n_campaigns = draw(st.integers(1, 3))
    campaigns = [
        campaign(
            cid=f"c{k}",
            budget=draw(st.integers(0, 5)) * 100_000 + draw(st.sampled_from([0, 50_000])),
            cooldown=draw(st.sampled_from([None, HOUR, DAY])),
            starts_at=T0 + draw(st.sampled_from([0, 0, 6 * HOUR])),
            ends_at=T0 + draw(st.sampled_from([DAY // 2, DAY, 30 * DAY])),
        )
        for k in range(n_campaigns)
    ]
    ids = [c.id for c in campaigns] + ["ghost"]
    steps: list = []
    texts: list = []
    at = T0
    for n in range(draw(st.integers(0, 40))):
        at += draw(st.integers(0, 16 * HOUR))
        kind = draw(st.sampled_from(["text"] * 6 + ["again", "policy", "credit"]))
        cid = draw(st.sampled_from(ids))
        if kind == "again" and texts:
            steps.append(draw(st.sampled_from(texts)))  # a redelivered webhook
        elif kind == "policy" and cid != "ghost":
            steps.append(ChangePolicy(command_id=f"op{n}", campaign_id=cid, changes={"cooldown_ms": draw(
                st.sampled_from([None, HOUR, 2 * DAY]))}, operator="op", occurred_at=at))
        elif kind == "credit" and cid != "ghost":
            steps.append(CreditBudget(command_id=f"op{n}", campaign_id=cid,
                                      amount_micros=draw(st.integers(0, 300_000)), source="gift",
                                      operator="op", occurred_at=at))
        else:
            text = (f"m{n}", cid, f"s{draw(st.integers(0, 5))}", at)
            texts.append(text)
            steps.append(text)
    mids = [t[0] for t in texts]
    redeliver = set(draw(st.lists(st.sampled_from(mids), max_size=3))) if mids else set()
    fail = set(draw(st.lists(st.sampled_from(mids), max_size=3))) if mids else set()
    priced = {m: draw(st.integers(0, 200_000))
              for m in (draw(st.lists(st.sampled_from(mids), max_size=3)) if mids else [])}
    return campaigns, steps, {
        "partitions": draw(st.integers(1, 4)), "batch": draw(st.integers(1, 5)),
        "redeliver": redeliver, "fail": fail, "priced": priced, "refund": draw(st.booleans()),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_any_journal_written_by_the_core_audits_clean_and_replays_identically(scenario):
    campaigns, steps, kw = scenario
    journal = journal_of(steps, campaigns, **kw)
    result = audit(journal, campaigns)
    assert result.ok, [m.to_json() for m in result.mismatches[:3]]
    assert result.counters.texts == sum(1 for s in steps if isinstance(s, tuple))
    assert to_json(result) == to_json(audit(journal, campaigns))
    one_partition = journal_of(steps, campaigns, **{**kw, "partitions": 1})
    assert to_json(audit(one_partition, campaigns))["campaigns"] == to_json(result)["campaigns"]
    render_text(result)


def test_refunds_and_reported_prices_are_replayed_and_checked_against_their_facts():
    c = campaign(budget=1_000_000)
    texts = [(f"m{i}", "paris", f"s_{i}", T0 + i * HOUR) for i in range(4)]
    journal = journal_of(texts, [c], fail={"m1"}, priced={"m2": 70_000}, refund=True)
    result = audit(journal, [c])
    assert result.ok, result.mismatches
    (refund,) = [e for e in journal if isinstance(e, ReplyRefunded)]
    (priced,) = [e for e in journal if isinstance(e, ReplyCostReconciled)]
    assert (refund.message_id, refund.refund_micros) == ("m1", 100_000)
    assert (priced.message_id, priced.actual_micros) == ("m2", 70_000)
    day = result.report.campaigns["paris"].days[0 + T0 // DAY]
    assert day.spent_micros == 4 * 100_000 - 100_000 - 30_000

    # A refund with no failure behind it is caught, and so is a price nobody reported.
    no_failure = [e for e in journal if not isinstance(e, ReplyFailed)]
    kinds = {m.kind for m in audit(no_failure, [c]).mismatches}
    assert "refund_without_failure" in kinds
    no_report = [e for e in journal if not isinstance(e, DeliveryReported)]
    assert {m.kind for m in audit(no_report, [c]).mismatches} == {"price_without_report"}
    # A refund of the wrong amount is a decision mismatch.
    bent = [dataclasses.replace(e, refund_micros=1) if isinstance(e, ReplyRefunded) else e
            for e in journal]
    assert {m.kind for m in audit(bent, [c]).mismatches} == {"decision"}


def test_hole_in_sms_outbound_an_approved_reply_never_attempted_is_flagged():
    # Issue 13 item 7: a SendReply dropped from sms-outbound left a paid reply with no
    # attempt and nothing said so. m2 was approved on day 1 and then nothing: flagged.
    journal = story_journal()
    assert audit(journal, [campaign()]).counters.unattempted == 0
    holed = [e for e in journal if not (type(e) is ReplySent and e.message_id == "m2")]
    result = audit(holed, [campaign()])
    assert result.counters.unattempted == 1
    assert "1 approved (paid) replies were never attempted" in render_text(result)
    assert to_json(result)["counters"]["unattempted"] == 1
