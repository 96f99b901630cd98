"""Bad input to the `antirelou` command: one line saying what is wrong, and a distinct exit
status (2 bad input, 4 broker unreachable); no traceback. In process (``cli.main``) where no
broker is needed, and as a subprocess for the unreachable broker."""

from __future__ import annotations

import argparse
import base64
import os
import socket
import subprocess
import sys

import pytest

from schemas.policy import OPERATOR_KEYS
from streams import cli
from tests.factories import ROOT

GOOD = """
[[campaign]]
id = "paris"
number = "{number}"
reply_text = "Non, c'est non."
language = "fr"
budget_eur = {budget}
price_per_segment_eur = "0.08"
start = {start}
end = 2027-10-31
{extra}
"""
KEY_A = base64.urlsafe_b64encode(bytes(range(32))).decode()


def write(tmp_path, number="+33644630001", budget='"3700.00"', start="2026-11-01", extra=""):
    path = tmp_path / "c.toml"
    path.write_text(GOOD.format(number=number, budget=budget, start=start, extra=extra))
    return path


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_check_prints_each_campaigns_reply_cost(tmp_path, capsys):
    code, out, err = run(capsys, "check", "--config", str(write(tmp_path)))
    assert code == 0, err
    assert out.splitlines()[1] == (
        "  paris (+33644630001, FR, fr): 2026-11-01 to 2027-10-31, budget EUR 3,700.00; reply 1 "
        "GSM-7 segment(s) x EUR 0.08 = EUR 0.0800 (46,250 replies); sender shown: 33644630001")


def test_a_national_number_needs_the_campaigns_country(tmp_path, capsys):
    path = write(tmp_path, number="06 44 63 00 01")
    code, _, err = run(capsys, "check", "--config", str(path))
    assert (code, one_line(err)) == (2, (
        f"antirelou: {path}: campaign #1 ('paris'): 'number' '06 44 63 00 01' is in national "
        "form: write it in international form (+33...) or set 'country'"))
    path = write(tmp_path, number="06 44 63 00 01", extra='country = "FR"')
    code, out, err = run(capsys, "check", "--config", str(path))
    assert code == 0 and "paris (+33644630001, FR, fr)" in out, err


@pytest.mark.parametrize("extra, budget, start, message", [
    ('country = "XX"', '"3700.00"', "2026-11-01",
     "'country' 'XX' is not an ISO country code (e.g. FR, BE)"),
    ('originator = "AntiRelouParisNord"', '"3700.00"', "2026-11-01",
     "'originator' 'AntiRelouParisNord' must be a phone number or 1 to 11 letters and digits "
     "(what MessageBird shows as sender)"),
    ('originator = "Anti-Relou"', '"3700.00"', "2026-11-01",
     "'originator' 'Anti-Relou' must be a phone number or 1 to 11 letters and digits "
     "(what MessageBird shows as sender)"),
    ("", '"1e3"', "2026-11-01",
     "'budget_eur' = '1e3' is not an amount in EUR (write it like 3700.00)"),
])
def test_campaign_values_are_checked_for_meaning(tmp_path, capsys, extra, budget, start, message):
    path = write(tmp_path, budget=budget, start=start, extra=extra)
    code, _, err = run(capsys, "check", "--config", str(path))
    assert (code, one_line(err)) == (2, f"antirelou: {path}: campaign #1 ('paris'): {message}")


def test_a_bad_date_is_reported_as_a_bad_date_not_a_toml_error(tmp_path, capsys):
    path = write(tmp_path, start="2026-13-01")
    code, _, err = run(capsys, "check", "--config", str(path))
    assert (code, one_line(err)) == (
        2, f"antirelou: {path}: line 9: 'start': 2026-13-01 is not a date (month must be in 1..12)")


def test_two_operators_sharing_a_key_are_refused(tmp_path, capsys):
    ops = "".join(f'[[operator]]\nname = "{n}"\npublic_key = "{KEY_A}"\nmay = ["policy"]\n'
                  for n in ("alice", "bob"))
    path = write(tmp_path, extra=ops)
    code, _, err = run(capsys, "check", "--config", str(path))
    assert (code, one_line(err)) == (2, (
        f"antirelou: {path}: operator #2 ('bob'): same 'public_key' as operator 'alice' (each "
        "operator needs a key of her own: `antirelou operator new`)"))


def test_a_missing_campaign_file(tmp_path, capsys):
    code, _, err = run(capsys, "check", "--config", str(tmp_path / "nope.toml"))
    assert (code, one_line(err)) == (2, f"antirelou: {tmp_path / 'nope.toml'}: campaign file not found")


@pytest.mark.parametrize("argv, message", [
    (["policy", "set", "paris", "allowed_countries=FR,XX"],
     "antirelou: allowed_countries: XX not ISO country codes (e.g. FR,BE)"),
    (["policy", "set", "paris", "blocked_prefixes=33756"],
     "antirelou: blocked_prefixes: 33756: write a range as country code - 3 digits, e.g. 33-756"),
    (["policy", "set", "paris", "reserve_eur=1e3"],
     "antirelou: reserve_eur: '1e3' is not an amount in EUR (write it like 250.00)"),
    (["budget", "credit", "paris", "1e3", "--source", "leetchi"],
     "antirelou: amount: '1e3' is not an amount in EUR (write it like 250.00)"),
    (["budget", "credit", "paris", "NaN", "--source", "leetchi"],
     "antirelou: amount: 'NaN' is not an amount in EUR (write it like 250.00)"),
    (["policy", "set", "atlantis", "reserve_eur=1"],
     "antirelou: unknown campaign 'atlantis'; known: paris"),
    (["journal", "--type", "ReplyApproved,Nope"], None),
    (["journal", "--since", "yesterday"],
     "antirelou: --since 'yesterday': expected a date (2026-12-01), a time (2026-12-01T20:00) "
     "or a duration back from now (30m, 2h, 7d)"),
])
def test_bad_operator_input_is_one_line_and_exit_2_before_any_broker(tmp_path, capsys, argv,
                                                                     message):
    # The broker address is unused: input is checked first (nothing listens on port 9).
    code, _, err = run(capsys, *argv, "--config", str(write(tmp_path)), "--kafka", "127.0.0.1:9")
    line = one_line(err)
    assert code == 2, err
    if message is None:
        assert line.startswith("antirelou: --type: unknown event type(s) Nope; known: ")
    else:
        assert line == message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv", [["journal"], ["policy", "show"], ["export", "--out", "x.jsonl"],
                                  ["budget", "credit", "paris", "5", "--source", "s",
                                   "--insecure-dev"],
                                  ["audit"]])
def test_an_unreachable_broker_is_one_line_and_exit_4(tmp_path, argv):
    port = free_port()
    config = write(tmp_path)
    extra = ["--config", str(config)] if argv[0] != "export" else []
    r = subprocess.run([sys.executable, "-m", "streams.cli", *argv, *extra,
                        "--kafka", f"127.0.0.1:{port}"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    lines = [line for line in r.stderr.splitlines() if "UNSIGNED" not in line]
    assert lines == [f"antirelou: cannot reach the broker at 127.0.0.1:{port}: "
                     "KafkaConnectionError; set --kafka or KAFKA_BOOTSTRAP_SERVERS"], r.stderr


def test_version_and_help_on_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == "antirelou 0.1.0"
    parser = cli.build_parser()
    missing = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif action.option_strings and action.help in (None, "") and action.dest != "help":
                missing.append(f"{path} {action.option_strings[0]}")
            elif not action.option_strings and not action.help and action.dest != "help":
                missing.append(f"{path} {action.dest}")

    walk(parser, "antirelou")
    assert missing == []
    assert set(cli.POLICY_KEY_HELP) == set(OPERATOR_KEYS)
    with pytest.raises(SystemExit):
        cli.main(["policy", "set", "--help"])
    shown = capsys.readouterr().out
    assert all(f"  {key} " in shown for key in OPERATOR_KEYS)
    assert "(default: infra/campaigns.example.toml)" in " ".join(shown.split())


def test_audit_html_report_per_day_with_charts(tmp_path, capsys):
    import dataclasses
    import re

    import orjson

    from infra.config import load_campaigns
    from schemas import codec
    from tests.factories import DAY, T0, journal_of

    config = tmp_path / "c.toml"
    config.write_text(GOOD.format(number="+33644630001", budget='"0.24"', start="2017-10-16",
                                  extra='pacing = false\npolicy = { reply_delay_minutes = "0" }')
                      .replace("2027-10-31", "2017-12-31"))
    campaigns = load_campaigns(config)
    steps = [(f"m{i}", "paris", f"s_{i % 5}", T0 + (i // 4) * DAY + i * 60_000, "33-612")
             for i in range(12)]
    journal = journal_of(steps, campaigns)
    path = tmp_path / "j.jsonl"
    path.write_bytes(b"".join(orjson.dumps(codec.to_dict(e)) + b"\n" for e in journal))
    out = tmp_path / "audit.html"
    code, _, err = run(capsys, "audit", "--config", str(config), "--file", str(path),
                       "--html", str(out))
    assert code == 0, err
    page = out.read_text()
    assert 'id="verdict">Every decision reproduced.' in page
    assert page.count("<svg") == 3 and "<script" not in page
    for day in ("2017-10-16", "2017-10-17", "2017-10-18"):
        assert f"<td>{day}</td>" in page
    assert "budget_exhausted" in page and "already_answered" in page
    assert not re.search(r"\+?33\d{9}", page.replace("+33644630001", ""))
    # A tampered journal: the page and stderr say which field differs.
    i = next(k for k, e in enumerate(journal) if e.TYPE == "ReplyApproved")
    journal[i] = dataclasses.replace(journal[i], cost_micros=1)
    path.write_bytes(b"".join(orjson.dumps(codec.to_dict(e)) + b"\n" for e in journal))
    code, _, err = run(capsys, "audit", "--config", str(config), "--file", str(path),
                       "--html", str(out))
    assert code == 1 and "cost_micros: expected 80000, recorded 1" in err.splitlines()[-1]
    assert 'class="bad" id="first-mismatch"' in out.read_text()


def test_journal_human_lines_show_times_money_and_durations_in_a_persons_units():
    from schemas.events import PolicyChanged, TextTimeClamped
    from streams.cli.inspect import human_line

    clamped = human_line(TextTimeClamped(message_id="m1", campaign_id="paris", sender="s_abcdefghijklmnop",
                                         reported_at=1795899600000, received_at=1796169548641,
                                         occurred_at=1796169248641))
    assert clamped == ("2026-12-01T23:54:08Z  paris     TextTimeClamped      message_id m1, "
                       "sender s_abcdefghijkl, reported_at 2026-11-28T21:00:00Z, "
                       "received_at 2026-12-01T23:59:08Z")
    changed = human_line(PolicyChanged(
        command_id="c1", campaign_id="paris", version=2,
        changes={"price_per_segment_micros": 70000,
                                                          "cooldown_ms": 2592000000,
                                                          "sender_period_ms": 600000},
        operator="alice", seq=5, occurred_at=1796169248641,
    ))
    assert ("changes {price_per_segment EUR 0.07, cooldown 30 d, sender_period 10 min}, "
            "operator alice, seq 5") in changed


def test_a_reader_that_closes_the_pipe_early_is_no_error(tmp_path):
    # `antirelou policy show | head -3` printed a BrokenPipeError traceback. `check` of a
    # file of 700 campaigns prints more than a pipe holds, so `head -1` closes it early.
    many = "".join(GOOD.format(number=f"+33644630{n:03d}", budget='"10.00"', start="2026-11-01",
                               extra="").replace('id = "paris"', f'id = "c{n}"')
                   for n in range(1, 701))
    (tmp_path / "many.toml").write_text(many)
    done = subprocess.run(f"{sys.executable} -m streams.cli check --config many.toml | head -1",
                          shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.startswith("many.toml: 700 campaign(s)"), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
