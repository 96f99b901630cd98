"""A campaign shard and the journal behind it, without Ray: a command asked again before its
answer was journaled gets the whole answer again (side events too), and a snapshot never
holds a state past what the journal holds (actors/remote.py ``JournalShard``)."""

from __future__ import annotations

from actors.remote import JournalShard
from actors.snapshot import decode_snapshot
from schemas.commands import RequestReply, Tick
from schemas.events import ReplyApproved, SurgeStarted
from tests.factories import campaign_2017 as campaign

T0 = 1_800_000_000_000


class Journal:
    """The journal and snapshot topics a shard recovers from (a JournalSource)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int, object]] = []

    def write(self, events) -> None:
        for e in events:
            self.records.append((0, len(self.records), e))

    async def events(self, topic, start=None):
        first = (start or {}).get(0, 0)
        for partition, offset, event in list(self.records):
            if offset >= first:
                yield partition, offset, event

    async def latest_by_key(self, topic):
        return {}


def requests(n: int, first: int = 0, at: int = T0) -> list[RequestReply]:
    return [RequestReply(message_id=f"m{i}", campaign_id="paris", sender=f"s_{i}",
                         occurred_at=at + i, reply_to="sealed", prefix="33-612")
            for i in range(first, first + n)]


def shard(journal: Journal, policy=(("surge_multiple", 2), ("surge_min_rate", 3))
          ) -> JournalShard:
    # By default surge mode on: a burst of first texts starts a surge, a side event of a
    # request (and each request waits its safety delay: deferred).
    return JournalShard([campaign(policy=policy)], journal, "journal", "snapshots")


ANSWERED_AT_ONCE = (("reply_delay_ms", 0),)  # no safety delay: a request is approved


def test_a_batch_asked_again_before_it_was_journaled_gets_the_same_events_side_events_too():
    # Issue 29 item 1: the worker's journal write failed after the shard decided; the batch
    # comes again. Asked again, a request was answered with its decision alone: the
    # SurgeStarted it caused was never journaled, and the audit failed on the seq gap.
    journal = Journal()
    s = shard(journal)
    first = s.decide(requests(8), known={})
    assert any(isinstance(e, SurgeStarted) for e in first)
    again = s.decide(requests(8), known={})
    assert again == first
    seqs = sorted(e.seq for e in again if getattr(e, "seq", 0))
    assert seqs == list(range(1, len(seqs) + 1))
    # Once journaled (the next call says so), the next requests go on from there.
    journal.write(first)
    more = s.decide(requests(2, first=8), known={"paris": seqs[-1]})
    assert min(e.seq for e in more) == seqs[-1] + 1


def test_a_batch_cut_otherwise_when_fetched_again_still_gets_each_answer_once():
    journal = Journal()
    s = shard(journal)
    first = s.decide(requests(8), known={})
    halves = s.decide(requests(3), known={}) + s.decide(requests(5, first=3), known={})
    assert halves == first


def test_a_snapshot_waits_until_the_journal_holds_the_state():
    journal = Journal()
    s = shard(journal, ANSWERED_AT_ONCE)
    approved = s.decide(requests(1), known={})
    (decision,) = approved
    assert isinstance(decision, ReplyApproved)
    # Asked while the decision is not journaled: no snapshot (it would hold the seq and
    # the balance of a decision the journal never got).
    assert s.snapshot({0: 7}, {}) == []
    # The worker journals it and says so with its next call, which decides more (under
    # load the shard is always ahead): the snapshot is taken at that call, before its
    # decisions, with the offsets it was asked with (read before), and given next time.
    journal.write(approved)
    (later,) = s.decide(requests(1, first=1), known={"paris": decision.seq})
    ((cid, seq, record),) = s.snapshot({0: 9}, {})
    state, offsets = decode_snapshot(record)
    assert (cid, seq, state.seq, offsets) == ("paris", 1, 1, {0: 7})
    assert state.balance_micros == decision.balance_after_micros
    # Once the later one is journaled too, the state now, with the offsets of the ask.
    journal.write([later])
    s.decide([Tick(campaign_id="paris", occurred_at=T0 + 10)], known={"paris": later.seq})
    ((_, seq, record),) = s.snapshot({0: 11}, {"paris": 1})
    assert (seq, decode_snapshot(record)[1]) == (2, {0: 11})
    # Nothing changed since: nothing to take.
    assert s.snapshot({0: 12}, {"paris": 2}) == []


def test_a_shard_restarted_on_the_journal_takes_what_it_holds_as_journaled():
    journal = Journal()
    first = shard(journal).decide(requests(3), known={})
    journal.write(first)
    again = shard(journal)  # Ray restarted it: it read the journal
    ((_, seq, _),) = again.snapshot({0: 3}, {})
    assert seq == max(e.seq for e in first)
