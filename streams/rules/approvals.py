"""From the campaign's decisions to the send stage's commands. Pure.

A request's sealed reply-to never reaches the journal or the campaign: the decide stage
keeps it beside the decision. A deferred request's reply-to waits in the
``deferred_reply_to_by_campaign`` table, one entry per request (its message id; the
changelog record in the partition of the campaign's requests), until the request is
released (approved later) or expires: ``hold_deferred`` says what each decision does to it.
One record per request keeps every record small whatever the queue's length (a campaign's
whole queue in one record passed the broker's 1 MB limit at about 11,300 requests, and was
lost). Entries of the table's first layout (campaign id -> {message id: sealed}) are still
read and emptied. ``streams.stages.decide`` is the shell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.commands import SendReply
from schemas.events import ReplyApproved, ReplyDeferred, ReplyExpired


@dataclass(frozen=True)
class Held:
    """What ``hold_deferred`` found: the reply-to of the requests released now; the entries
    to store (message id -> (campaign, sealed)) and to delete (message id -> campaign); and
    the first layout's entries it changed (campaign -> what is left; empty: delete it)."""

    released: dict[str, str]
    keep: dict[str, tuple[str, str]] = field(default_factory=dict)
    drop: dict[str, str] = field(default_factory=dict)
    legacy: dict[str, dict[str, str]] = field(default_factory=dict)


def hold_deferred(decisions: Iterable[Any], reply_to: Mapping[str, str],
                  held: Mapping[str, Any]) -> Held:
    """Keep the reply-to of newly deferred requests (from ``reply_to``, this batch's), drop
    those released or expired; ``held`` is what the table holds now (message id -> sealed,
    or a campaign id -> its first-layout entry)."""
    out = Held({})
    for d in decisions:
        t = type(d)  # a surge's start or end, a promotion...: no reply-to of its own
        if t is ReplyDeferred:
            mid = d.message_id
            if mid in reply_to:
                out.keep[mid] = (d.campaign_id, reply_to[mid])
                out.drop.pop(mid, None)
            continue
        if t is not ReplyExpired and not (t is ReplyApproved and d.deferred_at is not None):
            continue
        mid = d.message_id
        sealed = _take(out, held, d.campaign_id, mid)
        if t is ReplyApproved and sealed is not None:
            out.released[mid] = sealed
    return out


def _take(out: Held, held: Mapping[str, Any], campaign_id: str, mid: str) -> str | None:
    """The request's reply-to, taken out of what is held (this batch's, the table's own
    entry, or its campaign's first-layout entry)."""
    kept = out.keep.pop(mid, None)
    if kept is not None:
        return kept[1]
    sealed = held.get(mid)
    if isinstance(sealed, str):
        out.drop[mid] = campaign_id
        return sealed
    entry = out.legacy.get(campaign_id)
    if entry is None:
        old = held.get(campaign_id)
        if not isinstance(old, Mapping) or mid not in old:
            return None
        entry = out.legacy[campaign_id] = dict(old)
    return entry.pop(mid, None)


def scheduled_send_at(send_at: int, occurred_at: int) -> int | None:
    """When the gateway is to send a reply: a time after the text (a reply delay), else
    None, which means now."""
    return send_at if send_at > occurred_at else None


def send_command(decision: ReplyApproved, reply_to: Mapping[str, str]) -> SendReply | None:
    """The SendReply of an approved request, or None if its reply-to is not known."""
    if decision.message_id not in reply_to:
        return None
    return SendReply(
        message_id=decision.message_id, campaign_id=decision.campaign_id,
        sender=decision.sender, occurred_at=decision.occurred_at, reply_to=reply_to[decision.message_id],
        send_at=scheduled_send_at(decision.send_at, decision.occurred_at),
    )
