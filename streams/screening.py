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

# Provider message ids remembered per sender for duplicate detection. MessageBird retries
# a webhook within minutes, so the last few ids of a sender are enough.
RECENT_IDS = 16


@dataclass(slots=True)
class SenderState:
    texts: int = 0
    recent_ids: list[str] = field(default_factory=list)
    forwarded_at: dict[str, int] = field(default_factory=dict)  # campaign id -> event ms
    rate: Gcra = field(default_factory=Gcra)  # the sender's text rate, on event time
    flooder: bool = False  # once flagged, logged and never answered

    def to_dict(self) -> dict[str, Any]:
        return {"texts": self.texts, "recent_ids": self.recent_ids,
                "forwarded_at": self.forwarded_at, "tat": self.rate.tat, "flooder": self.flooder}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SenderState:
        return cls(
            texts=data["texts"],
            recent_ids=list(data["recent_ids"]),
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
    """The verdict on one text under the campaign's ``policy``, rules in order:
    duplicate id, flooder (flagged or over the rate), number not answerable, test text,
    already answered within the cooldown; otherwise forward."""

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

    if command.message_id in state.recent_ids:
        return verdict("suppress", "duplicate", state.texts)
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
    if event.reason == "duplicate":
        return state
    state.texts = event.texts_from_sender
    state.recent_ids.append(event.message_id)
    del state.recent_ids[:-RECENT_IDS]
    if event.reason == "flooder":
        state.flooder = True
    else:
        _, tat = gcra_check(state.rate, event.occurred_at, policy.sender_period_ms,
                            policy.sender_burst)
        gcra_apply(state.rate, tat)
    if event.verdict == "forward":
        state.forwarded_at[event.campaign_id] = event.occurred_at
    return state
