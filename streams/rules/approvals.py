"""From the campaign's decisions to the send stage's commands. Pure.

A request's sealed reply-to never reaches the journal or the campaign: the decide stage
keeps it beside the decision. A deferred request's reply-to waits, per campaign, in the
``deferred_reply_to_by_campaign`` table (``hold_deferred`` says what it becomes) until the
request is released (approved later) or expires. ``streams.stages.decide`` is the shell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.commands import SendReply
from schemas.events import ReplyApproved, ReplyDeferred, ReplyExpired


@dataclass(frozen=True)
class Held:
    """What ``hold_deferred`` found: the reply-to of the requests released now, and the new
    entry ({message id: sealed reply-to}) of each campaign touched; an empty entry means
    the campaign holds nothing any more."""

    released: dict[str, str]
    entries: dict[str, dict[str, str]]


def hold_deferred(decisions: Iterable[Any], reply_to: Mapping[str, str],
                  held: Mapping[str, Mapping[str, str] | None]) -> Held:
    """Keep the reply-to of newly deferred requests (from ``reply_to``, this batch's), drop
    those released or expired; ``held`` is what each campaign holds now."""
    released: dict[str, str] = {}
    entries: dict[str, dict[str, str]] = {}
    for d in decisions:
        t = type(d)
        if t is not ReplyDeferred and t is not ReplyExpired and not (
                t is ReplyApproved and d.deferred_at is not None):
            continue
        entry = entries.get(d.campaign_id)
        if entry is None:
            entry = entries[d.campaign_id] = dict(held.get(d.campaign_id) or {})
        if t is ReplyDeferred:
            if d.message_id in reply_to:
                entry[d.message_id] = reply_to[d.message_id]
        else:
            sealed = entry.pop(d.message_id, None)
            if t is ReplyApproved and sealed is not None:
                released[d.message_id] = sealed
    return Held(released, entries)


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
