"""`antirelou check` refuses what can never reply and warns of what probably will not, one
line each with the campaign's name; `up` runs the same checks before it starts anything.
`policy set` sends nothing that changes nothing, and a forced reserve says what it holds."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from streams import cli
from tests.cli.test_no_traceback import CONFIG, antirelou, free_port, one_line

GOOD = CONFIG  # a campaign that can reply


def check(capsys, tmp_path, edit):
    path = tmp_path / "c.toml"
    path.write_text(edit(GOOD))
    code = cli.main(["check", "--config", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err, path


def after_end(line: str):
    return lambda text: text.replace("end = 2099-10-31\n", f"end = 2099-10-31\n{line}\n")


@pytest.mark.parametrize("edit, said", [
    (lambda t: t.replace('"0.08"', '"800"').replace('"3700.00"', '"500.00"'),
     "campaign 'paris': the budget EUR 500.00 pays no reply of EUR 800.0000 (0 replies): raise "
     "budget_eur or lower the price"),
    (lambda t: t.replace('"3700.00"', '"0"'),
     "campaign 'paris': the budget EUR 0.00 pays no reply of EUR 0.0800 (0 replies): raise "
     "budget_eur or lower the price"),
    (after_end('policy = { reserve_eur = "5000" }'),
     "campaign 'paris': the reserve EUR 5,000.00 is not below the budget EUR 3,700.00: no reply "
     "can ever be paid"),
    (after_end('policy = { allowed_countries = "" }'),
     "campaign 'paris': allowed_countries is empty: no number is answered"),
    (after_end('provider = "twilio"'), "campaign 'paris': 'provider' must be one of"),
    (lambda t: t.replace('"fr"', '"klingon"'),
     "campaign #1 ('paris'): 'language' 'klingon' is not an ISO 639-1 language code (e.g. fr, "
     "en, de)"),
    (lambda t: t.replace('"paris"', '"paris nord"'),
     "campaign #1: 'id' 'paris nord' must be 1 to 64 letters, digits, - or _ (it names the "
     "campaign in topics, metrics and URLs)"),
    (after_end('budgt_eur = "3"'),
     "campaign #1 ('paris'): unknown key 'budgt_eur' (did you mean 'budget_eur'?)"),
    (lambda t: t.replace('"3700.00"', '"99999999999999"'),
     "campaign #1 ('paris'): 'budget_eur' is more than EUR 1,000,000,000"),
])
def test_check_refuses_a_campaign_that_can_never_reply(capsys, tmp_path, edit, said):
    code, out, err, path = check(capsys, tmp_path, edit)
    assert (code, out) == (2, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"antirelou: {path}: {said}"), err


@pytest.mark.parametrize("edit, said", [
    (lambda t: t.replace("2026-11-01", "2024-01-01").replace("2099-10-31", "2024-10-31"),
     "ended on 2024-10-31: every text is denied 'ended' (keep it only to audit its journal)"),
    (lambda t: t.replace("+33644630001", "+33144630001"),
     "its number +33144630001 is a fixed-line number: most cannot receive texts (use a mobile "
     "or an SMS-enabled virtual number)"),
    (lambda t: t.replace('"3700.00"', '"2.00"'), "the budget pays only 25 replies"),
])
def test_check_warns_of_a_campaign_that_probably_will_not_reply(capsys, tmp_path, edit, said):
    code, out, err, _ = check(capsys, tmp_path, edit)
    assert (code, err) == (0, "")
    assert out.splitlines()[0].endswith(": 1 campaign(s), 0 operator(s): OK (1 warning(s), below)")
    assert f"  WARNING paris: {said}" in out.splitlines()


def test_up_refuses_what_check_refuses_before_it_starts_anything(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(GOOD.replace('"3700.00"', '"0"'))
    r = antirelou("up", "--insecure-dev", "--config", str(path), "--web-port", str(free_port()),
                  "--state-dir", str(tmp_path / "state"))
    assert one_line(r, 2) == (f"antirelou: {path}: campaign 'paris': the budget EUR 0.00 pays "
                              "no reply of EUR 0.0800 (0 replies): raise budget_eur or lower "
                              "the price")


# --- policy set against a real journal (a broker; no worker needed: nothing is sent) ------


def _journal(kafka: str, app: str, events: list) -> None:
    from aiokafka import AIOKafkaProducer

    from infra.broker import ensure_topics
    from schemas import codec
    from streams.settings import topic_names

    names = topic_names(app)
    ensure_topics(kafka, {names["journal"]: 1, names["control"]: 1})

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka)
        await producer.start()
        try:
            for event in events:
                await producer.send(names["journal"], codec.encode(event))
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(write())


def _waiting_journal(n: int) -> list:
    """A Paris campaign with ``n`` requests waiting out their safety delay."""
    import tomllib

    from actors.campaign import CampaignState, decide_and_apply
    from infra.config import parse_campaigns
    from schemas.commands import RequestReply

    (c,) = parse_campaigns(tomllib.loads(GOOD))
    state = CampaignState.opening(c)
    events = []
    for i in range(n):
        events += decide_and_apply(state, RequestReply(
            message_id=f"m{i}", campaign_id="paris", sender=f"s_{i}", reply_to="x",
            occurred_at=c.starts_at + 86_400_000 + i * 60_000, prefix=f"33-6{i:02d}"), c)
    assert [e.TYPE for e in events] == ["ReplyDeferred"] * n
    return events


def test_policy_set_that_changes_nothing_sends_nothing(kafka, tmp_path):
    app = f"noop{uuid.uuid4().hex[:8]}"
    _journal(kafka, app, [])
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    r = antirelou("policy", "set", "paris", "reserve_eur=0", "reply_delay_minutes=30",
                  "--insecure-dev", "--config", str(path), "--kafka", kafka, "--app-id", app)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == ("paris: nothing sent: policy v1 already has reserve_eur=0, "
                        "reply_delay_minutes=30\n")


def test_a_reserve_that_stops_replies_says_how_many_waiting_requests_it_holds(kafka, tmp_path):
    app = f"rsv{uuid.uuid4().hex[:8]}"
    _journal(kafka, app, _waiting_journal(7))
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    r = antirelou("policy", "set", "paris", "reserve_eur=5000", "--insecure-dev",
                  "--config", str(path), "--kafka", kafka, "--app-id", app)
    assert "Traceback" not in r.stderr and r.returncode == 2
    assert r.stderr.splitlines() == [
        "antirelou: paris: reserve EUR 5,000.00 is not below the balance EUR 3,700.00: no reply "
        "can be paid",
        "antirelou: paris: 7 request(s) waiting in the queue are not paid while it holds, and "
        "new texts are refused; none is expired by this change: those still waiting 360 minutes "
        "after their text (surge_ttl_minutes) expire",
        "antirelou: not sent: this change stops every reply (pass --force to apply it anyway)",
    ]
    assert not re.search(r"\d{9}", r.stderr)
