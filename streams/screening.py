"""Per-sender screening: the pure decision behind the ``screen_senders`` agent.

``decide_screening(state, command, policy) -> [SenderScreened]`` and
``evolve_sender(state, event, policy) -> state``. No clock, no randomness, no I/O: the time is the
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
from actors.textfilter import is_test_text
from schemas.commands import ScreenText
from schemas.events import SenderScreened
from schemas.policy import Policy

# Provider message ids remembered per sender, with their verdicts. MessageBird retries a
# webhook within minutes and a crashed worker is given its texts again, so the last few
# ids of a sender are enough.
RECENT_IDS = 16

# The screening policy of a campaign the config no longer knows (texts stored before it
# was removed): the defaults. The campaign stage then denies them (unknown_campaign).
UNKNOWN_CAMPAIGN_POLICY = Policy(version=1, price_per_segment_micros=1)

# What a verdict restates: (campaign id, reason (None: forwarded), texts from the sender,
# occurred_at, policy version). None for an id remembered by an older state (ids only).
Earlier = tuple[str, str | None, int, int, int]


@dataclass(slots=True)
class SenderState:
    texts: int = 0
    # message id -> its verdict, oldest first (insertion order), at most RECENT_IDS.
    recent: dict[str, Earlier | None] = field(default_factory=dict)
    forwarded_at: dict[str, int] = field(default_factory=dict)  # campaign id -> event ms
    rate: Gcra = field(default_factory=Gcra)  # the sender's text rate, on event time
    flooder: bool = False  # once flagged, logged and never answered

    def to_dict(self) -> dict[str, Any]:
        return {"texts": self.texts,
                "recent": [[mid, *earlier] if earlier is not None else [mid]
                           for mid, earlier in self.recent.items()],
                "forwarded_at": self.forwarded_at, "tat": self.rate.tat, "flooder": self.flooder}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SenderState:
        if "recent" in data:
            recent: dict[str, Earlier | None] = {
                item[0]: (tuple(item[1:]) if len(item) > 1 else None)  # type: ignore[misc]
                for item in data["recent"]}
        else:  # written before verdicts were kept: ids only
            recent = dict.fromkeys(data["recent_ids"])
        return cls(
            texts=data["texts"],
            recent=recent,
            forwarded_at=dict(data["forwarded_at"]),
            rate=Gcra(data.get("tat", 0)),
            flooder=data.get("flooder", False),
        )


def number_refusal(command: ScreenText, policy: Policy) -> str | None:
    """Why this sender's number may not be answered, from the facts the edge recorded."""
    kind = command.number_kind
    if kind == "unknown":  # recorded before numbers were classified (v1)
        return None
    if kind == "invalid":
        return "invalid_number"
    if kind != "mobile":
        return "not_mobile"  # premium rate, short codes, fixed lines: never answered
    if command.country not in policy.allowed_countries:
        return "country_not_allowed"
    if command.prefix in policy.blocked_prefixes:
        return "blocked_prefix"
    return None


def decide_screening(state: SenderState, command: ScreenText, policy: Policy) -> list[SenderScreened]:
    """The verdict on one text under the campaign's ``policy``, rules in order: a message
    id seen before gets its earlier verdict again; flooder (flagged or over the rate),
    number not answerable, test text, already answered within the cooldown; otherwise
    forward."""

    def verdict(v: str, reason: str | None, texts: int) -> list[SenderScreened]:
        return [
            SenderScreened(
                message_id=command.message_id,
                campaign_id=command.campaign_id,
                sender=command.sender,
                verdict=v,
                reason=reason,
                texts_from_sender=texts,
                occurred_at=command.occurred_at,
                policy_version=policy.version,
            )
        ]

    if command.message_id in state.recent:
        # A text seen before (a webhook retried, or given again to a worker after a crash):
        # the same verdict again, so a verdict lost in a crash is journaled after all and the
        # shell repeats what it did (the campaign and the send stage are idempotent by id).
        earlier = state.recent[command.message_id]
        if earlier is None:  # remembered without its verdict by an older state
            return verdict("suppress", "duplicate", state.texts)
        campaign_id, reason, texts, occurred_at, policy_version = earlier
        return [SenderScreened(
            message_id=command.message_id, campaign_id=campaign_id, sender=command.sender,
            verdict="forward" if reason is None else "suppress", reason=reason,
            texts_from_sender=texts, occurred_at=occurred_at, policy_version=policy_version,
        )]
    texts = state.texts + 1
    within_rate, _ = gcra_check(state.rate, command.occurred_at, policy.sender_period_ms,
                                policy.sender_burst)
    if state.flooder or not within_rate:
        return verdict("suppress", "flooder", texts)
    refusal = number_refusal(command, policy)
    if refusal is not None:
        return verdict("suppress", refusal, texts)
    if policy.filter_test_texts and is_test_text(command.body):
        return verdict("suppress", "test_text", texts)
    last = state.forwarded_at.get(command.campaign_id)
    if last is not None and (policy.cooldown_ms is None
                             or command.occurred_at - last < policy.cooldown_ms):
        return verdict("suppress", "already_answered", texts)
    return verdict("forward", None, texts)


def evolve_sender(state: SenderState, event: SenderScreened, policy: Policy) -> SenderState:
    """Apply a verdict; ``policy`` is the one the verdict was decided under."""
    recent = state.recent
    if event.message_id in recent:  # a verdict restated: nothing new
        return state
    state.texts = event.texts_from_sender
    recent[event.message_id] = (event.campaign_id, event.reason, event.texts_from_sender,
                                event.occurred_at, event.policy_version)
    if len(recent) > RECENT_IDS:
        del recent[next(iter(recent))]
    if event.reason == "flooder":
        state.flooder = True
    else:
        _, tat = gcra_check(state.rate, event.occurred_at, policy.sender_period_ms,
                            policy.sender_burst)
        gcra_apply(state.rate, tat)
    if event.verdict == "forward":
        state.forwarded_at[event.campaign_id] = event.occurred_at
    return state
