"""The audit's campaign replay shared with a forked process (``antirelou audit`` on two
cores) gives the very result of the one-process replay: clean journals, tampered ones (the
same mismatches, in the same order, at most ``keep``), malformed ones (the same error), and
a child that fails (its campaigns replayed in the parent)."""

import dataclasses

import pytest

from infra.journal import read_lines
from schemas.events import ReplyApproved, ReplyDenied, SenderScreened, TextReceived
from streams.audit import Audit, MalformedEvent, render_text, to_json
from streams.audit.results import PrefixUnconfirmed
from streams.cli.audit import audit_result, share_replay
from tests.benchmarks.bench_audit import LYON_REPLY, PARIS_REPLY, TOML, generate


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    """A bench journal: three campaigns, redeliveries, a policy change read late (deferred
    senders), a credit, a budget running out."""
    folder = tmp_path_factory.mktemp("apart")
    config, path = folder / "campaigns.toml", folder / "journal.jsonl"
    config.write_text(TOML.format(paris_reply=PARIS_REPLY, lyon_reply=LYON_REPLY,
                                  paris_eur=f"{0.16 * 0.6 * 6000 / 4 * 0.5:.2f}"))
    generate(config, path, 6000, seed=3)
    from infra.config import load_campaigns

    with open(path, "rb") as f:
        events = [e for _, e in read_lines(f, str(path))]
    return load_campaigns(config), events


def outcome(events, campaigns, *, apart, keep=50):
    run = Audit(campaigns, keep)
    try:
        run.feed(events)
        result = audit_result(run, apart_from=0) if apart else run.result()
    except MalformedEvent as exc:
        return ("malformed", str(exc))
    return (render_text(result), to_json(result), [m.to_json() for m in result.mismatches],
            dataclasses.asdict(result.counters))


def tampered(events, kind):
    out = list(events)
    approvals = [i for i, e in enumerate(out) if type(e) is ReplyApproved]
    if kind == "cost":  # one approval in each campaign that has one costs a micro-euro more
        firsts = {}
        for i in approvals:
            firsts.setdefault(out[i].campaign_id, i)
        assert len(firsts) >= 2
        for i in firsts.values():
            out[i] = dataclasses.replace(out[i], cost_micros=out[i].cost_micros + 1)
    elif kind == "lost":  # a decision lost: every later seq of its campaign mismatches
        del out[approvals[len(approvals) // 2]]
    elif kind == "verdict":
        i = next(i for i, e in enumerate(out) if type(e) is SenderScreened
                 and e.verdict != "forward")
        out[i] = dataclasses.replace(out[i], verdict="forward", reason=None)
    elif kind == "seq":  # a seq that is not a number: the sort of its campaign fails
        i = next(i for i, e in enumerate(out) if type(e) is ReplyDenied)
        out[i] = dataclasses.replace(out[i], seq="x")
    elif kind in ("text_prefix", "decision_prefix"):
        # The number range of a text that was answered, changed on the text or on the
        # decision: the campaigns half (which decides from the decision's range) must not
        # take it for the text's.
        i = approvals[len(approvals) // 3]
        mid = out[i].message_id
        if kind == "decision_prefix":
            out[i] = dataclasses.replace(out[i], prefix=out[i].prefix + "9")
        else:
            j = next(j for j, e in enumerate(out) if type(e) is TextReceived
                     and e.message_id == mid)
            out[j] = dataclasses.replace(out[j], prefix=out[j].prefix + "9")
    return out


def test_the_journal_is_shared_between_two_processes():
    run_campaigns = {"paris": 900, "lyon": 500, "marseille": 100}
    assert share_replay(0, run_campaigns, apart_from=0) == ["paris"]
    assert share_replay(1000, run_campaigns, apart_from=0) == ["lyon", "paris"]
    assert share_replay(0, run_campaigns) == []  # too little work for a second process


@pytest.mark.parametrize("kind", ["clean", "cost", "lost", "verdict", "seq", "text_prefix",
                                  "decision_prefix"])
def test_the_shared_replay_gives_the_one_process_result(journal, kind):
    campaigns, events = journal
    events = events if kind == "clean" else tampered(events, kind)
    alone = outcome(events, campaigns, apart=False)
    assert outcome(events, campaigns, apart=True) == alone
    if kind == "clean":
        assert alone[3]["mismatches"] == 0 and alone[3]["deferred_senders"] > 0
    elif kind == "seq":
        assert alone[0] == "malformed"
    else:
        assert alone[3]["mismatches"] > 0


def test_the_first_mismatches_kept_are_the_same(journal):
    campaigns, events = journal
    events = tampered(events, "lost")
    assert (outcome(events, campaigns, apart=True, keep=3)
            == outcome(events, campaigns, apart=False, keep=3))


class _FailingApart(Audit):
    def replay_apart(self, campaign_ids):
        raise RuntimeError("the child dies")


def test_a_child_that_fails_leaves_its_campaigns_to_the_parent(journal):
    campaigns, events = journal
    events = tampered(events, "cost")
    run = _FailingApart(campaigns)
    run.feed(events)
    result = audit_result(run, apart_from=0)
    assert to_json(result) == outcome(events, campaigns, apart=False)[1]


# --- the audit in two halves, each reading the file (two processes) --------------------


def halves(events, campaigns, keep=50):
    """The two halves in this process: the screening half fed what ``screening_events``
    gives it (None for the other events), the campaign half everything."""
    wanted = {"TextReceived", "SenderScreened", "SenderReopened", "PolicyChanged", "ReplySent"}
    screening = Audit(campaigns, keep, part="screening")
    screening.feed(e if e.TYPE in wanted else None for e in events)
    run = Audit(campaigns, keep, part="campaigns")
    run.feed(events)
    part = screening.screening_part()
    result = run.result(screening=lambda: part)
    return (render_text(result), to_json(result), [m.to_json() for m in result.mismatches],
            dataclasses.asdict(result.counters))


@pytest.mark.parametrize("kind", ["clean", "cost", "lost", "verdict"])
@pytest.mark.parametrize("keep", [50, 3])
def test_the_two_halves_give_the_one_audit_result(journal, kind, keep):
    campaigns, events = journal
    events = events if kind == "clean" else tampered(events, kind)
    assert halves(events, campaigns, keep) == outcome(events, campaigns, apart=False, keep=keep)


@pytest.mark.parametrize("kind", ["text_prefix", "decision_prefix"])
def test_halves_whose_number_ranges_differ_give_no_result(journal, kind):
    campaigns, events = journal
    events = tampered(events, kind)
    assert outcome(events, campaigns, apart=False)[3]["mismatches"] > 0  # one process sees it
    with pytest.raises(PrefixUnconfirmed):
        halves(events, campaigns)


def test_the_campaigns_half_passes_over_the_texts(journal):
    # Given no texts at all (None in their place), it gives the result it gives with them.
    campaigns, events = journal
    blind = [None if type(e) is TextReceived else e for e in events]
    wanted = {"TextReceived", "SenderScreened", "SenderReopened", "PolicyChanged", "ReplySent"}
    screening = Audit(campaigns, part="screening")
    screening.feed(e if e.TYPE in wanted else None for e in events)
    part = screening.screening_part()
    run = Audit(campaigns, part="campaigns")
    run.feed(blind)
    result = run.result(screening=lambda: part)
    assert to_json(result) == outcome(events, campaigns, apart=False)[1]
    assert result.counters.texts == sum(type(e) is TextReceived for e in events) > 0


def write(tmp_path, events, extra=()):
    from schemas import codec

    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"".join(codec.encode(e) + b"\n" for e in events) + b"".join(extra))
    return path


def _two_readers(path, campaigns, texts_wanted=False):
    import argparse

    from streams.cli import audit as inspect

    run = Audit(campaigns)
    return inspect.two_readers(argparse.Namespace(file=str(path), command="audit"), run,
                                lambda evs, into=run: into.feed(evs),
                                inspect.Origins(from_file=True), texts_wanted)


@pytest.mark.parametrize("kind", ["text_prefix", "decision_prefix"])
def test_two_processes_whose_number_ranges_differ_leave_it_to_one(journal, tmp_path,
                                                                   monkeypatch, kind):
    from streams.cli import audit as inspect

    campaigns, events = journal
    monkeypatch.setattr(inspect, "TWO_READERS_FROM", 0)
    assert _two_readers(write(tmp_path, events), campaigns) is not None
    assert _two_readers(write(tmp_path, tampered(events, kind)), campaigns) is None


def test_a_bad_text_line_the_campaigns_half_passed_over_is_left_to_one(journal, tmp_path,
                                                                       monkeypatch):
    from streams.cli import audit as inspect

    campaigns, events = journal
    monkeypatch.setattr(inspect, "TWO_READERS_FROM", 0)
    path = write(tmp_path, events[:500], extra=[b'{"type":"TextReceived","v":2}\n'])
    assert _two_readers(path, campaigns) is None


def test_the_what_if_reads_the_texts_through_two_processes_too(journal, tmp_path,
                                                                monkeypatch, capsys):
    from streams import cli
    from streams.cli import audit as inspect

    _, events = journal
    path = write(tmp_path, events)
    config = tmp_path / "campaigns.toml"
    config.write_text(TOML.format(paris_reply=PARIS_REPLY, lyon_reply=LYON_REPLY,
                                  paris_eur=f"{0.16 * 0.6 * 6000 / 4 * 0.5:.2f}"))
    other = tmp_path / "other.toml"
    other.write_text(TOML.format(paris_reply=PARIS_REPLY, lyon_reply=LYON_REPLY,
                                 paris_eur="20.00"))
    argv = ["audit", "--config", str(config), "--file", str(path), "--what-if", str(other),
            "--json"]
    outputs = []
    for processes in ("1", "2"):
        monkeypatch.setenv("ANTIRELOU_AUDIT_PROCESSES", processes)
        monkeypatch.setattr(inspect, "TWO_READERS_FROM", 0)
        assert cli.main(argv) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and '"what_if"' in outputs[0]


def test_the_campaigns_reader_passes_over_only_the_lines_plainly_texts():
    import io

    from streams.cli.audit import TEXT_LINE

    text = (b'{"type":"TextReceived","v":2,"message_id":"m","campaign_id":"c","sender":"s",'
            b'"body":"b","occurred_at":1,"number_kind":"mobile","country":"FR","prefix":""}')
    sent = (b'{"type":"ReplySent","v":1,"message_id":"m","campaign_id":"c","sender":"s",'
            b'"provider_message_id":null,"price_micros":null,"dry_run":true,"occurred_at":2}')
    # A text whose line holds a second "type" key (the last counts), or an escaped one.
    sent_fields = b'"v":1,"provider_message_id":null,"price_micros":null,"dry_run":true}'
    twice = text[:-1] + b',"type":"ReplySent",' + sent_fields
    escaped = text[:-1] + b',"\\u0074ype":"ReplySent",' + sent_fields
    f = io.BytesIO(b"\n".join([text, sent, twice, escaped]) + b"\n")
    got = [e for _, e in read_lines(f, "j", pass_over=TEXT_LINE)]
    assert [None if e is None else e.TYPE for e in got] == [
        None, "ReplySent", "ReplySent", "ReplySent"]


@pytest.mark.parametrize("kind", ["clean", "verdict", "lost"])
def test_two_processes_reading_the_file_give_the_one_audit_result(journal, tmp_path,
                                                                  monkeypatch, kind):
    import argparse

    from streams.cli import audit as inspect

    campaigns, events = journal
    events = events if kind == "clean" else tampered(events, kind)
    path = write(tmp_path, events)
    monkeypatch.setattr(inspect, "TWO_READERS_FROM", 0)
    run = Audit(campaigns)
    origins = inspect.Origins(from_file=True)
    result = inspect.two_readers(argparse.Namespace(file=str(path), command="audit"), run,
                                  lambda evs, into=run: into.feed(evs), origins)
    assert result is not None  # the two processes did it
    assert (render_text(result), to_json(result), dataclasses.asdict(result.counters)) == (
        lambda one: (one[0], one[1], one[3]))(outcome(events, campaigns, apart=False))


def test_a_bad_file_is_left_to_the_one_process_audit(journal, tmp_path, monkeypatch):
    import argparse

    from streams.cli import audit as inspect

    campaigns, events = journal
    path = write(tmp_path, events[:500], extra=[b'{"type":"ReplySent","v":1,"message\n'])
    monkeypatch.setattr(inspect, "TWO_READERS_FROM", 0)
    run = Audit(campaigns)
    assert inspect.two_readers(argparse.Namespace(file=str(path), command="audit"), run,
                                lambda evs, into=run: into.feed(evs),
                                inspect.Origins(from_file=True)) is None


def test_the_screening_reader_decodes_every_line_whose_type_it_cannot_be_sure_of():
    import io

    from streams.cli.audit import screening_events

    text = (b'{"type":"TextReceived","v":2,"message_id":"m","campaign_id":"c","sender":"s",'
            b'"body":"b","occurred_at":1,"number_kind":"mobile","country":"FR","prefix":""}')
    sent = (b'{"type":"ReplyFailed","v":2,"message_id":"m","campaign_id":"c","sender":"s",'
            b'"error":"e","retryable":false,"occurred_at":2,"attempts":1}')
    # A second "type" key (the last one counts), and one written with an escape.
    twice = sent[:-1] + b',"type":"TextReceived","v":2,"body":"b","number_kind":"mobile",' \
        b'"country":"FR","prefix":""}'
    escaped = sent[:-1] + b',"\\u0074ype":"TextReceived","v":2,"body":"b",' \
        b'"number_kind":"mobile","country":"FR","prefix":""}'
    lines = [text, sent, b"", twice, escaped]
    got = list(screening_events(io.BytesIO(b"\n".join(lines) + b"\n")))
    assert [None if e is None else e.TYPE for e in got] == [
        "TextReceived", None, "TextReceived", "TextReceived"]  # the blank line: no event


def test_halves_that_read_different_journals_give_no_result(journal):
    campaigns, events = journal
    screening = Audit(campaigns, part="screening")
    screening.feed(events[:-1])  # e.g. a file written to between the two readings
    run = Audit(campaigns, part="campaigns")
    run.feed(events)
    part = screening.screening_part()
    with pytest.raises(ValueError, match="read"):
        run.result(screening=lambda: part)


# --- the campaigns half reads the verdicts as notes ----------------------------------------


def as_notes(events):
    """The events as the campaigns half's reader gives them: each verdict as its note."""
    from schemas import codec
    from streams.audit import verdict_note

    return [verdict_note(codec.to_dict(e)) if type(e) is SenderScreened else e for e in events]


@pytest.mark.parametrize("kind", ["clean", "cost", "verdict", "decision_prefix"])
def test_a_campaigns_half_fed_verdict_notes_gives_what_it_gives_fed_verdicts(journal, kind):
    from streams.audit import VerdictNote

    campaigns, events = journal
    events = events if kind == "clean" else tampered(events, kind)
    noted = as_notes(events)
    assert sum(type(e) is VerdictNote for e in noted) == sum(
        type(e) is SenderScreened for e in events) > 0
    wanted = {"TextReceived", "SenderScreened", "SenderReopened", "PolicyChanged", "ReplySent"}
    outcomes = []
    for fed in (events, noted):
        screening = Audit(campaigns, part="screening")
        screening.feed(e if e.TYPE in wanted else None for e in events)
        part = screening.screening_part()
        run = Audit(campaigns, part="campaigns")
        run.feed(fed)
        try:
            result = run.result(screening=lambda part=part: part)
        except PrefixUnconfirmed as exc:
            outcomes.append(("unconfirmed", str(exc)))
            continue
        outcomes.append((to_json(result), [m.to_json() for m in result.mismatches],
                         dataclasses.asdict(result.counters)))
    assert outcomes[0] == outcomes[1]
    if kind == "decision_prefix":
        assert outcomes[0][0] == "unconfirmed"
    else:
        assert outcomes[0][1:] == outcome(events, campaigns, apart=False)[2:]


@pytest.mark.parametrize("part", ["all", "screening"])
def test_a_verdict_note_is_for_a_campaigns_half_only(journal, part):
    campaigns, events = journal
    run = Audit(campaigns, part=part)
    with pytest.raises(MalformedEvent, match="VerdictNote"):
        run.feed(as_notes(events[:200]))


def test_the_campaigns_reader_notes_only_the_lines_plainly_current_verdicts():
    import io

    from infra.journal import BadLine
    from streams.audit import VerdictNote, verdict_note
    from streams.cli.audit import VERDICT_LINE

    verdict = (b'{"type":"SenderScreened","v":3,"message_id":"m","campaign_id":"c",'
               b'"sender":"s","verdict":"forward","reason":null,"texts_from_sender":1,'
               b'"occurred_at":1,"policy_version":1,"words":"=0a1b2c3d","other_campaigns":0}')
    old = verdict.replace(b'"v":3', b'"v":1').replace(
        b',"policy_version":1,"words":"=0a1b2c3d","other_campaigns":0', b"")
    escaped = verdict.replace(b'"sender":"s"', b'"sender":"\\u0073"')
    twice = verdict[:-1] + b',"type":"ReplySent","v":1,"provider_message_id":null,' \
        b'"price_micros":null,"dry_run":true}'
    lines = [verdict, old, escaped, twice]
    got = [e for _, e in read_lines(io.BytesIO(b"\n".join(lines) + b"\n"), "j",
                                          noted=(VERDICT_LINE, verdict_note))]
    assert [type(e).__name__ for e in got] == [
        "VerdictNote", "SenderScreened", "SenderScreened", "ReplySent"]
    assert got[0] == VerdictNote("m", "c", "s", "forward", None, 1, 1, "=0a1b2c3d", 0)
    assert got[1].policy_version == 1 and got[2].sender == "s"
    # A verdict that is not a whole one is not noted: decoded, and refused as without notes.
    broken = verdict.replace(b',"texts_from_sender":1', b"")
    for noted in (None, (VERDICT_LINE, verdict_note)):
        with pytest.raises(BadLine, match="missing field 'texts_from_sender'"):
            list(read_lines(io.BytesIO(broken + b"\n"), "j", noted=noted))


@pytest.mark.parametrize("kind", ["clean", "lost", "decision_prefix"])
def test_the_cli_says_the_same_in_two_processes_as_in_one(journal, tmp_path, monkeypatch,
                                                         capfd, kind):
    # Report, exit status and stderr (progress lines included, said once even when the two
    # processes leave the journal to one: decision_prefix) are those of one process.
    from streams import cli
    from streams.cli import audit as inspect
    from streams.cli import common

    _, events = journal
    events = events if kind == "clean" else tampered(events, kind)
    path = write(tmp_path, events)
    config = tmp_path / "campaigns.toml"
    config.write_text(TOML.format(paris_reply=PARIS_REPLY, lyon_reply=LYON_REPLY,
                                  paris_eur=f"{0.16 * 0.6 * 6000 / 4 * 0.5:.2f}"))
    monkeypatch.setattr(inspect, "TWO_READERS_FROM", 0)
    monkeypatch.setattr(common, "PROGRESS_EVERY", 2000)
    said = []
    for processes in ("1", "2"):
        monkeypatch.setenv("ANTIRELOU_AUDIT_PROCESSES", processes)
        code = cli.main(["audit", "--config", str(config), "--file", str(path)])
        out, err = capfd.readouterr()
        said.append((code, out, err))
    assert said[0] == said[1]
    assert said[0][0] == (0 if kind == "clean" else 1)
    assert said[0][2].count("events read") == len(events) // 2000 > 0
