"""The campaign half of the audit replay: every campaign's journaled decisions decided again
by the core, in ``seq`` order, each from the command that gave it, rebuilt by the pipeline
glue (``streams.rules.pipeline``: a request from its forwarded verdict, a tick, a review, a
settlement, an operator command). ``Audit`` (``streams.audit.replay``) files the journal's
events here while it reads them, then asks for the replay; campaigns may be replayed apart
(``replay_apart``, in another process) and their replays joined (``replay_all``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from actors.campaign import (
    CampaignState,
    decide_control,
    decide_reply,
    decide_review,
    decide_settlement,
    decide_tick,
    evolve_campaign,
    idempotency_key,
)
from actors.shard import CampaignShard
from schemas import codec, events
from schemas.campaign import Campaign
from schemas.events import ReplyApproved, ReplyDenied, SenderScreened
from schemas.reasons import ALREADY_ANSWERED, FLOODER, OTHER_CAMPAIGN, TEXTED_AGAIN, TICK_EXPIRIES
from streams.audit.report import Tally
from streams.audit.results import CampaignReplay, Counters, Mismatch
from streams.rules.pipeline import (
    control_behind,
    priced,
    refund,
    request_for,
    review_behind,
    tick,
)


class CampaignAudit:
    """What the campaign replay needs, filed as the journal is read, and the replay.

    The facts a command is rebuilt from: each message id's first forward verdict
    (``forwarded``), its text's number range (``forward_prefix``), the verdicts a review may
    follow (``reviewable``), the replies not sent (``failed``) and the prices reported
    (``prices``). The events to decide again: per campaign, ``(seq, position, event)``
    (``events``), and the unknown-campaign denials (``unknown_denials``, seq 0)."""

    def __init__(self, campaigns: dict[str, Campaign], keep: int, counters: Counters,
                 tally: Tally, screen: bool) -> None:
        """``screen``: False for a ``"campaigns"`` half, whose requests take the number range
        their decision recorded (``prefixes_taken``, to be confirmed by the other half)."""
        self.campaigns = campaigns
        self.keep = keep
        self.counters = counters
        self.tally = tally
        self.screen = screen
        self.forwarded: dict[str, SenderScreened] = {}  # message id -> first forward verdict
        self.forward_prefix: dict[str, str] = {}  # message id -> the text's number range
        # A "campaigns" half's requests decided with their decision's number range:
        # (message id, range), checked against the screening half's ranges at the end.
        self.prefixes_taken: list[tuple[str, str]] = []
        self.events: dict[str, list[tuple[int, int, Any]]] = {}  # (seq, pos, event)
        self.unknown_denials: list[tuple[int, ReplyDenied]] = []
        # The facts settlements are decided on: replies not sent; prices reported.
        self.failed: set[str] = set()
        self.prices: dict[str, set[int]] = {}
        self.reviewable: set[tuple[str, str, str]] = set()  # (sender, campaign, reason)
        # A sender's first campaign; the senders who texted more than one (other_campaign).
        self.first_campaign: dict[str, str] = {}
        self.several_campaigns: set[str] = set()
        self.found: list[Mismatch] = []  # the campaign mismatches, while replaying

    def work(self) -> dict[str, int]:
        """Each campaign's seq'd events still to replay (counts)."""
        return {cid: len(items) for cid, items in self.events.items()}

    def replay_apart(self, campaign_ids: Iterable[str]) -> dict[str, CampaignReplay]:
        """These campaigns' replays, as ``result(apart=...)`` takes them. Meant for a copy of
        the fed audit in another process (it changes this one's tallies and counters). A
        campaign whose replay raises is left out: ``result()`` replays it itself, and so
        raises the same error at the same point (the caller holds the GC paused)."""
        counters = self.counters
        out: dict[str, CampaignReplay] = {}
        for cid in campaign_ids:
            items = self.events[cid]
            before = (counters.mismatches, counters.redelivered, counters.campaign_events)
            self.tally = Tally()
            found: list[Mismatch] = []
            self.found = found
            try:
                decided = self._replay_one(cid, items)
            except Exception:  # noqa: BLE001 - left out: result() replays it itself
                continue
            position = {id(ev): pos for _, pos, ev in items}
            out[cid] = CampaignReplay(
                found, counters.mismatches - before[0], counters.redelivered - before[1],
                counters.campaign_events - before[2],
                [(key, position[id(ev)]) for key, ev in decided.items()], self.tally.flat)
        return out

    def replay_all(self, found: list[Mismatch],
                          apart: Callable[[], dict[str, CampaignReplay]] | None = None,
                          apart_ids: frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
        """Every campaign's seq'd events decided again, then the unknown-campaign denials;
        returns, per campaign, idempotency key -> recorded event. The campaigns are
        independent: each has its own mismatches (in seq order, at most ``keep``), joined in
        campaign order; the first campaign (in that order) with a malformed event raises."""
        ids = sorted(self.events)
        replays: dict[str, CampaignReplay | Exception] = {}
        for cid in ids:  # this audit's own campaigns first, while the others are replayed
            if cid not in apart_ids:
                replays[cid] = self._replay_here(cid)
        if apart_ids:
            given = apart() if apart is not None else {}
            for cid in ids:
                if cid in apart_ids:
                    replays[cid] = given[cid] if cid in given else self._replay_here(cid)
        decided_by_campaign: dict[str, dict[str, Any]] = {}
        counters = self.counters
        for cid in ids:
            replay = replays[cid]
            if isinstance(replay, Exception):
                raise replay  # the first campaign, in order, that could not be replayed
            if isinstance(replay.decided, dict):  # replayed here: the events themselves
                decided_by_campaign[cid] = replay.decided
            else:
                event_at = {pos: ev for _, pos, ev in self.events[cid]}
                decided_by_campaign[cid] = {key: event_at[pos] for key, pos in replay.decided}
                counters.mismatches += replay.mismatches
                counters.redelivered += replay.redelivered
                counters.campaign_events += replay.campaign_events
                self.tally.add(replay.days)
            room = self.keep - len(found)
            if room > 0:
                found += replay.found[:room]
        self.found = found
        self._replay_unknown_denials(decided_by_campaign)
        return decided_by_campaign

    def _replay_here(self, cid: str) -> CampaignReplay | Exception:
        """One campaign replayed in this audit (its counters and tallies counted here), or
        what stopped it, raised in campaign order by the caller."""
        found: list[Mismatch] = []
        self.found = found
        try:
            decided = self._replay_one(cid, self.events[cid])
        except Exception as exc:  # noqa: BLE001 - raised in order by _replay_campaigns
            return exc
        return CampaignReplay(found, decided=decided)  # type: ignore[arg-type]

    def mismatch(self, kind: str, key: str, expected: Any, recorded: Any, pos: int) -> None:
        """A campaign mismatch (counted; kept while fewer than ``keep``)."""
        self.counters.mismatches += 1
        found = self.found
        if len(found) < self.keep:
            found.append(Mismatch(
                kind, key, None if expected is None else codec.to_dict(expected),
                None if recorded is None else codec.to_dict(recorded), pos,
            ))

    def _replay_one(self, cid: str, items: list[tuple[int, int, Any]]) -> dict[str, Any]:
        counters = self.counters
        tally = self.tally.campaign_event
        mismatch = self.mismatch
        items.sort(key=itemgetter(0, 1))
        campaign = self.campaigns.get(cid)
        state = CampaignState.opening(campaign) if campaign is not None else None
        decided: dict[str, Any] = {}  # idempotency key -> recorded event
        last_seq = None
        last: Any = None
        decided_n = 0
        # The rest of the events one command gave (a request and the surge it started, a
        # tick's releases): compared in seq order, not decided again.
        following: list[Any] = []
        for seq, pos, ev in items:
            if seq == last_seq:
                if ev == last:
                    counters.redelivered += 1
                else:
                    mismatch("conflicting", idempotency_key(ev), last, ev, pos)
                continue
            # A new seq. Even for a key decided before: the core remembers only its last
            # REMEMBERED_DECISIONS keys, so a late redelivery is legitimately decided
            # afresh; the core itself says whether that was right.
            t = type(ev)
            key = ev.message_id if t is ReplyApproved or t is ReplyDenied else idempotency_key(ev)
            decided[key] = ev
            last_seq, last = seq, ev
            tally(ev)
            if state is None:
                mismatch("unknown_campaign", key, None, ev, pos)
                continue
            decided_n += 1
            if following:
                nxt = following.pop()
                if nxt != ev:
                    mismatch("decision", key, nxt, ev, pos)
                continue
            expected = self._decide_again(state, campaign, t, key, ev, pos)
            for e in expected:
                evolve_campaign(state, e)
            if not expected or expected[0] != ev:
                mismatch("decision", key, expected[0] if expected else None, ev, pos)
            if len(expected) > 1:  # reversed: the next one is popped from the end
                following = expected[:0:-1]
        for missing in reversed(following):  # the core decided more than the journal holds
            mismatch("decision", idempotency_key(missing), missing, None, -1)
        counters.campaign_events += decided_n
        return decided

    def _decide_again(self, state: CampaignState, campaign: Campaign, t: type, key: str,
                      ev: Any, pos: int) -> list[Any]:
        """What the core decides for the command that gave ``ev`` (the first event of it)."""
        cid = campaign.id
        mismatch = self.mismatch
        if (t is ReplyApproved and ev.deferred_at is None) or t is ReplyDenied or t is events.ReplyDeferred:
            # A request (most events): rebuilt from its forwarded verdict and text's range.
            fwd = self.forwarded.get(key)
            if fwd is None or fwd.campaign_id != cid:
                mismatch("no_forwarded_text", key, None, ev, pos)
                fwd = ev  # decide from the decision's own fields: no cascade
            return decide_reply(state, request_for(fwd, self._prefix_of(key, ev)), campaign)
        if (t is ReplyApproved and ev.deferred_at is not None) or t is events.SurgeEnded or (
                t is events.ReplyExpired and ev.reason in TICK_EXPIRIES) or t is events.ReplyHeldBack:
            # A tick: its time is the events' time.
            return decide_tick(state, tick(cid, ev.occurred_at), campaign)
        if t is events.ReplyPromoted or (t is events.ReplyExpired
                                          and ev.reason in (FLOODER, OTHER_CAMPAIGN)):
            # Screening's review of a queued request: it must follow from a verdict.
            reason = ev.reason if t is events.ReplyExpired else TEXTED_AGAIN
            if reason == OTHER_CAMPAIGN:
                reviewable = ev.sender in self.several_campaigns
            else:
                reviewable = ((ev.sender, "", FLOODER) if reason == FLOODER
                              else (ev.sender, cid, ALREADY_ANSWERED)) in self.reviewable
            if not reviewable:
                mismatch("review_without_verdict", key, None, ev, pos)
            return decide_review(state, review_behind(ev, reason))
        if t is events.ReplyRefunded:
            if ev.message_id not in self.failed:
                mismatch("refund_without_failure", key, None, ev, pos)
            return decide_settlement(state, refund(ev, ev.occurred_at))
        if t is events.ReplyCostReconciled:
            if ev.actual_micros not in self.prices.get(ev.message_id, ()):
                mismatch("price_without_report", key, None, ev, pos)
            return decide_settlement(state, priced(ev, ev.actual_micros, ev.occurred_at))
        if t is events.PolicyChanged or t is events.BudgetCredited:
            return decide_control(state, control_behind(ev))
        return []  # a SurgeStarted or queue_full expiry with no decision before it

    def _prefix_of(self, key: str, ev: Any) -> str:
        """The number range of the text behind request ``key``: its text's, or in a
        ``"campaigns"`` half (the texts are the other half's) the range its decision ``ev``
        recorded, taken on trust until the other half's part confirms it (``_finish``)."""
        if self.screen:
            return self.forward_prefix.get(key, "")
        self.prefixes_taken.append((key, ev.prefix))
        return ev.prefix

    def _replay_unknown_denials(self, decided_by_campaign: dict[str, dict[str, Any]]) -> None:
        """ReplyDenied(unknown_campaign): seq 0, outside every campaign's order."""
        counters = self.counters
        mismatch = self.mismatch
        nobody = CampaignShard(())
        self.unknown_denials.sort(key=itemgetter(0))
        for pos, ev in self.unknown_denials:
            decided = decided_by_campaign.setdefault(ev.campaign_id, {})
            earlier = decided.get(ev.message_id)
            if earlier is not None:
                if earlier == ev:
                    counters.redelivered += 1
                else:
                    mismatch("conflicting", ev.message_id, earlier, ev, pos)
                continue
            decided[ev.message_id] = ev
            counters.unknown_campaign += 1
            self.tally.campaign_event(ev)
            if ev.campaign_id in self.campaigns:
                mismatch("unknown_campaign", ev.message_id, None, ev, pos)
                continue
            fwd = self.forwarded.get(ev.message_id)
            if fwd is None or fwd.campaign_id != ev.campaign_id:
                mismatch("no_forwarded_text", ev.message_id, None, ev, pos)
                fwd = ev
            expected = nobody.decide([request_for(fwd, self._prefix_of(ev.message_id, ev))])
            if expected[0] != ev:
                mismatch("decision", ev.message_id, expected[0], ev, pos)


