"""The lost-tail account (streams/audit/losses.py): what a journal that lost records misses;
and the worker's check for a partition whose log ends before what it had read
(infra/faust/lost_tail.py)."""

from __future__ import annotations

from infra.faust.lost_tail import TailGuard
from schemas.events import (
    DeliveryReported,
    RecordsLost,
    ReplyApproved,
    ReplyAttempted,
    ReplySent,
    SenderScreened,
    TextReceived,
)
from streams.audit.losses import account, render_text


def text(mid):
    return TextReceived(message_id=mid, campaign_id="paris", sender="s-" + mid, body="hi", occurred_at=1,
                        number_kind="mobile", country="FR", prefix="33-6")


def approved(mid, seq):
    return ReplyApproved(message_id=mid, campaign_id="paris", sender="s-" + mid, segments=1, encoding="GSM-7",
                         cost_micros=80_000, balance_after_micros=1_000_000, seq=seq, occurred_at=1,
                         policy_version=1, prefix="33-6", send_at=1, deferred_at=None)


def sent(mid):
    return ReplySent(message_id=mid, campaign_id="paris", sender="s-" + mid, provider_message_id="p-" + mid,
                     price_micros=None, dry_run=False, occurred_at=2)


def reported(mid, status="delivered"):
    return DeliveryReported(message_id=mid, campaign_id="paris", sender="s-" + mid,
                            provider_message_id="p-" + mid, status=status, status_reason=None,
                            error_code=None, price_micros=None, currency=None, occurred_at=3)


def test_a_whole_journal_has_nothing_to_account_for():
    journal = [text("a"), approved("a", 1), sent("a"), reported("a"),
               text("b"), approved("b", 2), sent("b")]
    acc = account(journal)
    assert not acc.any and acc.texts == 2 and acc.sent == 2
    assert "none found" in render_text(acc)


def test_a_lost_stretch_is_told_by_the_gaps_and_the_provider_reports():
    # Story: texts c, d, e were decided (seq 2..4) and sent, then the broker lost their
    # records; the delivery reports of c and d came after it was back. A worker found
    # the inbound partition short by 3 records and journaled it.
    journal = [text("a"), approved("a", 1), sent("a"),
               RecordsLost(topic="app.sms-received", partition=0, from_offset=10, to_offset=13,
                           found="position", occurred_at=5),
               reported("c"), reported("d", "delivery_failed"),
               ReplyAttempted(message_id="f", campaign_id="paris", sender="s-f", attempt=1, occurred_at=6),
               text("g"), approved("g", 5), sent("g"), sent("h")]
    acc = account(journal)
    assert acc.any
    assert [(r.topic, r.from_offset, r.to_offset) for r in acc.records_lost] == [
        ("app.sms-received", 10, 13)]
    assert acc.seq_gaps == {"paris": [(2, 4)]} and acc.missing_decisions == 3
    # A failed delivery is not a reply that went out.
    assert acc.reported_not_sent == [("c", "delivered")]
    assert acc.sent_without_approval == ["h"]
    assert acc.attempted_without_outcome == ["f"]
    out = render_text(acc)
    assert "offsets 10..12 (3 record(s)" in out and "seq 2..4" in out and "c (delivered)" in out
    assert acc.to_json()["missing_decisions"] == {"paris": [[2, 4]]}


def test_the_guard_speaks_only_when_the_log_ends_before_what_was_read(caplog):
    guard = TailGuard()
    assert guard.check("t", 0, expected=100, end=100, found="position", now_ms=1) is None
    assert guard.check("t", 0, expected=100, end=120, found="position", now_ms=1) is None
    fact = guard.check("t", 1, expected=100, end=60, found="committed", now_ms=7)
    assert fact == RecordsLost(topic="t", partition=1, from_offset=60, to_offset=100, found="committed",
                               occurred_at=7)
    assert guard.records_lost == 40 and guard.health()["incidents"][0]["from_offset"] == 60
    assert "RECORDS LOST" in caplog.text and "40 record(s)" in caplog.text


def test_the_audit_of_a_journal_that_lost_a_stretch_fails_and_says_what_is_missing(
        tmp_path, capsys):
    import orjson

    from infra.config import load_campaigns
    from schemas import codec
    from streams import cli
    from tests.audit.test_audit import STORY, TOML
    from tests.factories import journal_of

    config = tmp_path / "campaigns.toml"
    config.write_text(TOML.format(budget="0.35"))
    journal = journal_of(STORY, load_campaigns(config))
    # The broker lost the whole story of the second approved reply; its delivery report
    # came in after the broker was back.
    lost = next(e for e in journal if isinstance(e, ReplyApproved) and e.seq == 2)
    kept = [e for e in journal if getattr(e, "message_id", None) != lost.message_id]
    kept.append(reported(lost.message_id))
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"".join(orjson.dumps(codec.to_dict(e)) + b"\n" for e in kept))
    assert cli.main(["audit", "--config", str(config), "--file", str(path)]) == 1
    out = capsys.readouterr().out
    assert "Lost tail" in out and f"campaign {lost.campaign_id}: 1 decision(s) missing, seq 2" in out
    assert f"{lost.message_id} (delivered)" in out
    assert cli.main(["audit", "--config", str(config), "--file", str(path), "--json"]) == 1
    data = orjson.loads(capsys.readouterr().out)
    assert data["lost_tail"]["missing_decisions"] == {lost.campaign_id: [[2, 2]]}


def test_a_verdict_that_counts_texts_the_journal_lost_is_pointed_out():
    # The sender's first text (a) lost from the journal, then written again after his
    # second (b) was screened: b's verdict counts two texts where the journal has one.
    def screened(mid, verdict, reason, n):
        return SenderScreened(message_id=mid, campaign_id="paris", sender="s-x", verdict=verdict,
                              reason=reason, texts_from_sender=n, occurred_at=1, policy_version=1)

    journal = [TextReceived(message_id="b", campaign_id="paris", sender="s-x", body="hi", occurred_at=1,
                            number_kind="mobile", country="FR", prefix="33-6"),
               screened("b", "suppress", "already_answered", 2),
               TextReceived(message_id="a", campaign_id="paris", sender="s-x", body="hi", occurred_at=1,
                            number_kind="mobile", country="FR", prefix="33-6"),
               screened("a", "forward", None, 1)]
    acc = account(journal)
    assert acc.screened_ahead == ["b"] and acc.any
    assert "count more texts of their sender" in render_text(acc)
