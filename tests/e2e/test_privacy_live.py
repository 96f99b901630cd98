"""Privacy by default on a running worker (issue 31, item 2): a number in a body is masked
whatever its separators, and a body lives no longer than the campaign file's retention.

Black box: texts posted to the real ``antirelou worker``; what the journal topic, the
bodies topic, ``journal``, ``journal --human``, ``export`` and the worker's log hold.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import pytest

from infra.journal import iter_records
from tests.e2e.conftest import new_sender, of

pytestmark = pytest.mark.services

ZWSP = "\u200b"
DAY_MS = 86_400_000


def raw_topic(worker, role: str) -> bytes:
    async def read() -> bytes:
        return b"\n".join([v or b"" async for _, _, _, v in iter_records(
            worker.kafka, f"{worker.app_id}.{role}")])

    return asyncio.run(read())


def export(worker, tmp_path, config=None) -> subprocess.CompletedProcess:
    out = tmp_path / f"export-{time.time_ns()}.jsonl"
    done = subprocess.run([sys.executable, "-m", "streams.cli", "export", "--kafka", worker.kafka,
                           "--app-id", worker.app_id, "--out", str(out),
                           "--config", str(config or worker.config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # the files, as what the command gave: the records as stored, the bodies still kept
    done.stdout = out.read_text() + (tmp_path / f"{out.name}.bodies").read_text()
    done.out = out
    return done


def test_numbers_written_with_any_separator_are_in_no_journal_export_or_log(worker, tmp_path):
    # given one number written as "06/12/34/56/78", "06_12_34_56_78" and "06 12 34 56 78"
    # with a zero-width space between the groups (all three were journaled in clear)
    given = new_sender()
    groups = ["0" + given[2]] + [given[i:i + 2] for i in range(3, 11, 2)]
    written = ["/".join(groups), "_".join(groups), (" " + ZWSP).join(groups)]
    posted = [worker.post(sender=new_sender(), body=f"rappelle moi au {w} bisous")
              for w in written]
    assert all(p.status_code == 200 for p in posted), [p.text for p in posted]
    events = worker.wait_for(lambda ev: all(of(ev, p.message_id, "SenderScreened")
                                            for p in posted))
    digits = "".join(groups)  # 0612345678, the number as read

    def clean(text: str, where: str) -> None:
        squashed = re.sub(r"[\s/_\u200b.()+-]|\\u200b", "", text)
        assert digits not in squashed and digits[1:] not in squashed, \
            f"{where} holds the number given in a body"

    with pytest.raises(AssertionError):  # the scan sees each written form
        for w in written:
            clean(f"x {w} y", "guard")
    # then it is in no topic the texts went through, and the bodies are kept masked apart
    for role in ("journal", "sms-received", "bodies"):
        clean(raw_topic(worker, role).decode(), f"topic {role}")
    assert raw_topic(worker, "bodies").count(b"rappelle moi au [numero] bisous") >= 3
    for p in posted:  # the journal's text carries what the decisions read, not the body
        (text,) = of(events, p.message_id, "TextReceived")
        assert text.body == "[not kept]"
    # nor in what the commands print, nor in the worker's log
    for args in (("journal",), ("journal", "--human"), ("audit",)):
        out = worker.cli(*args)
        assert out.returncode == 0, out.stderr[-2000:]
        clean(out.stdout + out.stderr, "antirelou " + " ".join(args))
    human = worker.cli("journal", "--human").stdout
    assert human.count("body rappelle moi au [numero] bisous") >= 3  # shown while kept
    done = export(worker, tmp_path)
    clean(done.stdout + done.stderr, "antirelou export")
    clean(worker.log_path.read_text(), "the worker log")


def test_journal_and_export_show_a_body_only_within_the_retention(worker, tmp_path):
    # given a text received now, under the deployment's 30 days
    r = worker.post(sender=new_sender(), body="t'es charmante toi")
    worker.wait_for(lambda ev: of(ev, r.message_id, "SenderScreened"))
    assert b"charmante" not in raw_topic(worker, "journal")  # never in the journal itself
    assert b"t'es charmante toi" in raw_topic(worker, "bodies")
    assert "body t'es charmante toi" in worker.cli("journal", "--human").stdout
    assert "t'es charmante toi" in export(worker, tmp_path).stdout
    # when the campaign file says bodies are not kept (0 days), nothing shows them, and an
    # export still audits clean (it carries what the decisions read)
    none = tmp_path / "none.toml"
    none.write_text("body_retention_days = 0\n" + worker.config.read_text())
    for args in (("journal",), ("journal", "--human")):
        out = subprocess.run([sys.executable, "-m", "streams.cli", *args, "--kafka",
                              worker.kafka, "--app-id", worker.app_id, "--config", str(none)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "charmante" not in out.stdout, out.stderr
        assert "[not kept]" in out.stdout
    done = export(worker, tmp_path, none)
    assert "charmante" not in done.stdout
    audit = subprocess.run([sys.executable, "-m", "streams.cli", "audit", "--file", str(done.out),
                            "--config", str(worker.config)], capture_output=True, text=True,
                           timeout=120)
    assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-2000:]


def test_the_bodies_topic_is_deleted_past_the_files_retention(worker):
    # The broker deletes the bodies: the topic's retention is the campaign file's (30 days
    # by default), set again at every start.
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def describe() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=worker.kafka)
        await admin.start()
        try:
            (response,) = await admin.describe_configs([ConfigResource(
                ConfigResourceType.TOPIC, f"{worker.app_id}.bodies")])
        finally:
            await admin.close()
        return {entry[0]: entry[1] for entry in response.resources[0][4]}

    config = asyncio.run(describe())
    assert config["retention.ms"] == str(30 * DAY_MS)
    assert int(config["segment.ms"]) <= DAY_MS and config["cleanup.policy"] == "delete"
