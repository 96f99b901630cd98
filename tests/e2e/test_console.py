"""The dashboard as an operator's console, in a real headless Chromium against a real worker:
one campaign in the middle of a raid, one after a raid, one that has had no text. What the
page says is checked against the journal and /campaigns; the screenshots the README shows
are taken here (`ANTIRELOU_DOCS_SCREENSHOTS=1` writes them into docs/).

The raids are the simulator's raid scenario replayed through the signed webhook on their own
timeline, dated in the past (the worker keeps a day of skew), and the clock brought on to
now by `Tick` records, as the leader's timer sends them (its own ticks slowed down)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from schemas.events import ReplyDenied, ReplyExpired, SenderScreened, SurgeEnded, SurgeStarted
from streams.simulate import drive_webhook
from streams.simulate.scenarios import generate_plan, retimed
from tests.e2e import conftest as e2e
from tests.e2e.test_dashboard import browser, fresh, page_wait
from tests.factories import ROOT

pytestmark = [pytest.mark.services, pytest.mark.timeout(1200)]

NUMBERS = {"paris": "33644630011", "lyon": "33644630012", "nice": "33644630013"}
MINUTE = 60_000


def _campaign(cid: str, extra: str = "") -> str:
    return (f'[[campaign]]\nid = "{cid}"\nnumber = "+{NUMBERS[cid]}"\nreply_text = "Non, '
            "c'est non. Vous avez fait peur a une femme. Ce numero est un numero anti-relou.\"\n"
            'language = "fr"\nbudget_eur = "3700.00"\nprice_per_segment_eur = "0.08"\n'
            f'start = 2026-01-01\nend = 2099-12-31\n{extra}\n')


# Paris judges its requests 5 minutes after their text (30 by default), so that the raid's
# first minutes are judged while it goes on.
CONFIG = (_campaign("paris", 'policy = { reply_delay_minutes = "5" }') + _campaign("lyon")
          + _campaign("nice"))


@pytest.fixture(scope="module")
def console_worker(tmp_path_factory, kafka, ray_address, messagebird):
    w = e2e.start_worker(tmp_path_factory.mktemp("console"), kafka, ray_address, {
        "MESSAGEBIRD_ACCESS_KEY": e2e.ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
        "ANTIRELOU_ADMIN_TOKEN": e2e.ADMIN_TOKEN, "ANTIRELOU_TICK_INTERVAL_S": "3600",
        "ANTIRELOU_EVENT_SKEW_MINUTES": "1440"}, config_text=CONFIG, args=("--insecure-dev",))
    yield w
    e2e.stop_worker(w)


def _replay(w, cid: str, texts, until: int) -> None:
    """Post the texts to the campaign's number, then tick it each minute up to ``until``."""
    counts = drive_webhook(texts, w.url + "/webhooks/messagebird/sms", NUMBERS[cid], e2e.SIGNING_KEY)
    assert set(counts) == {"200"}, counts
    ids = {t.message_id for t in texts}
    w.wait_for(lambda ev: ids <= {e.message_id for e in ev if isinstance(e, SenderScreened)},
               timeout=600)
    last = max(t.at_ms for t in texts)
    e2e.send_ticks(w, cid, list(range(last + MINUTE, until, MINUTE)) + [until])


def _story(w) -> list:
    now = int(time.time()) * 1000
    # Lyon: a raid that ended an hour and a half ago, the clock brought on to now.
    plan = generate_plan("raid", 4)
    plan = retimed(plan, now - 90 * MINUTE - (plan.texts[-1].at_ms - plan.texts[0].at_ms))
    _replay(w, "lyon", [t for t in plan.texts], now)
    # Paris: a raid going on, in its eighth minute (at its peak) a minute ago.
    plan = generate_plan("raid", 1)
    lo, _ = plan.raid
    plan = retimed(plan, now - MINUTE - (lo + 8 * MINUTE - plan.texts[0].at_ms))
    _replay(w, "paris", [t for t in plan.texts if t.at_ms <= now - MINUTE], now)
    done = w.cli("policy", "set", "lyon", "surge_spend_percent=40", "--insecure-dev")
    assert done.returncode == 0, done.stderr

    def settled(ev):
        kinds = {(type(e), e.campaign_id) for e in ev if isinstance(e, SurgeStarted | SurgeEnded)}
        return {(SurgeStarted, "lyon"), (SurgeEnded, "lyon"), (SurgeStarted, "paris")} <= kinds
    events = w.wait_for(settled, timeout=300)
    paris = [e.TYPE for e in events if isinstance(e, SurgeStarted | SurgeEnded)
             and e.campaign_id == "paris"]
    assert paris[-1] == "SurgeStarted", paris  # still on
    return events


def test_the_console_shows_a_raid_going_on_a_raid_over_and_an_empty_campaign(
        console_worker, tmp_path):
    w = console_worker
    events = _story(w)
    status = w.status()
    raid_words = {cid: sum(1 for e in events if isinstance(e, ReplyDenied | ReplyExpired)
                           and e.campaign_id == cid and e.reason == "raid_words")
                  for cid in ("paris", "lyon")}
    driver = browser()
    driver.set_window_size(1400, 2600)
    try:
        from selenium.webdriver.common.by import By

        wait = page_wait(driver)  # the page redraws each second: stale elements looked up again
        driver.get(w.url + "/dashboard")
        driver.find_element(By.ID, "token").send_keys(e2e.ADMIN_TOKEN)
        driver.find_element(By.ID, "signin").click()

        def shown(key: str) -> str:
            return fresh(lambda: driver.find_element(By.ID, key).text)

        def count(key: str) -> int:
            return int(shown(key).replace(",", ""))

        # The page has read the whole journal when it shows the last policy change.
        wait.until(lambda d: d.find_elements(By.ID, "c-lyon-history"))
        assert count("c-lyon-texts") == len({e.message_id for e in events
                                             if isinstance(e, SenderScreened)
                                             and e.campaign_id == "lyon"})

        # Paris, mid-raid: the surge is on, since when, and what it decided so far.
        assert shown("c-paris-surge") == "ON"
        assert re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d", shown("c-paris-surge-since"))
        assert shown("c-paris-surge-ended") == "going on"
        assert 0 < count("c-paris-surge-raid-words") <= raid_words["paris"]
        assert count("c-paris-queued") == status["paris"]["queued"]
        assert "the safety delay" in shown("c-paris-queue")

        # Lyon, after the raid: over, with what it decided; the money; the waits; the policy.
        assert shown("c-lyon-surge") == "off"
        assert "(after " in shown("c-lyon-surge-ended")
        assert 0 < count("c-lyon-surge-raid-words") <= raid_words["lyon"]
        assert shown("c-lyon-spent") == f"{status['lyon']['spent_micros'] / 1e6:,.2f}"
        used = float(shown("c-lyon-used").rstrip("%"))
        assert used == pytest.approx(100 * status["lyon"]["spent_micros"] / 3_700_000_000, abs=0.05)
        assert shown("c-lyon-balance") == f"{status['lyon']['balance_micros'] / 1e6:,.2f}"
        assert shown("c-lyon-p95").startswith("p95 ")
        assert "until 2099-12-31" in shown("c-lyon-allowance")
        policy = shown("c-lyon-policy")
        assert re.search(r"surge_spend_percent 40 v2 by \S+, 20\d\d-\S+ \S+ \(was 50\)", policy), policy
        assert "surge_spend_percent 50 → 40" in shown("c-lyon-history")
        assert "raid_words" in shown("c-lyon-expired") or "raid_words" in shown("c-lyon-denied")

        # Nice: nothing yet, said plainly.
        assert count("c-nice-texts") == 0 and shown("c-nice-last") == "No decision yet."
        assert driver.find_elements(By.ID, "c-nice-no-texts")
        assert "No surge yet." in shown("c-nice")

        # The chart has a time axis; its range is the operator's choice.
        axis = fresh(lambda: [t.text for t in
                              driver.find_elements(By.CSS_SELECTOR, "#c-lyon-chart text")])
        assert sum(bool(re.fullmatch(r"\d\d:\d\d", t)) for t in axis) >= 4, axis
        fresh(lambda: driver.find_element(By.ID, "c-lyon-range-campaign").click())
        wait.until(lambda d: "on" in d.find_element(By.ID, "c-lyon-range-campaign")
                   .get_attribute("class"))
        assert fresh(lambda: driver.find_element(By.ID, "c-lyon-chart")
                     .get_attribute("aria-label")) == "texts per day"
        fresh(lambda: driver.find_element(By.ID, "c-lyon-range-hour").click())
        # Pseudonyms only: no phone number anywhere on the page.
        assert not re.search(r"\d{9,}", fresh(lambda: driver.find_element(By.TAG_NAME, "body").text))

        shots = {"paris": "console-mid-raid.png", "lyon": "console-after-raid.png",
                 "nice": "console-empty-campaign.png"}
        for cid, name in shots.items():
            path = tmp_path / name
            fresh(lambda cid=cid, path=path: driver.find_element(By.ID, f"c-{cid}").screenshot(str(path)))
            assert path.stat().st_size > 10_000
            if os.environ.get("ANTIRELOU_DOCS_SCREENSHOTS") == "1":
                (ROOT / "docs").mkdir(exist_ok=True)
                shutil.copy(path, ROOT / "docs" / name)
            out = os.environ.get("ANTIRELOU_ARTIFACTS")
            if out:
                Path(out).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, Path(out) / name)
    finally:
        driver.quit()
