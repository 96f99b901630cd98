"""The pipeline benchmark's pure helpers (the benchmark itself needs a broker and Ray and is
run by hand: bash tests/benchmarks/run.sh). No timing is asserted."""

from tests.benchmarks.bench_pipeline import (
    CONFIG,
    distinct_sender_texts,
    encode,
    expected,
    flood_texts,
    top_of_profile,
)


def test_the_flood_mix_is_mostly_suppressions_with_some_replies(tmp_path):
    config = tmp_path / "campaigns.toml"
    config.write_text(CONFIG.format(reply="Non, c'est non."))
    enc = encode(flood_texts(2000, seed=1))
    want = expected(enc.commands, config)
    assert want["texts"] == len(enc.values) == 2000
    assert 0 < want["forwarded"] < want["texts"] / 2
    # Every text journals TextReceived + SenderScreened; every forwarded one a decision;
    # every approved one a ReplyAttempted and a ReplySent.
    assert want["events"] == 2 * want["texts"] + want["forwarded"] + 2 * want["approved"]


def test_distinct_senders_are_distinct():
    texts = distinct_sender_texts(1000, seed=3)
    assert len({t.sender for t in texts}) == 1000


def test_profile_summary_reads_collapsed_stacks(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("main (a.py:1);work (streams/app.py:2) 3\nmain (a.py:1);idle (x.py:1) 1\n")
    summary = top_of_profile(path)
    assert "4 samples" in summary and "75.0%  work" in summary
