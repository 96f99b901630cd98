"""Accountability on a real worker: the notary signs checkpoints of the live journal, an
export of it verifies (and does not once one byte changes), ``/public`` is open, plain and
says nothing personal (read in a real headless Chromium; its screenshot is the README's),
and a sender's story is told by ``why`` and the dashboard's form."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from infra.journal import latest_by_key
from tests.e2e.conftest import ACCESS_KEY, ADMIN, SECRET, new_sender, start_worker, stop_worker
from tests.e2e.test_dashboard import browser

pytestmark = pytest.mark.services

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def notarised(tmp_path_factory, kafka, ray_address, messagebird):
    w = start_worker(tmp_path_factory.mktemp("notary"), kafka, ray_address, {
        "ANTIRELOU_CHECKPOINT_MINUTES": "0.05",  # 3 s
        "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint})
    yield w
    stop_worker(w)


def cli(w, *args, env_extra=None):
    import os
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_a_live_journal_is_signed_exported_and_verified(notarised, tmp_path):
    import asyncio

    w = notarised
    senders = [new_sender() for _ in range(12)]
    for i, s in enumerate(senders):
        assert w.post(sender=s, campaign="paris" if i % 3 else "lyon",
                      body="t'es charmante").status_code == 200
    assert w.post(sender=senders[1], body="alors ?").status_code == 200
    w.wait_for(lambda ev: sum(e.TYPE == "ReplySent" for e in ev) >= 12)
    # The up/worker banner says the key a donor checks with.
    key = re.search(r"journal checkpoints signed by (\S+)", w.log_path.read_text()).group(1)
    assert key.startswith(f"antirelou/{w.app_id}+")
    # Wait until the notary's checkpoints cover every record (a checkpoint each 3 s).
    from infra.journal import end_offsets
    deadline = time.monotonic() + 60
    while True:
        ends = asyncio.run(end_offsets(w.kafka, w.journal_topic))
        import orjson
        states = {int(k): orjson.loads(v) for k, v in asyncio.run(
            latest_by_key(w.kafka, f"{w.app_id}.checkpoints")).items()}
        if all(states.get(p, {}).get("next_offset") == end for p, end in ends.items()):
            break
        assert time.monotonic() < deadline, (ends, states)
        time.sleep(1)
    out = tmp_path / "journal.jsonl"
    done = cli(w, "export", "--out", str(out), "--kafka", w.kafka, "--app-id", w.app_id)
    assert done.returncode == 0, done.stderr
    done = cli(w, "verify", str(out), "--key", key)
    assert done.returncode == 0, done.stderr
    n = sum(ends.values())
    assert re.fullmatch(rf"antirelou: verified: {n:,} events in 2 partition\(s\) match \d+ signed "
                        r"checkpoint\(s\), the latest signed \S+\n", done.stdout)
    # The bodies are kept apart (FILE.bodies, not notarised: they are deleted with their
    # retention); a verdict changed in the journal is found.
    assert b"t'es charmante" in (tmp_path / "journal.jsonl.bodies").read_bytes()
    data = out.read_bytes()
    assert b'"verdict":"forward"' in data
    out.write_bytes(data.replace(b'"verdict":"forward"', b'"verdict":"suppress"', 1))
    done = cli(w, "verify", str(out), "--key", key)
    assert done.returncode == 1 and done.stdout == ""
    assert re.fullmatch(r"antirelou: verify: NOT VERIFIED: line \d+ \(partition \d, event #\d+\): "
                        r"not the event notarised at this place \(changed\)\n", done.stderr)
    # why, from the broker: the sender who texted twice, answered once.
    done = cli(w, "why", "+" + senders[1], "--kafka", w.kafka, "--app-id", w.app_id,
               "--config", str(w.config), env_extra={"ANTIRELOU_SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    assert senders[1] not in done.stdout
    assert "not answered: he was already answered (one reply per sender)" in done.stdout
    assert done.stdout.splitlines()[-1] == "2 text(s) to paris; answered: 1 reply(ies) sent"
    # The same on the dashboard, behind the admin token; the number in a form, not a URL.
    assert requests.post(w.url + "/dashboard/why", data={"number": senders[1]},
                         timeout=30).status_code in (401, 403)
    page = requests.post(w.url + "/dashboard/why", data={"number": senders[1]}, headers=ADMIN,
                         timeout=30).text
    assert "already answered" in page and senders[1] not in page


def test_the_public_page_in_chromium_says_nothing_personal(notarised, tmp_path):
    w = notarised
    w.wait_for(lambda ev: sum(e.TYPE == "ReplySent" for e in ev) >= 12)
    answer = requests.get(w.url + "/public", timeout=30)  # no token
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "public, max-age=60"
    page = answer.text
    events = w.journal()
    for e in events:
        for personal in (getattr(e, "sender", None), getattr(e, "body", None),
                         getattr(e, "message_id", None)):
            if personal:
                assert personal not in page
    assert not re.search(r"s_[a-z2-7]{24}", page) and "<script" not in page
    assert "-----" not in page and "journal/0" in page  # the latest signed checkpoints
    from selenium.webdriver.common.by import By

    driver = browser()
    try:
        driver.get(w.url + "/public")
        heads = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        assert heads[:2] == ["lyon", "paris"] and "Check the journal yourself" in heads
        rows = driver.find_elements(By.CSS_SELECTOR, "section table tbody tr")
        assert rows and re.match(r"\d{4}-\d\d-\d\d \d+ \d+ 0 EUR", rows[0].text)
        DOCS.mkdir(exist_ok=True)
        path = DOCS / "public-page.png"
        assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    finally:
        driver.quit()
