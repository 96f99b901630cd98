"""A text in, one reply out: webhook -> Kafka -> Faust -> Ray -> MessageBird, for real.

The worker is the real ``antirelou worker`` process; the broker, the Ray session and the
MessageBird-compatible server are real too (see conftest.py).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from infra.journal import iter_records
from streams.rules.screening import SenderState
from tests.e2e.conftest import NUMBERS, REPLY_LYON, REPLY_PARIS, SECRET, new_sender, of

pytestmark = pytest.mark.services


def sent_to(messagebird, number):
    return [m for m in messagebird.messages if number in m["recipients"]]


def test_first_text_gets_exactly_one_reply(worker, messagebird):
    sender = new_sender()
    response = worker.post(sender=sender)
    assert response.status_code == 200, response.text
    mid = response.message_id
    events = worker.wait_for(lambda ev: of(ev, mid, "ReplySent"))
    assert [e.TYPE for e in of(events, mid)] == [
        "TextReceived", "SenderScreened", "ReplyApproved", "ReplyAttempted", "ReplySent"]
    (message,) = sent_to(messagebird, sender)
    assert (message["body"], message["reference"], message["originator"]) == (
        REPLY_PARIS, mid, "AntiRelou")
    sent = of(events, mid, "ReplySent")[0]
    assert sent.provider_message_id == message["id"] and not sent.dry_run
    assert sent.price_micros == 80_000  # one GSM-7 segment at EUR 0.08, as MessageBird billed


def test_second_text_from_same_sender_gets_no_reply(worker, messagebird):
    sender = new_sender()
    first = worker.post(sender=sender)
    worker.wait_for(lambda ev: of(ev, first.message_id, "ReplySent"))
    second = worker.post(sender=sender, body="pourquoi tu reponds pas")
    assert second.status_code == 200
    events = worker.wait_for(lambda ev: of(ev, second.message_id, "SenderScreened"))
    (screened,) = of(events, second.message_id, "SenderScreened")
    assert (screened.verdict, screened.reason, screened.texts_from_sender) == (
        "suppress", "already_answered", 2)
    assert of(events, second.message_id, "ReplyApproved") == []
    assert len(sent_to(messagebird, sender)) == 1


def test_a_redelivered_webhook_is_stored_once_and_gets_one_reply(worker, messagebird):
    # MessageBird delivers the same text again (our 200 lost on its way back): 200
    # "duplicate", nothing stored again (issue 30, streams/intake/once.py). A text written
    # twice onto sms-received (by `up` after a broker crash, or by another worker's webhook)
    # still gets its verdict again and one reply: e2e/test_process_faults.py.
    sender = new_sender()
    first = worker.post(sender=sender)
    again = worker.post(sender=sender, message_id=first.message_id)
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    events = worker.wait_for(lambda ev: of(ev, first.message_id, "ReplySent"))
    assert len(of(events, first.message_id, "TextReceived")) == 1
    (verdict,) = of(events, first.message_id, "SenderScreened")
    assert verdict.verdict == "forward"
    time.sleep(1)
    assert len(sent_to(messagebird, sender)) == 1
    assert len(of(worker.journal(), first.message_id, "ReplySent")) == 1


def test_second_campaign_answers_with_its_own_text_and_budget(worker, messagebird):
    before = worker.status()["lyon"]
    sender = new_sender()
    response = worker.post(sender=sender, campaign="lyon")
    assert response.json()["campaign"] == "lyon"
    events = worker.wait_for(lambda ev: of(ev, response.message_id, "ReplySent"))
    (approved,) = of(events, response.message_id, "ReplyApproved")
    assert approved.campaign_id == "lyon"
    (message,) = sent_to(messagebird, sender)
    assert message["body"] == REPLY_LYON
    after = worker.status()["lyon"]
    assert after["balance_micros"] == before["balance_micros"] - approved.cost_micros
    assert worker.status()["paris"]["reply_segments"] == 1


def test_spent_budget_answers_no_more_and_says_why(worker, messagebird):
    # "tiny" holds EUR 0.08: exactly one one-segment reply.
    first, second = new_sender(), new_sender()
    r1 = worker.post(sender=first, campaign="tiny")
    worker.wait_for(lambda ev: of(ev, r1.message_id, "ReplySent"))
    r2 = worker.post(sender=second, campaign="tiny")
    events = worker.wait_for(lambda ev: of(ev, r2.message_id, "ReplyDenied"))
    (denied,) = of(events, r2.message_id, "ReplyDenied")
    assert (denied.reason, denied.balance_after_micros) == ("budget_exhausted", 0)
    assert sent_to(messagebird, second) == []
    assert worker.status()["tiny"]["balance_micros"] == 0


def test_forged_signature_is_401_and_leaves_no_event(worker):
    sender = new_sender()
    forged = worker.post(sender=sender, sign_with="not-the-key-not-the-key-not-the-key-0")
    unsigned = worker.post(sender=sender, sign_with=None)
    assert (forged.status_code, unsigned.status_code) == (401, 401)
    assert forged.json()["error"] == "invalid_signature"
    assert unsigned.json()["error"] == "missing_signature"
    # A genuine text after them is fully processed; the refused ones left nothing.
    genuine = worker.post(sender=sender)
    events = worker.wait_for(lambda ev: of(ev, genuine.message_id, "SenderScreened"))
    assert of(events, forged.message_id) == [] and of(events, unsigned.message_id) == []
    assert of(events, genuine.message_id, "SenderScreened")[0].texts_from_sender == 1


def test_unknown_recipient_is_404_and_journaled(worker):
    response = worker.post(sender=new_sender(), recipient="33699999999")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown_recipient", "field": "recipient",
                               "message": "no campaign uses this recipient number"}
    events = worker.wait_for(lambda ev: of(ev, response.message_id, "TextRejected"))
    assert of(events, response.message_id)[0].reason == "unknown_recipient"


def test_malformed_input_is_a_clear_json_4xx(worker):
    import requests

    url = worker.url + "/webhooks/messagebird/sms"
    r = requests.post(url, data=b"id=1&originator=nope&recipient=33644630001",
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    # Signed requests are checked first; an unsigned malformed one is refused as unsigned.
    assert r.status_code == 401
    r = worker.post(sender="not-a-number")
    assert r.status_code == 422 and r.json()["field"] == "originator"


def all_topics_raw(worker) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record (key, value) of every topic this deployment writes: the journal, the
    work topics, control, policies, snapshots, and Faust's table changelogs."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    from infra.journal import iter_records

    async def read() -> dict[str, list[tuple[bytes, bytes]]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=worker.kafka)
        await consumer.start()
        try:
            names = sorted(t for t in await consumer.topics() if t.startswith(worker.app_id))
        finally:
            await consumer.stop()
        return {name: [(k or b"", v or b"") async for _, _, k, v in
                       iter_records(worker.kafka, name)] for name in names}

    return asyncio.run(read())


def test_no_topic_log_or_cli_output_holds_a_phone_number_in_clear(worker, tmp_path):
    from infra.privacy import Privacy
    from schemas import codec

    sender = new_sender()
    national = "0" + sender[2:]  # the same number as the French write it
    r = worker.post(sender=sender)
    worker.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
    # A refused text (unknown recipient) and an operator command leave their traces too.
    worker.post(sender=new_sender(), recipient="33699999999")
    assert worker.cli("budget", "credit", "paris", "0.01", "--source", "privacy-test",
                      operator="alice").returncode == 0

    def clean(blob: bytes, where: str) -> None:
        for number in (sender, national, *NUMBERS.values()):
            assert number.encode() not in blob, f"{where} holds {number[:4]}..."
        assert not re.search(rb"(?<![0-9A-Za-z_-])\+?33\d{9}(?![0-9])", blob), where

    with pytest.raises(AssertionError):  # the scan does see a number
        clean(b"x " + national.encode() + b" y", "guard")
    topics = all_topics_raw(worker)
    journal = f"{worker.app_id}.journal"
    assert {journal, f"{worker.app_id}.sms-received", f"{worker.app_id}.reply-requests",
            f"{worker.app_id}.sms-outbound", f"{worker.app_id}.control"} <= set(topics)
    assert any(t.endswith("-changelog") for t in topics), sorted(topics)  # the tables
    for name, records in topics.items():
        clean(b"\n".join(k + b" " + v for k, v in records), name)
    # The work topics carry the number only sealed (AES-GCM), and it opens to the sender.
    privacy = Privacy(SECRET.encode())
    sealed = [codec.decode(v) for _, v in topics[f"{worker.app_id}.sms-received"]
              if codec.decode(v).message_id == r.message_id]
    assert sealed and privacy.open(sealed[0].reply_to, campaign_id=sealed[0].campaign_id,
                                   sender=sealed[0].sender) == sender
    # The worker's log and what the CLI prints.
    clean(worker.log_path.read_text().encode(), "the worker log")
    export = tmp_path / "journal.jsonl"
    for args in (("journal",), ("audit",), ("audit", "--json"), ("policy", "show"),
                 ("policy", "show", "--json")):
        out = worker.cli(*args)
        assert out.returncode == 0, out.stderr[-2000:]
        clean((out.stdout + out.stderr).encode(), "antirelou " + " ".join(args))
    out = subprocess.run([sys.executable, "-m", "streams.cli", "export", "--kafka", worker.kafka,
                          "--app-id", worker.app_id, "--out", str(export)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and export.stat().st_size > 0, out.stderr
    clean(export.read_bytes() + (out.stdout + out.stderr).encode(), "antirelou export")


def test_a_senders_state_is_stored_in_his_texts_partition(worker):
    # Texts are screened in batches that may mix partitions; each sender's state must still
    # go to the changelog partition of his texts, where a restarted worker looks for it.
    senders = [new_sender() for _ in range(40)]
    with ThreadPoolExecutor(8) as pool:  # concurrent: batches of several partitions
        posted = list(pool.map(lambda s: worker.post(sender=s), senders))
    worker.wait_for(lambda ev: all(of(ev, r.message_id, "SenderScreened") for r in posted))

    async def partitions_by_key(topic):  # the changelog's keys are JSON strings
        return {key.strip(b'"'): p async for p, _, key, _ in iter_records(worker.kafka, topic)}

    inbound = asyncio.run(partitions_by_key(f"{worker.app_id}.sms-received"))
    changelog = asyncio.run(partitions_by_key(f"{worker.app_id}-senders_by_pseudonym-changelog"))
    keys = [k for k in inbound if k in changelog]
    assert len(keys) >= len(senders)
    assert len({inbound[k] for k in keys}) > 1  # the texts did spread over partitions
    assert all(inbound[k] == changelog[k] for k in keys)


def test_a_senders_state_is_stored_as_orjson_bytes_with_his_verdicts(worker):
    sender = new_sender()
    r = worker.post(sender=sender, body="test")
    events = worker.wait_for(lambda ev: of(ev, r.message_id, "SenderScreened"))
    (screened,) = of(events, r.message_id, "SenderScreened")

    async def values():
        return [v async for _, _, k, v in iter_records(
            worker.kafka, f"{worker.app_id}-senders_by_pseudonym-changelog")
            if k.strip(b'"') == screened.sender.encode()]

    (stored,) = asyncio.run(values())
    state = SenderState.from_dict(orjson.loads(stored))
    assert state.recent == {r.message_id: (
        "paris", "test_text", 1, screened.occurred_at, screened.policy_version,
        screened.other_campaigns)}


def test_phone_number_in_a_body_appears_nowhere_after_a_flood(worker):
    # Issue 13 item 4: "rappelle moi au 06 12 34 56 78" was journaled as sent, beside the
    # sender's pseudonym, for ever. A flood of texts that all give one number, written in
    # every way the French write it: the number must be in no topic (journal, work topics,
    # table changelogs), not in the worker's log, not in what the CLI prints.
    given = new_sender()
    digits = given[2:]  # the nine digits after 33, whatever the format
    pairs = " ".join(digits[i:i + 2] for i in range(1, 9, 2))
    formats = [f"0{digits[0]} {pairs}", f"0{digits[0]}.{pairs.replace(' ', '.')}",
               f"+33 {digits[0]} {pairs}", f"0033{digits}", f"0{digits}",
               f"+33 (0){digits[0]} {pairs.replace(' ', '-')}"]
    senders = [new_sender() for _ in range(8)]
    bodies = [f"rappelle moi au {formats[i % len(formats)]} bisous" for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        posted = list(pool.map(lambda i: worker.post(sender=senders[i % 8], body=bodies[i]),
                               range(24)))
    assert all(p.status_code == 200 for p in posted)
    events = worker.wait_for(lambda ev: all(of(ev, p.message_id, "SenderScreened")
                                            for p in posted))
    assert len([e for p in posted for e in of(events, p.message_id, "ReplySent")]) <= 8

    def clean(blob: bytes, where: str) -> None:
        squashed = re.sub(rb"[ .()+-]", b"", blob)
        assert digits.encode() not in squashed, f"{where} holds the number given in a body"

    with pytest.raises(AssertionError):  # the scan does see a number in any of its formats
        clean(b"x " + formats[-1].encode() + b" y", "guard")
    topics = all_topics_raw(worker)
    assert any(t.endswith("-changelog") for t in topics)
    for name, records in topics.items():
        clean(b"\n".join(k + b" " + v for k, v in records), name)
    # The bodies, masked, are kept apart from the journal (streams.rules.retention).
    assert b"[numero] bisous" in b"".join(v for _, v in topics[f"{worker.app_id}.bodies"])
    clean(worker.log_path.read_text().encode(), "the worker log")
    for args in (("journal",), ("audit",), ("audit", "--json")):
        out = worker.cli(*args)
        assert out.returncode == 0, out.stderr[-2000:]  # the audit replays the masked bodies
        clean((out.stdout + out.stderr).encode(), "antirelou " + " ".join(args))


def _start_worker_briefly(worker, tmp_path, env_extra: dict, drop=("ANTIRELOU_SECRET",),
                          app_id: str | None = None) -> subprocess.CompletedProcess:
    """A second `antirelou worker` of this deployment; it must refuse to start."""
    import os

    from tests.e2e.conftest import SIGNING_KEY, free_port

    env = {k: v for k, v in os.environ.items() if k not in (*drop, "ANTIRELOU_INSECURE_DEV")}
    env.update({"MESSAGEBIRD_SIGNING_KEY": SIGNING_KEY, **env_extra})
    try:
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", "worker", "--kafka", worker.kafka,
             "--config", str(worker.config), "--app-id", app_id or worker.app_id,
             "--web-port", str(free_port()), "--state-dir", str(tmp_path / "state"),
             "--partitions", "2",
             "--public-url", "http://127.0.0.1:1"],
            capture_output=True, text=True, timeout=60, env=env, start_new_session=True)
    except subprocess.TimeoutExpired:  # (subprocess.run killed it)
        pytest.fail("the worker started instead of refusing")


def test_secret_beside_the_data_is_refused_outside_development(worker, tmp_path):
    # Issue 13 item 5: without ANTIRELOU_SECRET a worker generated one in .state/secret,
    # beside the data it protects (a backup of .state opened every sealed number).
    out = _start_worker_briefly(worker, tmp_path, {}, app_id="e2e-nosecret")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "ANTIRELOU_SECRET" in out.stderr and not (tmp_path / "state" / "secret").exists()
    inside = tmp_path / "state" / "my-secret"
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_text("a-secret-of-at-least-16-bytes")
    out = _start_worker_briefly(worker, tmp_path, {"ANTIRELOU_SECRET_FILE": str(inside)},
                                app_id="e2e-nosecret")
    assert out.returncode == 2 and "inside the state folder" in out.stderr, out.stderr[-2000:]


def test_secret_mismatch_between_workers_is_refused_at_start(worker, tmp_path):
    # Issue 13 item 5: a worker with another secret joined the deployment: the same number
    # got two pseudonyms and the other workers' sealed numbers did not open. The first
    # worker published its key check value; this one's differs.
    from infra.journal import iter_records
    from infra.keycheck import key_check_value, keycheck_topic

    async def published():
        return [k async for _, _, k, _ in iter_records(worker.kafka, keycheck_topic(
            worker.app_id))]

    assert asyncio.run(published()) == [key_check_value(SECRET.encode()).encode()]
    out = _start_worker_briefly(worker, tmp_path,
                                {"ANTIRELOU_SECRET": "another-secret-9c4e7a1f3b5d8e2c6a0f4b7d1e9c3a5f"})
    assert out.returncode == 2, out.stderr[-2000:]
    assert "not the deployment's" in out.stderr
    assert "another-secret" not in out.stderr + out.stdout  # the secret is never shown


def test_provider_dates_are_clamped_at_the_webhook_and_both_times_journaled(worker):
    # Issue 13 item 11: one text dated in the campaign's last day moved pacing time
    # forward; one dated before the sender's previous text made him a flooder.
    from urllib.parse import urlencode

    import requests

    from streams.intake.build import MAX_EVENT_SKEW_MS
    from tests.e2e.conftest import SIGNING_KEY, sign

    url = worker.url + "/webhooks/messagebird/sms"
    ids = {}
    for label, created in (("future", "2099-12-31T12:00:00+00:00"),
                           ("past", "2001-01-01T00:00:00+00:00")):
        ids[label] = mid = f"clamp-{label}-{time.time_ns()}"
        raw = urlencode({"id": mid, "originator": new_sender(), "recipient": NUMBERS["paris"],
                         "body": "coucou", "createdDatetime": created}).encode()
        before = int(time.time() * 1000)
        r = requests.post(url, data=raw, timeout=30, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "MessageBird-Signature-JWT": sign(url, raw, SIGNING_KEY)})
        assert r.status_code == 200, r.text
        ids[label + "_window"] = (before - MAX_EVENT_SKEW_MS - 1_000,
                                  int(time.time() * 1000) + MAX_EVENT_SKEW_MS + 1_000)
    events = worker.wait_for(lambda ev: all(of(ev, ids[k], "TextReceived")
                                            for k in ("future", "past")))
    for label, reported in (("future", 4102401600000), ("past", 978307200000)):
        (received,) = of(events, ids[label], "TextReceived")
        low, high = ids[label + "_window"]
        assert low <= received.occurred_at <= high
        (clamped,) = of(events, ids[label], "TextTimeClamped")
        assert clamped.reported_at == reported
        assert clamped.occurred_at == received.occurred_at
        assert abs(clamped.received_at - received.occurred_at) == MAX_EVENT_SKEW_MS
