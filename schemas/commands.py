"""Commands: what the shells ask the decision core to decide, in the imperative.

Commands travel on the work topics (``sms-received``, ``reply-requests``, ``sms-outbound``).
Unlike events they may carry ``reply_to``: the sender's number sealed with the deployment's
key (``infra.privacy``), needed only to send the reply. Work topics are short-lived; the
journal never holds ``reply_to``. Like events, commands are built by keyword only
(``kw_only``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.frozen import fast_init


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenText:
    """Screen one inbound text against its sender's history (keyed by sender)."""

    TYPE = "ScreenText"
    SCHEMA_VERSION = 2  # v2 added test_text and words

    message_id: str
    campaign_id: str
    sender: str
    body: str
    occurred_at: int
    reply_to: str
    number_kind: str = "unknown"  # see TextReceived
    country: str | None = None
    prefix: str = ""
    test_text: bool | None = None  # see TextReceived
    words: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReply:
    """Ask the campaign to pay for one reply (keyed by campaign)."""

    TYPE = "RequestReply"
    SCHEMA_VERSION = 3  # v2 added prefix and texts_from_sender; v3 words and other_campaigns

    message_id: str
    campaign_id: str
    sender: str
    occurred_at: int
    reply_to: str
    prefix: str = ""  # the sender's coarse number range (ScreenText.prefix)
    texts_from_sender: int = 1  # SenderScreened.texts_from_sender
    words: str = ""  # SenderScreened.words: the text's word keys
    other_campaigns: int = 0  # SenderScreened.other_campaigns


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewRequest:
    """What screening learned about the sender of a forwarded request that may still wait in
    the campaign's surge queue (keyed by campaign): ``"flooder"`` (he showed himself one: the
    request is not paid) or ``"texted_again"`` (a later text at a human pace: he is served
    before the first texts)."""

    TYPE = "ReviewRequest"
    SCHEMA_VERSION = 2  # v2 added words

    message_id: str  # the forwarded request's
    campaign_id: str
    sender: str
    reason: str  # schemas.reasons.REVIEW_REASONS
    occurred_at: int  # the text that showed it
    words: str = ""  # texted_again: the later text's word keys


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteReplyOutcome:
    """Tell the sender's screening state how his forwarded request ended without a reply
    (keyed by sender, partitioned like his texts)."""

    TYPE = "NoteReplyOutcome"
    SCHEMA_VERSION = 1

    message_id: str
    campaign_id: str
    sender: str
    outcome: str  # SenderReopened.outcome
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SendReply:
    """Send the campaign's reply text for an approved request."""

    TYPE = "SendReply"
    SCHEMA_VERSION = 2  # v2 added send_at

    message_id: str
    campaign_id: str
    sender: str
    occurred_at: int
    reply_to: str
    send_at: int | None = None  # epoch ms: schedule the SMS for then (None: now)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """The clock, for one campaign: release or expire deferred replies, end a surge, at
    ``occurred_at``. Sent periodically by the shell on ``reply-requests`` (keyed by campaign,
    so in order with the requests); the events it causes carry its time, so a replay
    rebuilds it from them."""

    TYPE = "Tick"
    SCHEMA_VERSION = 1

    campaign_id: str
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangePolicy:
    """Operator: change some policy fields (core units) of one campaign."""

    TYPE = "ChangePolicy"
    SCHEMA_VERSION = 1

    command_id: str
    campaign_id: str
    changes: dict[str, Any]
    operator: str
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditBudget:
    """Operator: add money to one campaign's budget."""

    TYPE = "CreditBudget"
    SCHEMA_VERSION = 1

    command_id: str
    campaign_id: str
    amount_micros: int
    source: str
    operator: str
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleReply:
    """Tell the campaign what became of an approved reply (sent on ``reply-requests``, keyed
    by campaign, so it is decided in the campaign's order like the requests).

    ``outcome`` "failed": nothing was sent (``ReplyFailed``), refund the cost.
    ``outcome`` "priced": a delivery report gave the actual ``price_micros``; reconcile.
    """

    TYPE = "SettleReply"
    SCHEMA_VERSION = 1

    message_id: str
    campaign_id: str
    sender: str
    outcome: str  # "failed" | "priced"
    price_micros: int | None
    occurred_at: int


ControlCommand = ChangePolicy | CreditBudget


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedControl:
    """Operator: a control command as signed by its operator (``infra.operators``).

    ``command`` is the command's exact wire form (what the signature covers), ``signature``
    an Ed25519 signature in base64; no secret travels.
    """

    TYPE = "SignedControl"
    SCHEMA_VERSION = 1

    operator: str
    command: str
    signature: str


COMMAND_TYPES: tuple[type, ...] = (
    ScreenText, RequestReply, SendReply, SettleReply, ChangePolicy, CreditBudget, Tick,
    SignedControl, ReviewRequest, NoteReplyOutcome,
)

for _cls in COMMAND_TYPES:  # the cheaper __init__, same signature (schemas.frozen)
    fast_init(_cls)
del _cls
