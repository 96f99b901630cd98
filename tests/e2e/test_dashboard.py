"""The operators' view of a real worker during a flood: /dashboard in a real headless
Chromium (Debian's chromium + chromedriver, driven by Selenium), /metrics scraped with the
Prometheus parser, both checked against the journal and /campaigns; the admin token."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, new_sender, of

pytestmark = pytest.mark.services

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are needed (.ci/run installs them)")
        pytest.skip("no chromium/chromedriver here (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1500", "--lang=en-GB"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def page_wait(driver, timeout: float = 60):
    """A wait on the dashboard that looks again when its redraw (each second) replaced the
    element it had found (stale), rather than fail."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,))


def fresh(action, tries: int = 5):
    """``action()``, done again (a few times) when the dashboard's redraw made the element it
    found stale: an element found just before a redraw is gone after it."""
    from selenium.common.exceptions import StaleElementReferenceException

    for attempt in range(tries):
        try:
            return action()
        except StaleElementReferenceException:
            if attempt == tries - 1:
                raise
            time.sleep(0.1)
    return None


def flood(worker, n_senders=30, stop=None):
    """About 70 texts: most senders once, some again (already answered), some 'test'."""
    posts = []
    plan = []
    for i in range(n_senders):
        sender = new_sender()
        campaign = "paris" if i % 3 else "lyon"
        plan.append((sender, campaign, "t'es charmante"))
        if i % 4 == 0:
            plan.append((sender, campaign, "alors ?"))
        if i % 5 == 0:
            plan.append((new_sender(), campaign, "test"))
        if i % 7 == 0:
            plan.append((sender, campaign, "reponds"))

    def post(item):
        sender, campaign, body = item
        time.sleep(0.4)  # spread over about ten seconds: the page must see it grow
        r = worker.post(sender=sender, campaign=campaign, body=body)
        assert r.status_code == 200, r.text
        return r.message_id

    with ThreadPoolExecutor(2) as pool:
        posts = list(pool.map(post, plan))
    return posts


def journal_counts(events, campaign):
    verdicts, seen = Counter(), set()
    for e in events:
        if e.TYPE == "SenderScreened" and e.campaign_id == campaign and e.message_id not in seen:
            seen.add(e.message_id)
            verdicts[(e.verdict, e.reason or "")] += 1
    sent = {e.message_id for e in events if e.TYPE == "ReplySent" and e.campaign_id == campaign}
    spent = {e.message_id: e.cost_micros for e in events
             if e.TYPE == "ReplyApproved" and e.campaign_id == campaign}
    return verdicts, len(sent), sum(spent.values())


def scrape(worker) -> dict:
    r = worker.admin_get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def wait_settled(worker, posted, timeout=120):
    """Every text screened, every forwarded one decided, every approved one sent."""
    def done(ev):
        screened = {e.message_id: e for e in ev if e.TYPE == "SenderScreened"}
        if not all(m in screened for m in posted):
            return False
        forwarded = [m for m in posted if screened[m].verdict == "forward"]
        decided = {e.message_id for e in ev if e.TYPE in ("ReplyApproved", "ReplyDenied")}
        approved = {e.message_id for e in ev if e.TYPE == "ReplyApproved"}
        sent = {e.message_id for e in ev if e.TYPE == "ReplySent"}
        return all(m in decided for m in forwarded) and approved <= sent
    return worker.wait_for(done, timeout=timeout)


def test_admin_pages_refused_without_the_token(worker):
    for path in ("/dashboard", "/dashboard/data", "/campaigns", "/metrics",
                 "/table/senders_by_pseudonym/", "/router/", "/stats/", "/"):  # Faust's own
        r = requests.get(worker.url + path, timeout=10)
        assert r.status_code == 401, (path, r.status_code)
        r = requests.get(worker.url + path, headers={"Authorization": "Bearer wrong"}, timeout=10)
        assert r.status_code == 401, path
    assert 'name="token"' in requests.get(worker.url + "/dashboard", timeout=10).text
    assert requests.get(worker.url + "/health", timeout=10).json() == {"status": "ok"}
    details = worker.admin_get("/health").json()
    assert details["status"] == "ok" and "messagebird_circuit" in details
    bad = requests.post(worker.url + "/login", data={"token": "nope"}, timeout=10,
                        allow_redirects=False)
    assert bad.status_code == 401 and "Wrong token." in bad.text
    good = requests.post(worker.url + "/login", data={"token": ADMIN_TOKEN}, timeout=10,
                         allow_redirects=False)
    assert good.status_code == 303 and good.headers["Location"] == "/dashboard"
    cookie = good.cookies.get("antirelou_admin")
    assert cookie and ADMIN_TOKEN not in cookie  # derived from the token, not the token
    assert requests.get(worker.url + "/campaigns", cookies={"antirelou_admin": cookie},
                        timeout=10).status_code == 200


def test_dashboard_in_chromium_follows_a_flood_live_and_agrees_with_campaigns_and_metrics(
        worker, tmp_path):
    # Surge mode (on by default) would defer the flood's replies until a quiet spell: this
    # test compares counts once every text is answered, so it is switched off here.
    for campaign in ("paris", "lyon"):
        done = worker.cli("policy", "set", campaign, "surge_multiple=off", operator="alice")
        assert done.returncode == 0, done.stderr
    driver = browser()
    try:
        from selenium.webdriver.common.by import By

        wait = page_wait(driver)
        driver.get(worker.url + "/dashboard")  # no token: the login form
        assert driver.find_element(By.ID, "token").get_attribute("type") == "password"
        assert "texts screened" not in driver.page_source
        driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
        driver.find_element(By.ID, "signin").click()
        wait.until(lambda d: d.find_elements(By.ID, "c-paris-texts"))
        driver.execute_script("window.__sameDocument = 'yes';")  # gone if the page reloads

        def shown(cid, key):
            return fresh(lambda: driver.find_element(By.ID, f"c-{cid}-{key}").text)

        start = int(shown("paris", "texts"))
        seen_values = {start}
        scrapes = []
        posted: list[str] = []
        runner = threading.Thread(target=lambda: posted.extend(flood(worker)))
        runner.start()
        while runner.is_alive():  # watch the page (and /metrics) while the flood goes
            seen_values.add(int(shown("paris", "texts")))
            scrapes.append(scrape(worker))
            time.sleep(0.5)
        runner.join()
        events = wait_settled(worker, posted)

        status = worker.status()
        verdicts, sent, spent = journal_counts(events, "paris")

        def agrees(_):
            balance = shown("paris", "balance").replace(",", "")
            return (balance == f"{status['paris']['balance_micros'] / 1e6:.2f}"
                    and int(shown("paris", "approved")) == status["paris"]["approved"]
                    and int(shown("paris", "texts")) == sum(verdicts.values())
                    and int(shown("paris", "sent")) == sent)
        wait.until(agrees)
        # It grew while the flood went on, in the same page: no reload.
        assert len(seen_values) >= 3, seen_values
        assert driver.execute_script("return window.__sameDocument") == "yes"
        assert int(shown("lyon", "texts")) == sum(journal_counts(events, "lyon")[0].values())
        assert shown("paris", "surge") == "off" and shown("paris", "queued") == "0"
        # The last decisions show pseudonyms, never a number.
        last = fresh(lambda: driver.find_element(By.ID, "c-paris-last").text)
        assert "s_" in last and not re.search(r"\d{9,}", last)
        assert fresh(lambda: driver.find_element(By.ID, "c-paris-chart").tag_name) == "svg"
        path = tmp_path / "dashboard.png"
        assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
        out = os.environ.get("ANTIRELOU_ARTIFACTS")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(out) / "dashboard.png")
    finally:
        driver.quit()

    # /metrics during the flood: counters only grow; at the end they equal the journal.
    texts = [sum(v for (n, labels), v in s.items() if n == "antirelou_texts_total"
                 and ("campaign", "paris") in labels) for s in scrapes]
    assert texts == sorted(texts) and len(set(texts)) >= 2, texts
    final = scrape(worker)
    for (verdict, reason), n in verdicts.items():
        key = ("antirelou_texts_total",
               (("campaign", "paris"), ("reason", reason), ("verdict", verdict)))
        assert final[key] == n, (key, final.get(key), n)
    assert sum(v for (n, labels), v in final.items() if n == "antirelou_texts_total"
               and ("campaign", "paris") in labels) == sum(verdicts.values())
    assert final[("antirelou_replies_total", (("campaign", "paris"), ("outcome", "sent")))] == sent
    assert abs(final[("antirelou_spend_eur_total", (("campaign", "paris"),))] - spent / 1e6) < 1e-9
    assert final[("antirelou_balance_eur", (("campaign", "paris"),))] == pytest.approx(
        status["paris"]["balance_micros"] / 1e6)
    assert final[("antirelou_queue_length", (("campaign", "paris"),))] == 0
    verdict_count = sum(v for (n, labels), v in final.items()
                        if n == "antirelou_webhook_to_verdict_seconds_count")
    assert verdict_count >= len(posted) * 0.9  # the webhooks this worker's projection saw
    assert ("antirelou_consumer_lag", (("stage", "screening"),)) in final
    labels = {v for (_, ls) in final for _, v in ls}
    assert not [v for v in labels if v.startswith("s_") or re.fullmatch(r"\+?\d{6,}", v)]
    assert of(events, posted[0])  # the flood reached the journal


def test_the_worker_logs_one_line_per_campaign_each_minute_with_activity(worker):
    r = worker.post(sender=new_sender(), campaign="lyon")
    worker.wait_for(lambda ev: of(ev, r.message_id, "ReplySent"))
    deadline = time.monotonic() + 90  # the minute must end, then the 10 s timer run
    pattern = re.compile(r"campaign lyon, minute \d\d:\d\d UTC: \d+ texts \(.*\d+ replies sent.*"
                         r"balance EUR [\d,.]+, queue \d+, surge off, policy v\d+")
    while not pattern.search(worker.log_path.read_text()):
        assert time.monotonic() < deadline, "no minute summary in the worker log"
        time.sleep(1)
    assert requests.get(worker.url + "/dashboard/data", headers=ADMIN, timeout=10).json()["ready"]


def test_policy_show_set_and_journal_as_an_operator_reads_them(worker):
    one = worker.post(sender=new_sender(), campaign="paris")
    worker.wait_for(lambda ev: of(ev, one.message_id, "ReplySent"))
    shown = worker.cli("policy", "show", "paris")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    version = int(re.match(r"paris: policy v(\d+) \((campaign file|alice, 20.*Z)\)$",
                           lines[0]).group(1))
    assert lines[1].startswith("  balance EUR ") and "reply 1 GSM-7 segment(s)" in lines[1]
    keys = [line.split("=")[0].strip() for line in lines[2:]]
    from schemas.policy import OPERATOR_KEYS
    assert keys == list(OPERATOR_KEYS)  # every key, in the order of `policy set --help`

    # A reserve above the balance stops every reply: refused unless --force, and then warned.
    balance = worker.status()["paris"]["balance_micros"] / 1e6
    r = worker.cli("policy", "set", "paris", "reserve_eur=999999", operator="alice")
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"antirelou: paris: reserve EUR 999,999.00 is not below the balance EUR {balance:,.2f}: "
        "no reply can be paid",
        "antirelou: not sent: this change stops every reply (pass --force to apply it anyway)"]
    r = worker.cli("policy", "set", "paris", "reserve_eur=999999", "--force", operator="alice")
    assert r.returncode == 0 and r.stderr.startswith("antirelou: warning: paris: reserve EUR")
    assert r.stdout.strip() == (f"paris: policy v{version + 1} in force (alice): "
                                "reserve_eur 0 -> 999999")
    r = worker.cli("policy", "set", "paris", "reserve_eur=0", "sender_burst=6", operator="alice")
    assert r.stdout.strip() == (f"paris: policy v{version + 2} in force (alice): reserve_eur "
                                "999999 -> 0, sender_burst 5 -> 6"), r.stderr

    human = worker.cli("journal", "--human", "--campaign", "paris", "--type", "PolicyChanged",
                       "--since", "1h")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert len(lines) >= 2 and all(re.match(
        r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ  paris     PolicyChanged        command_id \w+, "
        r"version \d, changes \{.*\}, operator alice, seq \d+$", line) for line in lines), lines
    approved = worker.cli("journal", "-H", "--type", "ReplyApproved", "--campaign", "paris")
    assert re.search(r"cost EUR 0\.08, balance_after EUR [\d,]+\.\d\d, seq \d+, occurred",
                     approved.stdout) is None  # times are not EUR
    assert re.search(r"segments 1, encoding GSM-7, cost EUR 0\.08, balance_after EUR [\d,]+\.\d\d",
                     approved.stdout), approved.stdout[:500]
    assert worker.cli("journal", "--since", "2099-01-01").stdout == ""
