"""A web-only process (``antirelou worker --role web``) beside a full worker, one deployment
(same app id): the web-only process takes the webhooks and stores the texts; the full worker
screens, decides and sends them, and keeps every partition of every stage topic (the
web-only process never joins the consumer group).
"""

from __future__ import annotations

import asyncio
import re

import pytest
import requests

from tests.e2e.conftest import (
    ACCESS_KEY,
    NUMBERS,
    REPLY_PARIS,
    SIGNING_KEY,
    new_sender,
    of,
    sign,
)

pytestmark = pytest.mark.services

STAGE_TOPICS = ("sms-received", "reply-requests", "sms-outbound", "control")


def last_assignment(worker) -> dict[str, str]:
    """Topic -> partitions of the worker's last rebalance, from the table Faust logs after
    "Successfully synced group ... with generation N"."""
    lines = worker.log_path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if "Successfully synced group" in line]
    table: dict[str, str] = {}
    for row in lines[starts[-1] + 1:starts[-1] + 60] if starts else ():
        if row.startswith("| "):
            cells = [c.strip() for c in row.split("|")[1:3]]
            if len(cells) == 2 and cells[0]:
                table[cells[0]] = cells[1]
        elif not row.startswith("+") and "Setting newly" not in row:
            break
    return table


def group_members(kafka: str, group: str) -> list:
    """The members of the consumer group, as the broker describes them."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def describe() -> list:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            (described,) = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        (entry,) = described.groups  # (error, group, state, protocol type, protocol, members)
        return list(entry[5])

    return asyncio.run(describe())


def test_a_web_only_process_stores_texts_the_full_worker_answers(
        tmp_path, kafka, ray_address, messagebird, workers):
    env = {"MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint}
    (tmp_path / "full").mkdir()
    (tmp_path / "web").mkdir()
    full = workers.start(tmp_path / "full", kafka, ray_address, env)
    # Alone in its group, it holds every partition (its health answers before that).
    full.wait_for(lambda ev: last_assignment(full).get(f"{full.app_id}.sms-received"))
    syncs_before = full.log_path.read_text().count("Successfully synced group")
    # The web-only process of the same deployment; its probe (a text to an unknown number,
    # 404 once its TextRejected is stored) goes through its own webhook.
    web = workers.start(tmp_path / "web", kafka, ray_address, env, app_id=full.app_id,
                        args=("--role", "web"))
    health = web.admin_get("/health").json()
    assert health["role"] == "web" and health["campaigns"] == ["lyon", "paris", "tiny"]
    assert health["signed_webhooks"] is True

    # A signed text posted to the web-only process is answered by the full worker.
    sender = new_sender()
    body = "t'es charmante, tu me donnes ton 06 ?"
    answer = web.post(sender=sender, body=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "accepted", "message_id": answer.message_id,
                             "campaign": "paris"}
    mid = answer.message_id
    events = full.wait_for(lambda ev: of(ev, mid, "ReplySent"))
    assert [e.TYPE for e in of(events, mid)] == [
        "TextReceived", "SenderScreened", "ReplyApproved", "ReplyAttempted", "ReplySent"]
    (text,) = of(events, mid, "TextReceived")
    assert text.body == "[not kept]" and text.campaign_id == "paris"
    # The body itself is kept apart, for its retention (streams.rules.retention).
    from infra.journal import read_bodies

    assert asyncio.run(read_bodies(full.kafka, f"{full.app_id}.bodies"))[mid] == body
    sms = [m for m in messagebird.messages if sender in m["recipients"]]
    assert [(m["body"], m["reference"]) for m in sms] == [(REPLY_PARIS, mid)]
    # The number is in no event of its story: pseudonym only.
    assert all(sender not in repr(e) for e in of(events, mid))
    # MessageBird's delivery report for that reply, signed, to the web-only process too.
    (sent,) = of(events, mid, "ReplySent")
    url = (f"{web.url}/webhooks/messagebird/status?campaign=paris&id={sent.provider_message_id}"
           f"&reference={mid}&recipient={sender}&status=delivered")
    report = requests.get(url, headers={"MessageBird-Signature-JWT": sign(url, b"", SIGNING_KEY)},
                          timeout=10)
    assert report.status_code == 200, report.text
    (reported,) = of(full.wait_for(lambda ev: of(ev, mid, "DeliveryReported")), mid,
                     "DeliveryReported")
    assert reported.status == "delivered" and reported.sender == text.sender

    # The web-only process never joined the consumer group: no rebalance on the full worker
    # since the web one started, which still holds both partitions of every stage topic;
    # the broker knows one member; the web-only log has no group at all.
    assert full.log_path.read_text().count("Successfully synced group") == syncs_before
    held = last_assignment(full)
    for topic in STAGE_TOPICS:
        assert held.get(f"{full.app_id}.{topic}") == "{0-1}", held
    assert len(group_members(kafka, full.app_id)) == 1
    web_log = web.log_path.read_text()
    assert not re.search(r"synced group|Joined group|partitions assigned", web_log, re.I)
    assert sender not in web_log and sender not in full.log_path.read_text()
    assert web.admin_get("/campaigns").status_code == 404  # the campaigns are the workers'


def test_a_web_only_process_refuses_what_it_cannot_check(tmp_path, kafka, ray_address,
                                                         messagebird, workers):
    # Alone (no full worker): bad input is refused as by any worker, and a text to an unknown
    # number is journaled as rejected.
    web = workers.start(tmp_path, kafka, ray_address, {}, args=("--role", "web"))
    sender = new_sender()
    forged = web.post(sender=sender, sign_with="not-the-signing-key-not-the-signing-key")
    assert forged.status_code == 401, forged.text
    unsigned = web.post(sender=sender, sign_with=None)
    assert unsigned.status_code == 401, unsigned.text
    unknown = web.post(sender=sender, recipient="33600000001")
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_recipient"
    events = web.wait_for(lambda ev: of(ev, unknown.message_id, "TextRejected"))
    assert not of(events, forged.message_id) and not of(events, unsigned.message_id)
    stored = web.post(sender=sender, campaign="lyon")
    assert stored.status_code == 200, stored.text
    assert stored.json()["campaign"] == "lyon" and NUMBERS["lyon"]
    assert sender not in web.log_path.read_text()
