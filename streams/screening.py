"""Per-sender screening: the pure decision behind the ``screen_senders`` agent.

``decide_screening(state, command, cooldown_ms) -> [SenderScreened]`` and
``evolve_sender(state, event) -> state``. No clock, no randomness, no I/O: the time is the
text's ``occurred_at``. The Faust agent keeps one ``SenderState`` per sender pseudonym in a
table keyed like its source topic, so all texts of one sender are screened in order by one
worker.

States are mutable and owned by one shell: ``evolve_sender`` updates in place and returns
the state, so a replay over millions of events does not copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.commands import ScreenText
from schemas.events import SenderScreened

# Provider message ids remembered per sender for duplicate detection. MessageBird retries
# a webhook within minutes, so the last few ids of a sender are enough.
RECENT_IDS = 16


@dataclass(slots=True)
class SenderState:
    texts: int = 0
    recent_ids: list[str] = field(default_factory=list)
    forwarded_at: dict[str, int] = field(default_factory=dict)  # campaign id -> event ms

    def to_dict(self) -> dict[str, Any]:
        return {"texts": self.texts, "recent_ids": self.recent_ids, "forwarded_at": self.forwarded_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SenderState:
        return cls(
            texts=data["texts"],
            recent_ids=list(data["recent_ids"]),
            forwarded_at=dict(data["forwarded_at"]),
        )


def decide_screening(
    state: SenderState, command: ScreenText, cooldown_ms: int | None, policy_version: int = 1
) -> list[SenderScreened]:
    """``cooldown_ms`` comes from the campaign policy of ``policy_version`` (None: never twice)."""
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
                policy_version=policy_version,
            )
        ]

    if command.message_id in state.recent_ids:
        return verdict("suppress", "duplicate", state.texts)
    texts = state.texts + 1
    last = state.forwarded_at.get(command.campaign_id)
    if last is not None and (cooldown_ms is None or command.occurred_at - last < cooldown_ms):
        return verdict("suppress", "already_answered", texts)
    return verdict("forward", None, texts)


def evolve_sender(state: SenderState, event: SenderScreened) -> SenderState:
    if event.reason == "duplicate":
        return state
    state.texts = event.texts_from_sender
    state.recent_ids.append(event.message_id)
    del state.recent_ids[:-RECENT_IDS]
    if event.verdict == "forward":
        state.forwarded_at[event.campaign_id] = event.occurred_at
    return state
