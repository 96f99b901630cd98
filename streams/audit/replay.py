"""The audit replay proper: the ``Audit`` class (feed, finish, the campaign replay) and
``audit()``. See the package docstring for what is checked."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any, NamedTuple

from actors.campaign import (
    initial_policy,
)
from schemas import codec
from schemas.campaign import Campaign
from schemas.events import (
    BudgetCredited,
    ControlRejected,
    DeliveryReported,
    PolicyChanged,
    RecordPoisoned,
    ReplyApproved,
    ReplyAttempted,
    ReplyCostReconciled,
    ReplyDeferred,
    ReplyDenied,
    ReplyExpired,
    ReplyFailed,
    ReplyHeldBack,
    ReplyPromoted,
    ReplyRefunded,
    ReplySent,
    ReplyUncertain,
    SenderReopened,
    SenderScreened,
    SurgeEnded,
    SurgeStarted,
    TextReceived,
    TextRejected,
)
from schemas.policy import PolicyChain
from schemas.reasons import (
    ALREADY_ANSWERED,
    DUPLICATE,
    FLOODER,
    UNKNOWN_CAMPAIGN,
)
from streams.audit.campaigns import CampaignAudit
from streams.audit.report import Tally, count_suppressed
from streams.audit.results import (
    DAY_MS,
    KEEP_MISMATCHES,
    UNATTEMPTED_AFTER_MS,
    AuditResult,
    CampaignReplay,
    Counters,
    DayStats,
    MalformedEvent,
    Mismatch,
    PrefixUnconfirmed,
    ScreeningReplay,
)
from streams.rules.pipeline import note_behind
from streams.rules.screening import (
    UNKNOWN_CAMPAIGN_POLICY,
    SenderState,
    decide_reopen,
    decide_screening,
    evolve_sender,
)

# --- the audit replay ---------------------------------------------------------------------


class VerdictNote(NamedTuple):
    """What a ``"campaigns"`` half reads of a verdict (``SenderScreened``): the journal
    reader may give it these for the verdicts instead of the events (``verdict_note``),
    about half the cost of making one; the other half, which screens, reads the verdicts
    themselves."""

    message_id: str
    campaign_id: str
    sender: str
    verdict: str
    reason: str | None
    texts_from_sender: int
    occurred_at: int
    words: str
    other_campaigns: int


_NOTE_VALUES = itemgetter(*VerdictNote._fields)
_new_note = tuple.__new__


def verdict_note(payload: dict[str, Any]) -> VerdictNote | None:
    """The ``VerdictNote`` of a decoded ``SenderScreened`` line's payload of the current
    version (its type as the reader knows it); None for anything else (to be decoded as an
    event, which says what is wrong with it)."""
    v = payload.get("v")
    if v.__class__ is not int or v != SenderScreened.SCHEMA_VERSION:
        return None
    try:
        return _new_note(VerdictNote, _NOTE_VALUES(payload))
    except KeyError:
        return None



@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The replay keeps hundreds of thousands of long-lived objects (states, verdicts,
    decisions) and makes no reference cycles: the cyclic GC would only walk them again and
    again. Paused while replaying; the process's setting is restored after. A reader of a
    whole journal holds it paused from the first event to the report (``antirelou audit``):
    resumed between ``feed`` and ``result``, it would walk them all once more (a tenth of a
    second on 200k events)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Audit:
    """Feed decoded journal events (in journal order), then ask for the ``result()``.

    ``feed`` may be called several times (e.g. with chunks read from Kafka); positions
    continue across calls. ``audit(events, campaigns)`` does both at once.
    """

    def __init__(self, campaigns: Iterable[Campaign], keep: int = KEEP_MISMATCHES,
                 part: str = "all") -> None:
        """``part``: ``"all"``, the whole audit; or the audit in two halves fed the same
        journal (e.g. by two processes): ``"screening"``, the screening replay alone
        (``screening_part()``: it may be given None for the events other than texts,
        verdicts, reopenings, policy changes and replies sent), and ``"campaigns"``,
        everything else, whose ``result(screening=...)`` takes the other half's part. The
        texts and the replies sent are the screening half's alone: a ``"campaigns"`` half
        passes over them (they may be given as None), takes their tallies and counts from
        the other half's part, and decides each request with the number range its decision
        recorded, which the other half's part must confirm (else ``result`` raises
        ``PrefixUnconfirmed``). It may be given the verdicts as ``VerdictNote``."""
        if part not in ("all", "screening", "campaigns"):
            raise ValueError(f"unknown audit part {part!r}")
        self.campaigns = {c.id: c for c in campaigns}
        self.keep = keep
        self._screen = part != "campaigns"
        self.counters = Counters()
        self._tally = Tally()
        self._senders: dict[str, SenderState] = {}
        # Texts not screened yet, per sender, in order: [(TextReceived, position)].
        self._awaiting: dict[str, list[tuple[TextReceived, int]]] = {}
        # Senders set aside until the pass ends: [(text, text position, screened, position)].
        self._deferred: dict[str, list[tuple[TextReceived | None, int, Any, int]]] = {}
        # Each known policy version, per campaign.
        self._policies = {c.id: PolicyChain(initial_policy(c)) for c in self.campaigns.values()}
        # What the campaign replay decides again, and the facts it decides on, filed there.
        self._campaigns = CampaignAudit(self.campaigns, keep, self.counters, self._tally,
                                        self._screen)
        # Approved replies and those the send stage got to (attempted, or an outcome).
        self._approved_at: dict[str, int] = {}
        self._attempted: set[str] = set()
        self._last_send_at = 0
        # Screening's reopenings, and the verdicts a review of a queued request may follow.
        self._reopened: list[tuple[SenderReopened, int]] = []
        self._poisoned: set[tuple[str, str]] = set()  # requests passed over (RecordPoisoned)
        self._screening_mismatches: list[Mismatch] = []
        self._held: tuple[TextReceived | None, int] = (None, -1)
        self._position = 0
        self._result: AuditResult | None = None

    # The hot loop: one pass, dict lookups, no copies.
    def feed(self, events: Iterable[Any]) -> None:
        if self._result is not None:
            raise RuntimeError("feed() after result()")
        awaiting = self._awaiting
        campaign_events = self._campaigns.events
        unknown_denials = self._campaigns.unknown_denials
        flat = self._tally.flat
        counters = self.counters
        screened, take_awaiting, file = self._screened, self._take_awaiting, self._file
        # The last text, not yet parked in ``awaiting``: its verdict usually comes next.
        held, held_pos = self._held
        pos = self._position - 1
        texts = screenings = 0
        texts_here = self._screen  # a "campaigns" half passes over the texts
        gc_was_enabled = gc.isenabled()
        gc.disable()  # see gc_paused
        try:
            for pos, ev in enumerate(events, self._position):
                t = type(ev)
                if t is TextReceived:
                    if not texts_here:
                        continue
                    texts += 1
                    key = (ev.campaign_id, ev.occurred_at // DAY_MS)
                    s = flat.get(key)
                    if s is None:
                        s = flat[key] = DayStats()
                    s.texts_in += 1
                    if held is not None:  # two texts before a verdict (rare): park the first
                        awaiting.setdefault(held.sender, []).append((held, held_pos))
                    held, held_pos = ev, pos
                elif t is SenderScreened:
                    screenings += 1
                    # The text this verdict answers: the sender's first unscreened one.
                    if (held is not None and held.message_id == ev.message_id
                            and held.sender == ev.sender and ev.sender not in awaiting):
                        text, held = held, None
                        screened(ev, pos, text, held_pos)
                        continue
                    if held is not None and held.sender == ev.sender:
                        awaiting.setdefault(held.sender, []).append((held, held_pos))
                        held = None
                    screened(ev, pos, *take_awaiting(ev.sender, ev.message_id))
                elif t is ReplyApproved or t is ReplyDenied:
                    if t is ReplyApproved:
                        self._approved_at[ev.message_id] = ev.occurred_at
                        if ev.occurred_at > self._last_send_at:
                            self._last_send_at = ev.occurred_at
                    if t is ReplyDenied and ev.seq == 0 and ev.reason == UNKNOWN_CAMPAIGN:
                        unknown_denials.append((pos, ev))
                        continue
                    items = campaign_events.get(ev.campaign_id)
                    if items is None:
                        campaign_events[ev.campaign_id] = [(ev.seq, pos, ev)]
                    else:
                        items.append((ev.seq, pos, ev))
                elif ev is None:  # an event the other half reads (a half's reader passed it)
                    continue
                elif t is VerdictNote:  # a verdict, for a "campaigns" half only
                    if self._screen:
                        raise TypeError("a VerdictNote is for a 'campaigns' half only")
                    screenings += 1
                    self._note_verdict(ev)
                else:
                    file(t, ev, pos)
        except (TypeError, AttributeError) as exc:
            raise MalformedEvent(pos, f"{type(exc).__name__}: {exc}") from None
        finally:
            if gc_was_enabled:
                gc.enable()
            self._held = (held, held_pos)
            self._position = pos + 1
            counters.texts += texts
            counters.screenings += screenings

    def _take_awaiting(self, sender: str, mid: str) -> tuple[TextReceived | None, int]:
        """The sender's parked text of message id ``mid`` (taken out), else ``(None, -1)``."""
        awaiting = self._awaiting
        queue = awaiting.get(sender)
        if queue is not None:
            for i, (candidate, candidate_pos) in enumerate(queue):
                if candidate.message_id == mid:
                    if len(queue) == 1:
                        del awaiting[sender]
                    else:
                        del queue[i]
                    return candidate, candidate_pos
        return None, -1

    def _note_verdict(self, ev: SenderScreened | VerdictNote) -> bool:
        """What the campaign replay takes of a verdict: the first forward verdict of each
        message id, and the verdicts a review may follow. True: ``ev`` is the first forward
        verdict of its message id (``_screened`` keeps its text's range)."""
        reviewable = self._campaigns.reviewable
        if ev.reason == ALREADY_ANSWERED:
            reviewable.add((ev.sender, ev.campaign_id, ev.reason))
        elif ev.reason == FLOODER:  # withdraws his requests in every campaign
            reviewable.add((ev.sender, "", ev.reason))
        if self._campaigns.first_campaign.setdefault(ev.sender, ev.campaign_id) != ev.campaign_id:
            self._campaigns.several_campaigns.add(ev.sender)
        forwarded = self._campaigns.forwarded
        if ev.verdict == "forward" and ev.message_id not in forwarded:
            forwarded[ev.message_id] = ev  # type: ignore[assignment]
            return True
        return False

    def _screened(self, ev: SenderScreened, pos: int, text: TextReceived | None,
                  text_pos: int) -> None:
        """A recorded verdict and the text it answers (None: not found): decided again now,
        or set aside with the sender's later events when its policy version is not known yet."""
        sender = ev.sender
        mid = ev.message_id
        if self._note_verdict(ev) and text is not None and text.prefix:
            self._campaigns.forward_prefix[mid] = text.prefix
        if not self._screen:
            return  # the screening replay is the other half's
        deferred = self._deferred
        if deferred and sender in deferred:
            deferred[sender].append((text, text_pos, ev, pos))
            return
        policy = self._policy_of(ev)
        if policy is None:
            deferred[sender] = [(text, text_pos, ev, pos)]
            return
        if text is None:
            self._screening_mismatch("screening_without_text", mid, None, ev, pos)
            self._count_verdict(ev)
            return
        state = self._senders.get(sender)
        if state is None:
            state = self._senders[sender] = SenderState()
        self._screen_again(state, text, ev, policy, pos)

    def _file(self, t: type, ev: Any, pos: int) -> None:
        """The events other than texts, verdicts and decisions: filed for the campaign replay,
        tallied, or counted."""
        counters = self.counters
        if t is ReplySent or t is ReplyFailed:
            if t is ReplySent and not self._screen:
                return  # the replies sent are the screening half's to count
            self._attempted.add(ev.message_id)
            s = self._tally.day(ev.campaign_id, ev.occurred_at)
            if t is ReplySent:
                counters.replies_sent += 1
                s.sent += 1
            else:
                counters.replies_failed += 1
                s.failed += 1
                self._campaigns.failed.add(ev.message_id)
        elif t is ReplyRefunded or t is ReplyCostReconciled:
            self._campaigns.events.setdefault(ev.campaign_id, []).append((ev.seq, pos, ev))
        elif t is SenderReopened:
            self._reopen(ev, pos)
        elif t is DeliveryReported:
            if ev.price_micros is not None:
                self._campaigns.prices.setdefault(ev.message_id, set()).add(ev.price_micros)
        elif (t is PolicyChanged or t is BudgetCredited or t is ReplyDeferred
              or t is ReplyExpired or t is SurgeStarted or t is SurgeEnded
              or t is ReplyPromoted or t is ReplyHeldBack):
            self._campaigns.events.setdefault(ev.campaign_id, []).append((ev.seq, pos, ev))
            if t is PolicyChanged:
                self._learn_policy(ev)
        elif t is ControlRejected:
            counters.control_rejected += 1
        elif t is RecordPoisoned:
            # A request passed over as poison ends it as a denial does: it may reopen.
            self._poisoned.add((ev.campaign_id, ev.message_id))
            counters.other += 1
        elif t is TextRejected:
            counters.texts_rejected += 1
        elif t is ReplyAttempted or t is ReplyUncertain:
            self._attempted.add(ev.message_id)
            if ev.occurred_at > self._last_send_at:
                self._last_send_at = ev.occurred_at
            counters.other += 1
        else:
            counters.other += 1

    def _reopen(self, ev: SenderReopened, pos: int) -> None:
        """A sender reopened by screening: decided again on his replayed state, in his order;
        the outcome it names must be in the journal (checked at the end)."""
        self.counters.reopened += 1
        self._reopened.append((ev, pos))
        if not self._screen:
            return
        if ev.sender in self._deferred:
            self._deferred[ev.sender].append((None, -1, ev, pos))
            return
        self._reopen_again(self._senders.setdefault(ev.sender, SenderState()), ev, pos)

    def _reopen_again(self, state: SenderState, ev: SenderReopened, pos: int) -> None:
        expected = decide_reopen(state, note_behind(ev))
        for e in expected:
            evolve_sender(state, e)
        if expected != [ev]:
            self._screening_mismatch("reopen", ev.message_id, expected[0] if expected else None,
                                     ev, pos)

    def _screening_mismatch(self, kind: str, mid: str, expected: Any, recorded: Any, pos: int) -> None:
        self.counters.mismatches += 1
        if len(self._screening_mismatches) < self.keep:
            self._screening_mismatches.append(Mismatch(
                kind, mid, None if expected is None else codec.to_dict(expected),
                None if recorded is None else codec.to_dict(recorded), pos,
            ))

    def _learn_policy(self, ev: PolicyChanged) -> None:
        """Extend the campaign's version chain (versions may arrive out of order)."""
        chain = self._policies.get(ev.campaign_id)
        if chain is not None:  # else not in the config: the campaign replay reports it
            chain.learn(ev.version, ev.changes)

    def _policy_of(self, ev: SenderScreened) -> Any:
        """The policy a verdict names (its version), None while that version is not known."""
        chain = self._policies.get(ev.campaign_id)
        if chain is None:  # a campaign the config does not know
            return UNKNOWN_CAMPAIGN_POLICY if ev.policy_version == 1 else None
        return chain.policy_at(ev.policy_version)

    def _replay_deferred(self) -> None:
        """Senders whose verdict named a policy version not yet seen, now all are known."""
        self.counters.deferred_senders = len(self._deferred)
        for sender, items in self._deferred.items():
            state = self._senders.setdefault(sender, SenderState())
            for text, _, ev, pos in items:
                if type(ev) is SenderReopened:
                    self._reopen_again(state, ev, pos)
                    continue
                policy = self._policy_of(ev)
                if policy is None:
                    self._screening_mismatch("unknown_policy_version", ev.message_id, None, ev, pos)
                    # Nothing to decide with: keep what was recorded.
                    chain = self._policies.get(ev.campaign_id)
                    evolve_sender(state, ev, chain.latest if chain else UNKNOWN_CAMPAIGN_POLICY)
                    continue
                if text is None:
                    self._screening_mismatch("screening_without_text", ev.message_id, None, ev, pos)
                    self._count_verdict(ev)
                    continue
                self._screen_again(state, text, ev, policy, pos)
        self._deferred.clear()

    def _screen_again(self, state: SenderState, text: TextReceived, ev: SenderScreened,
                      policy: Any, pos: int) -> None:
        """Decide ``text`` again on the sender's replayed state and compare with ``ev``. A
        verdict the state already holds is a restatement: checked, counted once."""
        restated = ev.message_id in state.recent
        # The text is the command (its sender is the verdict's: matched by sender); no
        # ScreenText is built, decide_screening reads only the fields they share.
        expected = decide_screening(state, text, policy)[0]
        evolve_sender(state, expected, policy)
        if restated:
            self.counters.restated += 1
            # The same text given again (a retried webhook): one text in the day's count.
            self._tally.day(text.campaign_id, text.occurred_at).texts_in -= 1
            if ev.reason == DUPLICATE:  # how states before verdicts were kept restated
                return
        else:
            self._count_verdict(ev)
        if expected != ev:
            self._screening_mismatch("screening", ev.message_id, expected, ev, pos)

    def _count_verdict(self, ev: SenderScreened) -> None:
        if ev.verdict != "forward":
            count_suppressed(self._tally.day(ev.campaign_id, ev.occurred_at), ev.reason)

    def result(self, apart: Callable[[], dict[str, CampaignReplay]] | None = None,
               apart_ids: Iterable[str] = (),
               screening: Callable[[], ScreeningReplay] | None = None) -> AuditResult:
        """The audit's result. ``apart_ids``: campaigns replayed apart (``replay_apart``, on a
        copy of this audit in another process, meanwhile); ``apart()`` gives their replays
        when they are needed, after the deferred senders and this audit's own campaigns. A
        campaign ``apart()`` leaves out is replayed here. The result is the same either way.
        ``screening()``: the ``screening_part()`` of the ``"screening"`` half, for (and only
        for) a ``"campaigns"`` half."""
        if self._result is not None:
            return self._result
        if (screening is None) != self._screen:
            raise ValueError("result(screening=...) is for, and only for, a 'campaigns' half")
        with gc_paused():
            self._result = self._finish(apart, frozenset(apart_ids), screening)
        return self._result

    def screening_part(self) -> ScreeningReplay:
        """The ``"screening"`` half's result, for the other half's ``result(screening=...)``."""
        with gc_paused():
            try:
                self._finish_screening()
            except (TypeError, AttributeError) as exc:
                raise MalformedEvent(-1, f"{type(exc).__name__}: {exc}") from None
        c = self.counters
        return ScreeningReplay(
            self._screening_mismatches, c.mismatches, c.restated, c.deferred_senders,
            {key: (s.texts_in, s.suppressed, s.sent) for key, s in self._tally.flat.items()
             if s.texts_in or s.suppressed or s.sent},
            self._position, c.texts, self._campaigns.forward_prefix, c.replies_sent,
            self._attempted)

    def _finish_screening(self) -> None:
        """The end of the screening replay: the senders set aside, the texts never screened."""
        self._replay_deferred()
        held, held_pos = self._held
        if held is not None:
            self._awaiting.setdefault(held.sender, []).append((held, held_pos))
            self._held = (None, -1)
        for queue in self._awaiting.values():
            for text, pos in queue:
                self._screening_mismatch("text_without_screening", text.message_id,
                                         None, text, pos)
        self._screening_mismatches.sort(key=lambda m: m.position)

    def campaign_work(self) -> tuple[int, dict[str, int]]:
        """What ``result()`` has left to replay: the deferred senders' events, and each
        campaign's seq'd events (counts), to share the replay between processes."""
        return (sum(len(items) for items in self._deferred.values()), self._campaigns.work())

    def replay_apart(self, campaign_ids: Iterable[str]) -> dict[str, CampaignReplay]:
        """These campaigns' replays, as ``result(apart=...)`` takes them. Meant for a copy of
        the fed audit in another process (it changes this one's tallies and counters). A
        campaign whose replay raises is left out: ``result()`` replays it itself, and so
        raises the same error at the same point."""
        if not self._screen:
            raise ValueError("replay_apart() is not for a 'campaigns' half")
        with gc_paused():
            return self._campaigns.replay_apart(campaign_ids)

    def _finish(self, apart: Callable[[], dict[str, CampaignReplay]] | None,
                apart_ids: frozenset[str],
                screening: Callable[[], ScreeningReplay] | None = None) -> AuditResult:
        try:
            if screening is None:
                self._finish_screening()
            campaign_mismatches: list[Mismatch] = []
            decided = self._campaigns.replay_all(campaign_mismatches, apart, apart_ids)
            if screening is not None:  # the other half's, taken as if replayed here
                part = screening()
                if part.events != self._position:  # e.g. a file written to meanwhile
                    raise ValueError(f"the screening half read {part.events} events, "
                                     f"this one {self._position}")
                ranges = part.forward_prefix
                for key, prefix in self._campaigns.prefixes_taken:
                    if ranges.get(key, "") != prefix:
                        raise PrefixUnconfirmed(key)
                self._screening_mismatches = part.found
                self.counters.texts += part.texts
                self.counters.mismatches += part.mismatches
                self.counters.restated += part.restated
                self.counters.deferred_senders = part.deferred_senders
                self.counters.replies_sent += part.replies_sent
                self._attempted |= part.attempted
                self._tally.add_screening(part.days)
        except (TypeError, AttributeError) as exc:
            raise MalformedEvent(-1, f"{type(exc).__name__}: {exc}") from None
        if self._reopened:  # each reopening names an outcome the journal must hold
            ended = {(ev.campaign_id, ev.message_id) for items in self._campaigns.events.values()
                     for _, _, ev in items if isinstance(ev, _REOPENING)}
            ended.update((ev.campaign_id, ev.message_id) for _, ev in self._campaigns.unknown_denials)
            ended.update(self._poisoned)
            for ev, pos in self._reopened:
                if (ev.campaign_id, ev.message_id) not in ended:
                    self._screening_mismatch("reopen_without_outcome", ev.message_id, None, ev,
                                             pos)
        pending: dict[str, int] = {}
        for mid, fwd in self._campaigns.forwarded.items():
            if mid not in decided.get(fwd.campaign_id, ()):
                pending[fwd.campaign_id] = pending.get(fwd.campaign_id, 0) + 1
        self.counters.pending = sum(pending.values())
        counters = self.counters
        before = self._last_send_at - UNATTEMPTED_AFTER_MS
        counters.unattempted = sum(1 for mid, at in self._approved_at.items()
                                   if at < before and mid not in self._attempted)
        counters.events = self._position
        mismatches = (self._screening_mismatches + campaign_mismatches)[: self.keep]
        return AuditResult(mismatches, counters, self._tally.report(self.campaigns, pending))

# What may reopen a sender: a campaign event of the same message id that ended his request.
_REOPENING = (ReplyDenied, ReplyExpired, ReplyRefunded)


def audit(events: Iterable[Any], campaigns: Iterable[Campaign],
          keep: int = KEEP_MISMATCHES) -> AuditResult:
    """Replay decoded journal events (in journal order) through the core; one pass."""
    run = Audit(campaigns, keep)
    run.feed(events)
    return run.result()

