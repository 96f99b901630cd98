"""The flood simulator: deterministic generation, baselines, report, plot, webhook driver."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import phonenumbers
import pytest
from messagebird.error import ValidationError
from messagebird.request_validator import RequestValidator

from streams.intake.errors import Unauthorized
from streams.intake.messagebird import SignatureVerifier, parse_inbound
from streams.simulate import (
    DAY_MS,
    FR_MOBILE_PREFIXES,
    HOUR_MS,
    KINDS,
    REPORT_ROWS,
    TROLL_KINDS,
    Progress,
    Scenario,
    SimText,
    answer_every_text,
    answer_once_per_sender,
    drive_webhook,
    generate,
    ground_truth,
    outcome_from_decisions,
    render_report,
    run_policy,
    write_plot_html,
)

SMALL = Scenario(seed=11, scale=0.05)
COST = 160_000  # EUR 0.16: the two-segment 2017 reply
BUDGET_2017 = 3_700_000_000  # EUR 3,700
KEY = "sim-signing-key-0123456789abcdef"
RECIPIENT = "33644630001"


@pytest.fixture(scope="module")
def small():
    return generate(SMALL)


@pytest.fixture(scope="module")
def week_2017():
    scenario = Scenario()
    return scenario, generate(scenario)


def _french_mobile(number: str) -> bool:
    parsed = phonenumbers.parse("+" + number)
    return (phonenumbers.is_valid_number(parsed)
            and phonenumbers.region_code_for_number(parsed) == "FR"
            and phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE)


def _prefix(number: str) -> str:
    """Country code + first 3 national digits, as a per-prefix rate limit sees it."""
    parsed = phonenumbers.parse("+" + number)
    return f"{parsed.country_code}-{phonenumbers.national_significant_number(parsed)[:3]}"


# --------------------------------------------------------------------------- generation


def test_the_generator_is_deterministic_for_a_seed_and_differs_across_seeds(small):
    assert generate(Scenario(seed=11, scale=0.05)) == small
    other = generate(Scenario(seed=12, scale=0.05))
    assert other != small
    assert {t.sender for t in other} != {t.sender for t in small}


def test_texts_are_sorted_with_unique_ids_and_known_kinds(small):
    assert [(t.at_ms, t.message_id) for t in small] == sorted((t.at_ms, t.message_id) for t in small)
    assert len({t.message_id for t in small}) == len(small)
    assert {t.kind for t in small} == set(KINDS)
    assert all(t.at_ms % 1000 == 0 for t in small)  # whole seconds, like createdDatetime
    assert all(SMALL.start_ms <= t.at_ms < SMALL.end_ms for t in small)


def test_kinds_and_counts_match_the_scaled_scenario(small):
    truth = ground_truth(small)
    s = SMALL
    senders = {kind: truth[kind]["senders"] for kind in KINDS}
    assert senders == {
        "genuine": s.count(s.genuine_pests), "tester": s.count(s.testers),
        "persistent_troll": s.count(s.persistent_trolls),
        "sim_rotating_troll": s.count(s.sim_rotating_trolls),
        "one_shot_troll": s.count(s.one_shot_trolls),
    } == {"genuine": 400, "tester": 150, "persistent_troll": 1, "sim_rotating_troll": 2,
          "one_shot_troll": 300}
    texts = Counter(t.kind for t in small)
    per_sender = {kind: Counter(t.sender for t in small if t.kind == kind) for kind in KINDS}
    assert all(1 <= n <= 3 for n in per_sender["genuine"].values())
    assert all(1 <= n <= 2 for n in per_sender["tester"].values())
    assert all(300 <= n <= 800 for n in per_sender["persistent_troll"].values())
    assert all(3 <= n <= 10 for n in per_sender["sim_rotating_troll"].values())
    assert texts["one_shot_troll"] == 300
    assert texts["genuine"] > 1.5 * 400  # pests insist
    # No number plays two roles.
    assert truth["total"]["senders"] == sum(senders.values())
    assert truth["total"]["texts"] == len(small)


def test_every_sender_is_a_valid_french_mobile(small):
    assert all(_french_mobile(n) for n in {t.sender for t in small})
    # ...and every range the generator may draw from, whatever the scale.
    for prefix in FR_MOBILE_PREFIXES:
        assert _french_mobile("33" + prefix + "000000") and _french_mobile("33" + prefix + "999999"), prefix
    assert len(FR_MOBILE_PREFIXES) > 100


def test_the_flood_is_inside_its_four_hour_window(small):
    start, end = SMALL.flood_window_ms
    assert (start - SMALL.start_ms, end - start) == (2 * DAY_MS + 20 * HOUR_MS, 4 * HOUR_MS)
    trolls = [t for t in small if t.kind in TROLL_KINDS]
    assert trolls and all(start <= t.at_ms < end for t in trolls)
    # Genuine pests keep arriving during the flood; testers come mostly on days 1-2.
    week = generate(Scenario(seed=3, scale=0.3))
    assert any(start <= t.at_ms < end for t in week if t.kind == "genuine")
    testers = [t for t in week if t.kind == "tester"]
    early = sum(t.at_ms < SMALL.start_ms + 2 * DAY_MS for t in testers)
    assert early > 0.7 * len(testers)


def test_sim_rotating_numbers_concentrate_in_few_prefixes(week_2017):
    scenario, texts = week_2017
    rotating = {t.sender for t in texts if t.kind == "sim_rotating_troll"}
    one_shot = {t.sender for t in texts if t.kind == "one_shot_troll"}
    assert len(rotating) == 40
    assert len({_prefix(n) for n in rotating}) <= scenario.sim_prefixes
    assert len({_prefix(n) for n in one_shot}) > 100  # unrelated numbers


def test_a_scenario_rejects_a_flood_outside_its_days():
    with pytest.raises(ValueError):
        Scenario(days=2)  # the flood is on day 3
    with pytest.raises(ValueError):
        Scenario(scale=0)


# --------------------------------------------------------------------------- outcomes


def test_answering_every_text_with_the_2017_numbers_runs_out_by_the_end_of_the_flood(week_2017):
    scenario, texts = week_2017
    every = answer_every_text(texts, COST, BUDGET_2017)
    assert every.budget_ran_out_at_ms is not None
    assert every.budget_ran_out_at_ms < scenario.flood_window_ms[1]
    assert BUDGET_2017 - COST < every.eur_spent <= BUDGET_2017
    assert every.troll_spend_micros > 0
    assert every.genuine_senders_answered < ground_truth(texts)["genuine"]["senders"]


def test_answering_once_per_sender_spends_less_and_answers_every_genuine_sender(week_2017):
    _, texts = week_2017
    truth = ground_truth(texts)
    every = answer_every_text(texts, COST, BUDGET_2017)
    once = answer_once_per_sender(texts, COST, BUDGET_2017)
    assert once.eur_spent < every.eur_spent
    assert once.budget_ran_out_at_ms is None
    assert once.genuine_senders_answered == truth["genuine"]["senders"]
    assert once.testers_answered == truth["tester"]["senders"]
    assert once.texts_answered == truth["total"]["senders"]


def _texts() -> list[SimText]:
    t0 = Scenario().start_ms
    return [
        SimText(t0 + 1 * HOUR_MS, "33612345678", "salut", "m1", "genuine"),
        SimText(t0 + 2 * HOUR_MS, "33612345678", "?", "m2", "genuine"),
        SimText(t0 + 3 * HOUR_MS, "33712345678", "test", "m3", "tester"),
        SimText(t0 + 4 * HOUR_MS, "33756000001", "lol", "m4", "sim_rotating_troll"),
        SimText(t0 + 5 * HOUR_MS, "33612000002", "ayaaa", "m5", "one_shot_troll"),
    ]


def test_outcome_from_decisions_scores_the_approved_replies():
    texts = _texts()
    out = outcome_from_decisions("policy", texts, {"m1": COST, "m2": None, "m3": COST, "m4": COST},
                                 budget_micros=3 * COST + 1, sample_every_ms=HOUR_MS)
    assert (out.eur_spent, out.texts_answered, out.genuine_senders_answered, out.testers_answered,
            out.troll_spend_micros) == (3 * COST, 3, 1, 1, COST)
    assert out.budget_ran_out_at_ms == texts[3].at_ms  # 1 micro left: not another reply
    assert out.start_ms == texts[0].at_ms - HOUR_MS  # midnight of the first day
    assert out.flood_window_ms == (texts[3].at_ms, texts[4].at_ms)
    assert [p[0] - out.start_ms for p in out.series] == [h * HOUR_MS for h in range(6)]
    assert [p[1] for p in out.series] == [0, COST, COST, 2 * COST, 3 * COST, 3 * COST]
    assert [p[2] for p in out.series] == [0, 1, 1, 1, 1, 1]
    never = outcome_from_decisions("p", texts, {"m1": COST}, budget_micros=10 * COST)
    assert never.budget_ran_out_at_ms is None
    with pytest.raises(ValueError):
        outcome_from_decisions("p", texts, {"nope": COST}, budget_micros=COST)
    with pytest.raises(ValueError):
        outcome_from_decisions("p", texts, {"m1": -1}, budget_micros=COST)


def test_a_plugged_in_policy_is_scored_like_the_baselines(small):
    budget = 100 * COST

    def every_text(texts):  # the 2017 behaviour, written as a PolicyRunner
        decisions, spent = {}, 0
        for t in texts:
            if spent + COST <= budget:
                decisions[t.message_id], spent = COST, spent + COST
        return decisions

    plugged = run_policy("answer every text (2017)", every_text, list(reversed(small)), budget,
                         reply_cost_micros=COST)
    assert plugged == answer_every_text(small, COST, budget)


# --------------------------------------------------------------------------- report and plot


def _outcomes(texts):
    budget = round(BUDGET_2017 * SMALL.scale)
    return [answer_every_text(texts, COST, budget), answer_once_per_sender(texts, COST, budget)]


def test_the_report_puts_the_outcomes_side_by_side(small):
    outcomes = _outcomes(small)
    report = render_report(outcomes, ground_truth(small))
    for o in outcomes:
        assert o.name in report
    table = report.splitlines()[2:]
    for label in REPORT_ROWS:
        assert any(line.startswith(label) for line in table), label
    assert "genuine senders answered" in report and "budget ran out" in report
    assert "never" in report and "day 3 " in report
    assert "(100.0%)" in report
    header = table[0]
    assert header.index(outcomes[1].name) + len(outcomes[1].name) == max(len(line) for line in table)
    assert not any(t.sender in report for t in small)


def test_the_plot_is_one_self_contained_html_file_with_two_charts(small, tmp_path):
    outcomes = _outcomes(small)
    path = write_plot_html(outcomes, tmp_path / "sim.html", report="a <report>")
    page = path.read_text()
    assert page.count("<svg") == 2
    assert page.count('class="flood"') == 2
    assert page.count("<polyline") == 2 * len(outcomes)
    assert all(o.name in page for o in outcomes)
    assert "&lt;report&gt;" in page
    assert "<script" not in page and "<link" not in page and "src=" not in page


def test_the_progress_bar_is_throttled_and_silent_off_a_tty():
    out = io.StringIO()
    bar = Progress(1000, out, force=True)
    for _ in range(1000):
        bar.advance()
    bar.close()
    text = out.getvalue()
    assert text.count("\r") <= 3  # first draw, maybe one more, the final 100%
    assert text.endswith("\r[" + "#" * 30 + "] 100% 1000/1000 texts\n")
    quiet = io.StringIO()
    with Progress(10, quiet) as bar:  # StringIO is not a TTY
        bar.advance(10)
    assert quiet.getvalue() == ""


# --------------------------------------------------------------------------- webhook driver


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # one write per response: no Nagle / delayed-ACK stall on keep-alive
    failing: set[str] = set()
    requests: list[dict] = []
    lock = threading.Lock()
    verifier = SignatureVerifier(KEY)

    def do_POST(self):  # noqa: N802 (http.server API)
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        url = f"http://{self.headers['Host']}{self.path}"
        token = self.headers.get("MessageBird-Signature-JWT")
        valid, jti = False, None
        if token:
            try:
                claims = RequestValidator(KEY).validate_signature(token, url, raw)
                valid = (claims["payload_hash"] == hashlib.sha256(raw).hexdigest()
                         and claims["url_hash"] == hashlib.sha256(url.encode()).hexdigest())
                jti = claims["jti"]
                self.verifier.verify(token, url, raw)  # the worker's own check, replays refused
            except (ValidationError, Unauthorized):
                valid = False
        sms = parse_inbound(self.headers["Content-Type"], raw)
        with self.lock:
            self.requests.append({"sms": sms, "valid": valid, "jti": jti})
        status = 401 if not valid else 503 if sms.message_id in self.failing else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture()
def webhook_server():
    _Recorder.requests = []
    _Recorder.failing = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/messagebird/sms"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_webhook_driver_posts_signed_messagebird_callbacks(small, webhook_server):
    texts = small[:40]
    _Recorder.failing = {texts[3].message_id, texts[7].message_id}
    out = io.StringIO()
    with Progress(len(texts), out, force=True) as bar:
        counts = drive_webhook(texts, webhook_server, RECIPIENT, KEY, progress=bar)
    assert counts == {"200": 38, "503": 2}
    got = _Recorder.requests
    assert len(got) == len(texts) and all(r["valid"] for r in got)
    assert len({r["jti"] for r in got}) == len(texts)
    assert [(r["sms"].message_id, r["sms"].originator, r["sms"].recipient, r["sms"].body,
             r["sms"].created_at_ms) for r in got] == [
        (t.message_id, t.sender, RECIPIENT, t.body, t.at_ms) for t in texts]
    assert "40/40 texts" in out.getvalue()


def test_an_unsigned_drive_is_refused_and_counted(small, webhook_server):
    counts = drive_webhook(small[:5], webhook_server, RECIPIENT, None)
    assert counts == {"401": 5}
    assert not any(r["valid"] for r in _Recorder.requests)


def test_the_webhook_driver_paces_and_counts_unanswered_requests(small, webhook_server):
    began = time.monotonic()
    assert drive_webhook(small[:6], webhook_server, RECIPIENT, KEY, rate_per_s=100) == {"200": 6}
    assert time.monotonic() - began >= 0.05
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/sms"
    assert drive_webhook(small[:3], closed, RECIPIENT, KEY, timeout_s=2) == {"error": 3}
    with pytest.raises(ValueError):
        drive_webhook(small[:1], "file:///etc/passwd", RECIPIENT, KEY)
