"""``antirelou why``, ``verify``, ``public`` and ``audit`` on an export, run as the command
runs them (``streams.cli.main``), offline: the stories journal of tests/journals.py, its
senders the pseudonyms of real-looking numbers under the tests' secret."""

import re

import pytest

from infra.checkpoints import signing_key, verifier_key
from streams.cli import main
from tests.journals import SECRET, notarise, number, partitioned, stories_journal, write_export

KEY = verifier_key("antirelou/antirelou", signing_key(SECRET).public_key().public_bytes_raw())
CONFIG = """
[[campaign]]
id = "paris"
number = "+33644630001"
reply_text = "Non."
language = "fr"
budget_eur = "50"
price_per_segment_eur = "0.08"
start = 2017-10-01
end = 2018-10-01
"""


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    _, events = stories_journal()
    parts = partitioned(events)
    d = tmp_path_factory.mktemp("stories")
    config = d / "campaigns.toml"
    config.write_text(CONFIG)
    return write_export(d, parts, notarise(parts, origin="antirelou/antirelou")), config


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("ANTIRELOU_SECRET", SECRET.decode())
    monkeypatch.setenv("ANTIRELOU_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("ANTIRELOU_VERIFIER_KEY", raising=False)


def why(capsys, stories, n, *extra):
    path, config = stories
    code = main(["why", f"+{number(n)}", "--file", str(path), "--config", str(config), *extra])
    out = capsys.readouterr()
    assert number(n) not in out.out + out.err  # the number is never printed
    return code, out.out


def test_why_a_pest_held_for_the_delay_then_released_and_answered(capsys, stories, env):
    code, out = why(capsys, stories, 0)
    assert code == 0
    assert re.search(r'text q0 received: "tu es belle"', out)
    assert "passed on to the campaign (his text #1)" in out
    assert re.search(r"reply held for the safety delay until \d\d:\d\d:\d\d", out)
    assert re.search(r"released \(waiting since \d\d:\d\d:\d\d\): reply approved, EUR 0.08", out)
    assert "reply sent (dry run" in out
    assert out.splitlines()[-1] == "1 text(s) to paris; answered: 1 reply(ies) sent"


def test_why_a_raider_held_back_then_withdrawn(capsys, stories, env):
    code, out = why(capsys, stories, 12)
    assert code == 0
    assert re.search(r"held back in a (raid's minute|surge): his minute's first texts at \d+% "
                     r"of the usual rate; rank \d+", out)
    assert "request withdrawn" in out and "it waited longer than a request may" in out
    assert out.splitlines()[-1].startswith("1 text(s) to paris; not answered; the last refusal: "
                                           "request withdrawn")


def test_why_a_flooder(capsys, stories, env):
    code, out = why(capsys, stories, 90)
    assert code == 0
    assert "not answered: he texts too fast (a flooder)" in out
    assert out.splitlines()[-1].startswith("12 text(s) to paris")


def test_why_a_number_that_never_texted_and_a_malformed_one(capsys, stories, env):
    code, out = why(capsys, stories, 55 + 40)
    assert code == 0 and out.startswith("antirelou: why: no event of this number (s_")
    path, config = stories
    assert main(["why", "06 12 ab", "--file", str(path), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == "antirelou: why: NUMBER is not a phone number (digits, e.g. +33612345678)\n"


def test_why_without_the_secret_says_what_to_set(capsys, stories, monkeypatch, tmp_path):
    monkeypatch.delenv("ANTIRELOU_SECRET", raising=False)
    monkeypatch.delenv("ANTIRELOU_SECRET_FILE", raising=False)
    path, config = stories
    assert main(["why", "+33612000000", "--file", str(path), "--config", str(config),
                 "--state-dir", str(tmp_path)]) == 2
    assert "set ANTIRELOU_SECRET" in capsys.readouterr().err
    assert not (tmp_path / "secret").exists()  # never made up here


def test_verify_says_one_line_and_its_exit_status(capsys, stories, env, tmp_path):
    path, _ = stories
    assert main(["verify", str(path), "--key", KEY]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"antirelou: verified: [\d,]+ events in 3 partition\(s\) match \d+ signed "
                        r"checkpoint\(s\), the latest signed [\dT:Z-]+\n", out)
    assert main(["verify", str(path)]) == 0  # the key derived from this deployment's secret
    capsys.readouterr()
    copy = tmp_path / "copy.jsonl"
    data = path.read_bytes().replace(b'"reply_to"', b'"reply_to"', 1)
    data = data.replace(b'"cost_micros":80000', b'"cost_micros":8000', 1)
    copy.write_bytes(data)
    (tmp_path / "copy.jsonl.checkpoints").write_bytes(path.with_name(path.name + ".checkpoints")
                                                      .read_bytes())
    assert main(["verify", str(copy), "--key", KEY]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("antirelou: verify: NOT VERIFIED: line ")
    assert main(["audit", "--file", str(copy), "--key", KEY, "--config", str(stories[1])]) == 1
    assert "NOT VERIFIED" in capsys.readouterr().err
    other = verifier_key("antirelou/antirelou", signing_key(b"x" * 32).public_key().public_bytes_raw())
    assert main(["verify", str(path), "--key", other]) == 1
    assert "not by antirelou/antirelou+" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "nothing.jsonl"), "--key", KEY]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_audit_verifies_an_export_first_then_replays_it(capsys, stories, env):
    path, config = stories
    main(["audit", "--file", str(path), "--config", str(config)])  # (this file's policy is
    out = capsys.readouterr().out                                 # not the journal's)
    assert out.startswith("antirelou: verified: 361 events")
    assert "78 texts, 78 screenings" in out  # then replayed


def test_the_public_site_says_what_the_money_did_and_nothing_personal(capsys, stories, env,
                                                                      tmp_path):
    path, config = stories
    site = tmp_path / "site"
    assert main(["public", "--out", str(site), "--file", str(path), "--config", str(config)]) == 0
    page = (site / "index.html").read_text()
    _, events = stories_journal()
    for e in events:  # no pseudonym, no body, no message id
        for secret_bit in (getattr(e, "sender", None), getattr(e, "body", None)):
            if secret_bit:
                assert secret_bit not in page
    assert "s_" not in page and "<script" not in page
    # The day: 78 texts, 9 answered, 7 flooder texts refused, EUR 0.72 spent.
    assert "<td>2017-10-16</td><td>78</td><td>9</td><td>7</td><td>EUR 0.72</td>" in page
    assert ("surge from 2017-10-16 07:00 UTC, ended 2017-10-16 07:00: 60 request(s) held back, 3 "
            "released, 0 refused as a raid, 58 expired unanswered") in page
    assert KEY in page and (site / "key.txt").read_text() == KEY + "\n"
    notes = (site / "checkpoints.txt").read_text()
    assert notes.count("antirelou/antirelou/journal/") == 3
    assert notes.splitlines()[0] in page


def test_one_event_is_proved_included_without_the_rest_of_the_journal(capsys, stories, env,
                                                                       tmp_path):
    import orjson

    path, _ = stories
    line = 30
    assert main(["verify", str(path), "--prove", str(line), "--key", KEY]) == 0
    proof = orjson.loads(capsys.readouterr().out)
    assert proof["record"].encode() == path.read_bytes().splitlines()[line - 1]
    assert 1 <= len(proof["proof"]) and proof["index"] < proof["size"]
    given = tmp_path / "proof.json"
    given.write_bytes(orjson.dumps(proof))
    assert main(["verify", str(given), "--key", KEY]) == 0  # no export needed
    assert re.fullmatch(rf"antirelou: proved: the record is event #{proof['index'] + 1} of the "
                        rf"{proof['size']:,} of journal partition 0 signed at \S+\n",
                        capsys.readouterr().out)
    changed = {**proof, "record": proof["record"].replace('"v":', '"v": ', 1)}
    given.write_bytes(orjson.dumps(changed))
    assert main(["verify", str(given), "--key", KEY]) == 1
    assert "NOT VERIFIED: the record is not event #" in capsys.readouterr().err
    elsewhere = {**proof, "index": proof["index"] + 1}
    given.write_bytes(orjson.dumps(elsewhere))
    assert main(["verify", str(given), "--key", KEY]) == 1
    capsys.readouterr()
    assert main(["verify", str(path), "--prove", "1", "--key", KEY]) == 2  # a partition line
    assert "line 1 is not an event" in capsys.readouterr().err
