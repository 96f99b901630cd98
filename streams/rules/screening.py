"""Per-sender screening: the pure decision behind the ``screen_senders`` agent.

``decide_screening(state, command, policy) -> [SenderScreened]``,
``decide_reopen(state, outcome) -> [SenderReopened]`` and
``evolve_sender(state, event, policy) -> state``.

**Answered means a reply went out.** A forwarded text makes the sender *awaiting* in that
campaign (his later texts are ``already_answered``: one request at a time, never two
replies). When the campaign or the send stage ends that request without a reply (denied,
expired, withdrawn, refunded), the outcome comes back as ``NoteReplyOutcome`` and
``decide_reopen`` journals ``SenderReopened``: his next text is forwarded again, within the
rate rules. A reply that went out (or may have) never reopens him. While a request of his
may wait in a campaign's queue, ``review`` tells that campaign what his next texts showed:
a flooder (withdraw it), a text to another campaign of the deployment (a number raiding
Lyon is no genuine pest in Paris: withdraw it), or a text again to the same campaign (the
evidence is journaled, his new words join the request's).

**Evidence for the campaign.** A verdict that sends something to the campaign (forward, or
``already_answered`` while he waits) carries the text's word keys (``actors.words``) and how
many other campaigns he texted within a day before it (``SenderState.campaigns``): the
campaign's content and sender evidence, computed here where the text and the sender's
history are, and journaled with the verdict so the audit rebuilds the request exactly.

No clock, no randomness, no I/O: the time is the
text's ``occurred_at``. The Faust agent keeps one ``SenderState`` per sender pseudonym in a
table keyed like its source topic, so all texts of one sender are screened in order by one
worker.

States are mutable and owned by one shell: ``evolve_sender`` updates in place and returns
the state, so a replay over millions of events does not copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.gcra import Gcra, gcra_apply, gcra_check
from schemas.commands import NoteReplyOutcome, ReviewRequest, ScreenText
from schemas.events import SenderReopened, SenderScreened, TextReceived
from schemas.policy import UNKNOWN_CAMPAIGN_POLICY, Policy  # noqa: F401 (re-exported)
from schemas.reasons import (
    ALREADY_ANSWERED,
    BLOCKED_PREFIX,
    COUNTRY_NOT_ALLOWED,
    DUPLICATE,
    FLOODER,
    INVALID_NUMBER,
    NOT_MOBILE,
    OTHER_CAMPAIGN,
    TEST_TEXT,
    TEXTED_AGAIN,
)
from streams.rules.retention import is_a_test_text, words_of

# Provider message ids remembered per sender, with their verdicts. MessageBird retries a
# webhook within minutes and a crashed worker is given its texts again, so the last few
# ids of a sender are enough.
RECENT_IDS = 16
# A sender's texts to another campaign within this long make him a raider there.
OTHER_CAMPAIGN_MS = 24 * 3_600_000


# What a verdict restates: (campaign id, reason (None: forwarded), texts from the sender,
# occurred_at, policy version, other campaigns). None for an id remembered by an older
# state (ids only). The words are the text's own: computed again from it.
Earlier = tuple[str, str | None, int, int, int, int]


@dataclass(slots=True)
class SenderState:
    texts: int = 0
    # message id -> its verdict, oldest first (insertion order), at most RECENT_IDS.
    recent: dict[str, Earlier | None] = field(default_factory=dict)
    forwarded_at: dict[str, int] = field(default_factory=dict)  # campaign id -> event ms
    # campaign id -> message id of the last forwarded text (the request a reopen must name)
    forwarded_id: dict[str, str] = field(default_factory=dict)
    rate: Gcra = field(default_factory=Gcra)  # the sender's text rate, on event time
    flooder: bool = False  # once flagged, logged and never answered
    # campaign id -> the time of his last text to it, within OTHER_CAMPAIGN_MS of his last.
    campaigns: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"texts": self.texts,
                "recent": [[mid, *earlier] if earlier is not None else [mid]
                           for mid, earlier in self.recent.items()],
                "forwarded_at": self.forwarded_at, "forwarded_id": self.forwarded_id,
                "tat": self.rate.tat, "flooder": self.flooder, "campaigns": self.campaigns}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SenderState:
        if "recent" in data:
            recent: dict[str, Earlier | None] = {  # without other campaigns before: 0
                item[0]: ((*item[1:6], item[6] if len(item) > 6 else 0) if len(item) > 1
                          else None)  # type: ignore[misc]
                for item in data["recent"]}
        else:  # written before verdicts were kept: ids only
            recent = dict.fromkeys(data["recent_ids"])
        return cls(
            texts=data["texts"],
            recent=recent,
            forwarded_at=dict(data["forwarded_at"]),
            forwarded_id=dict(data.get("forwarded_id", {})),  # absent before reopening
            rate=Gcra(data.get("tat", 0)),
            flooder=data.get("flooder", False),
            campaigns=dict(data.get("campaigns", {})),
        )


def number_refusal(command: ScreenText | TextReceived, policy: Policy) -> str | None:
    """Why this sender's number may not be answered, from the facts the edge recorded."""
    kind = command.number_kind
    if kind == "unknown":  # recorded before numbers were classified (v1)
        return None
    if kind == "invalid":
        return INVALID_NUMBER
    if kind != "mobile":
        return NOT_MOBILE  # premium rate, short codes, fixed lines: never answered
    if command.country not in policy.allowed_countries:
        return COUNTRY_NOT_ALLOWED
    if command.prefix in policy.blocked_prefixes:
        return BLOCKED_PREFIX
    return None


def decide_screening(state: SenderState, command: ScreenText | TextReceived,
                     policy: Policy) -> list[SenderScreened]:
    """The verdict on one text under the campaign's ``policy``, rules in order: a message
    id seen before gets its earlier verdict again; flooder (flagged or over the rate),
    number not answerable, test text, already answered within the cooldown; otherwise
    forward. ``command`` may be the journaled ``TextReceived`` itself (the audit's replay):
    only the fields it shares with ``ScreenText`` are read, never ``reply_to``."""
    mid = command.message_id
    if mid in state.recent:
        # A text seen before (a webhook retried, or given again to a worker after a crash):
        # the same verdict again, so a verdict lost in a crash is journaled after all and the
        # shell repeats what it did (the campaign and the send stage are idempotent by id).
        earlier = state.recent[mid]
        if earlier is None:  # remembered without its verdict by an older state
            return _verdict(command, "suppress", DUPLICATE, state.texts, policy)
        campaign_id, reason, texts, occurred_at, policy_version, other = earlier
        return [SenderScreened(message_id=mid, campaign_id=campaign_id, sender=command.sender,
                               verdict="forward" if reason is None else "suppress", reason=reason,
                               texts_from_sender=texts, occurred_at=occurred_at,
                               policy_version=policy_version, words=_words_of(command, reason),
                               other_campaigns=other)]
    texts = state.texts + 1
    now = command.occurred_at
    within_rate, _ = gcra_check(state.rate, now, policy.sender_period_ms, policy.sender_burst)
    if state.flooder or not within_rate:
        return _verdict(command, "suppress", FLOODER, texts, policy)
    refusal = number_refusal(command, policy)
    if refusal is not None:
        return _verdict(command, "suppress", refusal, texts, policy)
    if policy.filter_test_texts and is_a_test_text(command):
        return _verdict(command, "suppress", TEST_TEXT, texts, policy)
    last = state.forwarded_at.get(command.campaign_id)
    if last is not None and (policy.cooldown_ms is None or now - last < policy.cooldown_ms):
        return _verdict(command, "suppress", ALREADY_ANSWERED, texts, policy)
    return _verdict(command, "forward", None, texts, policy, state)


def _verdict(command: ScreenText | TextReceived, verdict: str, reason: str | None, texts: int,
             policy: Policy, state: SenderState | None = None) -> list[SenderScreened]:
    return [SenderScreened(message_id=command.message_id, campaign_id=command.campaign_id,
                           sender=command.sender, verdict=verdict, reason=reason,
                           texts_from_sender=texts, occurred_at=command.occurred_at,
                           policy_version=policy.version, words=_words_of(command, reason),
                           other_campaigns=0 if state is None else other_campaigns(
                               state, command.campaign_id, command.occurred_at))]


def _words_of(command: ScreenText | TextReceived, reason: str | None) -> str:
    """The text's word keys, for the verdicts the campaign hears of (a forward, and a text
    again while he waits); "" for the others."""
    return words_of(command) if reason is None or reason == ALREADY_ANSWERED else ""


def other_campaigns(state: SenderState, campaign_id: str, now: int) -> int:
    """Other campaigns of the deployment the sender texted within a day before ``now``."""
    return sum(1 for cid, at in state.campaigns.items()
               if cid != campaign_id and now - at < OTHER_CAMPAIGN_MS)


def decide_reopen(state: SenderState, command: NoteReplyOutcome) -> list[SenderReopened]:
    """A forwarded request ended without a reply: reopen the sender in that campaign, unless
    a later text was forwarded since (its own outcome decides) or he is not awaiting."""
    if state.forwarded_id.get(command.campaign_id) != command.message_id:
        return []
    return [SenderReopened(message_id=command.message_id, campaign_id=command.campaign_id,
                           sender=command.sender, outcome=command.outcome,
                           occurred_at=command.occurred_at)]


def review(state: SenderState, event: SenderScreened) -> list[ReviewRequest]:
    """What this verdict (not yet applied to ``state``) tells the campaigns about the
    sender's requests forwarded within a day (each campaign ignores one it decided already):
    he showed himself a flooder (``"flooder"``: withdraw them all), he texted another
    campaign (``"other_campaign"``: withdraw the others'), or he texted again the same
    campaign (``"texted_again"``, with the words of his new text)."""
    if event.message_id in state.recent:
        return []  # a restated verdict: said before
    out = []
    now = event.occurred_at
    flooder = event.reason == FLOODER and not state.flooder
    for cid, pending in state.forwarded_id.items():
        if now - state.forwarded_at.get(cid, now) >= OTHER_CAMPAIGN_MS:
            continue  # long decided
        if flooder:
            reason, words = FLOODER, ""
        elif cid != event.campaign_id:
            if now - state.campaigns.get(event.campaign_id, now - OTHER_CAMPAIGN_MS) < OTHER_CAMPAIGN_MS:
                continue  # said at his first text there
            reason, words = OTHER_CAMPAIGN, ""
        elif event.reason == ALREADY_ANSWERED:
            reason, words = TEXTED_AGAIN, event.words
        else:
            continue
        out.append(ReviewRequest(message_id=pending, campaign_id=cid, sender=event.sender,
                                 reason=reason, occurred_at=now, words=words))
    return out


def evolve_sender(state: SenderState, event: SenderScreened | SenderReopened,
                  policy: Policy | None = None) -> SenderState:
    """Apply a verdict (``policy``: the one it was decided under) or a reopening."""
    if type(event) is SenderReopened:
        if state.forwarded_id.get(event.campaign_id) == event.message_id:
            del state.forwarded_id[event.campaign_id]
            state.forwarded_at.pop(event.campaign_id, None)
        return state
    assert policy is not None
    recent = state.recent
    if event.message_id in recent:  # a verdict restated: nothing new
        return state
    state.texts = event.texts_from_sender
    recent[event.message_id] = (event.campaign_id, event.reason, event.texts_from_sender,
                                event.occurred_at, event.policy_version, event.other_campaigns)
    _note_campaign(state.campaigns, event.campaign_id, event.occurred_at)
    if len(recent) > RECENT_IDS:
        del recent[next(iter(recent))]
    if event.reason == FLOODER:
        state.flooder = True
    else:
        _, tat = gcra_check(state.rate, event.occurred_at, policy.sender_period_ms,
                            policy.sender_burst)
        gcra_apply(state.rate, tat)
    if event.verdict == "forward":
        state.forwarded_at[event.campaign_id] = event.occurred_at
        state.forwarded_id[event.campaign_id] = event.message_id
    return state


def _note_campaign(campaigns: dict[str, int], campaign_id: str, now: int) -> None:
    if campaigns.get(campaign_id, now - 1) < now:
        campaigns[campaign_id] = now
    if len(campaigns) > 1:
        for cid in [c for c, at in campaigns.items() if now - at >= OTHER_CAMPAIGN_MS]:
            del campaigns[cid]
