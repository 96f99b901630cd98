"""Journal events: what happened, in the past tense.

Every event is a small frozen dataclass with a stable ``TYPE`` name (never a class path)
and a ``SCHEMA_VERSION``, built by keyword only (``kw_only``: a field that moves cannot
take another's value). ``schemas.codec`` is the only place that turns them into bytes.

Conventions shared by all events:

- ``occurred_at`` is event time in integer milliseconds since the Unix epoch (UTC). It comes
  from the inbound text (MessageBird's ``createdDatetime``) or from the shell that observed
  the outcome; the decision core never reads a clock.
- ``message_id`` is MessageBird's id of the inbound text. It identifies the whole story of
  one text (received, screened, approved, sent), and it is the idempotency key.
- ``sender`` is a keyed pseudonym of the sender's number (``infra.privacy``), never the
  number itself.
- Money is an integer number of micro-euros (1 EUR = 1_000_000) so that replay is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.frozen import fast_init

MICROS_PER_EUR = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class TextReceived:
    """An inbound text accepted by the webhook and routed to a campaign."""

    TYPE = "TextReceived"
    SCHEMA_VERSION = 3  # v2 added the number facts; v3 test_text and words

    message_id: str
    campaign_id: str
    sender: str
    body: str
    occurred_at: int
    # Facts about the sender's number, established at the edge (where it is in clear):
    # kind "mobile" | "fixed_line" | "premium_rate" | "short_code" | ... | "invalid"
    # ("unknown" for v1 events); prefix is the coarse range "33-612", never a number.
    number_kind: str
    country: str | None
    prefix: str
    # What the decisions read of the body, established at the edge where the body is split
    # off for its retention (streams.rules.retention): whether it is a test text, its word
    # keys (actors.words). None: read from ``body`` (texts journaled with their bodies).
    test_text: bool | None = None
    words: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TextRejected:
    """An inbound text the webhook could not route or accept (e.g. unknown recipient)."""

    TYPE = "TextRejected"
    SCHEMA_VERSION = 1

    message_id: str
    recipient: str
    reason: str
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TextTimeClamped:
    """The provider dated a text outside the webhook's arrival time +- the allowed skew
    (``createdDatetime`` is the provider's, hence anyone's who can sign): the text's
    ``occurred_at`` is the date clamped into that window. Both times kept here."""

    TYPE = "TextTimeClamped"
    SCHEMA_VERSION = 1

    message_id: str
    campaign_id: str
    sender: str
    reported_at: int  # the provider's createdDatetime
    received_at: int  # when the webhook received it (the worker's clock)
    occurred_at: int  # what the text carries on: reported_at clamped to received_at +- skew


@dataclass(frozen=True, slots=True, kw_only=True)
class TextBodyKept:
    """A text's body (numbers masked), kept apart from the journal for the campaign file's
    retention (``body_retention_days``): on ``<app>.bodies``, a topic the broker empties
    past that retention, never in the journal. The journal's ``TextReceived`` carries what
    the decisions read of the body instead (``streams.rules.retention``); ``journal`` and
    ``export`` show this body beside it while it is kept. Not a journal event: only the
    message id ties it to its text (keyed by it, not by the sender)."""

    TYPE = "TextBodyKept"
    SCHEMA_VERSION = 1

    message_id: str
    occurred_at: int  # the text's: its age is the body's
    body: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderScreened:
    """The per-sender screening verdict: ``forward`` to the campaign, or ``suppress``.

    A text whose message id the sender's state remembers (a retried webhook, or a text given
    again to a worker after a crash) gets its earlier verdict again, field for field: the
    journal may hold one verdict more than once (at least once), never two different ones.
    ``reason="duplicate"`` comes only from states written before verdicts were kept."""

    TYPE = "SenderScreened"
    SCHEMA_VERSION = 3  # v2 added policy_version; v3 words and other_campaigns

    message_id: str
    campaign_id: str
    sender: str
    verdict: str  # "forward" | "suppress"
    reason: str | None  # None when forwarded; "already_answered", "flooder", ... otherwise
    texts_from_sender: int
    occurred_at: int
    policy_version: int  # the campaign policy (cooldown) the verdict used
    # The text's word keys (``actors.words``: what the campaign's content evidence reads;
    # "" for verdicts that send nothing to the campaign) and how many other campaigns of the
    # deployment the sender texted within a day before it (a raider's mark).
    words: str = ""
    other_campaigns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReopened:
    """Screening learned that the sender's forwarded request ended without a reply (denied,
    expired, refunded): he is no longer "answered" and a later text is forwarded again.
    Journaled by screening, in the sender's order, when it changes his state."""

    TYPE = "SenderReopened"
    SCHEMA_VERSION = 1

    message_id: str  # the forwarded request's
    campaign_id: str
    sender: str
    outcome: str  # "ReplyDenied:<reason>" | "ReplyExpired:<reason>" | "ReplyRefunded"
    occurred_at: int  # the outcome's


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyApproved:
    """The campaign reserved the cost of one reply from its budget."""

    TYPE = "ReplyApproved"
    SCHEMA_VERSION = 4  # v2 added policy_version; v3 prefix, send_at and deferred_at; v4 words

    message_id: str
    campaign_id: str
    sender: str
    segments: int
    encoding: str
    cost_micros: int
    balance_after_micros: int
    seq: int  # per-campaign decision sequence number: the replay order
    occurred_at: int
    policy_version: int
    prefix: str  # the sender's coarse number range ("33-612"; "" when unknown)
    send_at: int  # when the reply is to be sent: occurred_at + the policy's reply delay
    # When the request was deferred (this approval releases it at occurred_at, after the
    # safety delay or a surge's wait); None for a request approved as it came.
    deferred_at: int | None
    words: str = ""  # the text's word keys, for a request approved as it came ("" otherwise)
    texts_from_sender: int = 1  # likewise: SenderScreened.texts_from_sender


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyDenied:
    """The campaign refused to pay for a reply, with the reason."""

    TYPE = "ReplyDenied"
    SCHEMA_VERSION = 4  # v2 added policy_version; v3 prefix; v4 words

    message_id: str
    campaign_id: str
    sender: str
    reason: str  # schemas.reasons.DENIAL_REASONS (older journals: "daily_allowance" |
    #             "hourly_allowance")
    cost_micros: int
    balance_after_micros: int
    seq: int
    occurred_at: int
    policy_version: int
    prefix: str  # the sender's coarse number range ("" when unknown)
    words: str = ""  # the text's word keys (the campaign's word counts include denied texts)
    texts_from_sender: int = 1  # SenderScreened.texts_from_sender


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyDeferred:
    """The campaign queued the request instead of paying for it now (the safety delay, or a
    surge): it is judged when ``hold_until`` comes, on what the events showed by then, and
    ends as a ``ReplyApproved`` (released, ``deferred_at`` set) or a ``ReplyExpired``, maybe
    after a ``ReplyHeldBack``."""

    TYPE = "ReplyDeferred"
    SCHEMA_VERSION = 3  # v2 added priority; v3 words and hold_until

    message_id: str
    campaign_id: str
    sender: str
    prefix: str
    texts_from_sender: int
    queued: int  # requests in the queue with this one
    seq: int
    occurred_at: int
    policy_version: int
    priority: int = 0  # the arrival rank (``actors.decide.arrival_rank``): a full queue
    #                   keeps the smaller
    words: str = ""  # the text's word keys (``actors.words``)
    hold_until: int = 0  # when it is judged: occurred_at + the safety delay (0: v2, at once)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyPromoted:
    """A queued request whose sender texted again at a human pace
    (``ReviewRequest(texted_again)``): journaled evidence, with the later text's words."""

    TYPE = "ReplyPromoted"
    SCHEMA_VERSION = 2  # v2 added words

    message_id: str
    campaign_id: str
    sender: str
    priority: int  # the new priority key (v1); unchanged since v2
    seq: int
    occurred_at: int
    policy_version: int
    words: str = ""  # the later text's word keys


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyHeldBack:
    """A queued request whose safety delay ended with evidence that neither clears nor
    condemns it: it arrived in a minute of first texts far above the campaign's baseline
    (a surge's cohort) and its words were not a raid's. It waits, ranked, for the surge's
    spend bound (``SurgeStarted.spend_cap_micros``), released in rank order as the
    allowance allows, or expires at the TTL. The evidence it rested on is here."""

    TYPE = "ReplyHeldBack"
    SCHEMA_VERSION = 1

    message_id: str
    campaign_id: str
    sender: str
    deferred_at: int
    excess_percent: int  # its arrival minute's first texts, in % of the baseline's rate
    range_debt: int  # first texts of its number range above their schedule then
    texted_again: bool  # its sender texted again at a human pace while it waited
    # It arrived in a minute in which a raid was found pasting its words: released only up
    # to the baseline's rate of such a minute (the people among it), after the others.
    in_raid: bool
    rank: int  # smaller is released first
    seq: int
    occurred_at: int
    policy_version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyExpired:
    """A deferred request left the queue unanswered (``schemas.reasons.EXPIRY_REASONS``):
    its words were a raid's ("raid_words"), its sender texted another campaign ("other_campaign")
    or showed himself a flooder ("flooder"), older than the TTL ("ttl", "budget_exhausted"
    when the budget could pay no reply then), pushed out of a full queue ("queue_full").
    The sender is answered on a later text (screening reopens him)."""

    TYPE = "ReplyExpired"
    SCHEMA_VERSION = 1

    message_id: str
    campaign_id: str
    sender: str
    reason: str  # schemas.reasons.EXPIRY_REASONS
    deferred_at: int
    seq: int
    occurred_at: int
    policy_version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SurgeStarted:
    """First texts in the current minute exceeded the policy's multiple of the baseline:
    replies are deferred from now on."""

    TYPE = "SurgeStarted"
    SCHEMA_VERSION = 2  # v2 added spend_cap_micros

    campaign_id: str
    first_texts: int  # in the minute of occurred_at
    baseline_texts: int  # first texts in the baseline minutes before it
    baseline_minutes: int
    seq: int
    occurred_at: int
    policy_version: int
    # What the surge may spend on requests it cannot tell from a raid's (ReplyHeldBack):
    # ``surge_spend_percent`` of the allowance at its start, less what the surges begun within
    # the TTL before it spent (they share one bound: ``actors.decide.spend_cap``).
    spend_cap_micros: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SurgeEnded:
    """The surge is over (quiet minutes, or surge mode switched off); queued replies keep
    being released at the paced rate."""

    TYPE = "SurgeEnded"
    SCHEMA_VERSION = 1

    campaign_id: str
    queued: int
    seq: int
    occurred_at: int
    policy_version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplySent:
    """The gateway accepted the reply (or, in dry-run mode, would have)."""

    TYPE = "ReplySent"
    SCHEMA_VERSION = 1

    message_id: str
    campaign_id: str
    sender: str
    provider_message_id: str | None
    price_micros: int | None
    dry_run: bool
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyAttempted:
    """The sender agent is about to call the gateway (journaled, acked, before the call).

    An attempt with neither ``ReplySent``, ``ReplyFailed`` nor ``ReplyUncertain`` after it
    is a call whose outcome was lost (a crash): the reply is then marked uncertain, never
    sent again blindly.
    """

    TYPE = "ReplyAttempted"
    SCHEMA_VERSION = 1

    message_id: str
    campaign_id: str
    sender: str
    attempt: int  # 1, 2, ...: retries of one reply after errors that prove nothing was sent
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyFailed:
    """The reply was given up without being sent (the gateway did not accept it after every
    allowed attempt, or there was nothing to send to): the campaign refunds its cost
    (``ReplyRefunded``)."""

    TYPE = "ReplyFailed"
    SCHEMA_VERSION = 3  # v2 added attempts, v3 the reason

    message_id: str
    campaign_id: str
    sender: str
    error: str  # what the gateway said, for people (never a number)
    retryable: bool  # the last error was of a retryable kind (5xx, 429, unreachable)
    occurred_at: int
    attempts: int
    reason: str  # why it was given up: schemas.reasons.FAILURE_REASONS


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyUncertain:
    """The reply may or may not have been sent (a read timeout, an unreadable answer, or a
    crash between the attempt and its result). It is not sent again and not refunded; a
    later delivery report for it settles the question."""

    TYPE = "ReplyUncertain"
    SCHEMA_VERSION = 1

    message_id: str
    campaign_id: str
    sender: str
    reason: str  # schemas.reasons.UNCERTAIN_REASONS
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReported:
    """A MessageBird delivery report for one of our replies (``reference`` = message id)."""

    TYPE = "DeliveryReported"
    SCHEMA_VERSION = 1

    message_id: str
    campaign_id: str
    sender: str
    provider_message_id: str
    status: str  # scheduled | sent | buffered | delivered | expired | delivery_failed
    status_reason: str | None
    error_code: int | None
    price_micros: int | None  # what MessageBird charged, when the report says
    currency: str | None
    occurred_at: int  # the report's statusDatetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyRefunded:
    """A campaign decision: an approved reply was finally not sent; its cost returns."""

    TYPE = "ReplyRefunded"
    SCHEMA_VERSION = 1

    message_id: str
    campaign_id: str
    sender: str
    refund_micros: int
    balance_after_micros: int
    seq: int
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyCostReconciled:
    """A campaign decision: the actual price of a reply replaces the estimate."""

    TYPE = "ReplyCostReconciled"
    SCHEMA_VERSION = 2  # v2 reported_micros

    message_id: str
    campaign_id: str
    sender: str
    estimated_micros: int
    actual_micros: int  # what is charged: the price, at most 3x the estimate, the reserve kept
    balance_after_micros: int  # balance + estimated - actual
    seq: int
    occurred_at: int
    reported_micros: int | None = None  # the report's price when not all of it was charged (cap, reserve)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyChanged:
    """An operator changed a campaign's policy; ``changes`` are in core units."""

    TYPE = "PolicyChanged"
    SCHEMA_VERSION = 1

    command_id: str
    campaign_id: str
    version: int
    changes: dict[str, Any]
    operator: str
    seq: int
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetCredited:
    """Money was added to a campaign's budget (a donation round, a grant)."""

    TYPE = "BudgetCredited"
    SCHEMA_VERSION = 1

    command_id: str
    campaign_id: str
    amount_micros: int
    source: str
    operator: str
    balance_after_micros: int
    seq: int
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlRejected:
    """An operator command the campaign refused (invalid change, unknown campaign)."""

    TYPE = "ControlRejected"
    SCHEMA_VERSION = 1

    command_id: str
    campaign_id: str
    reason: str
    operator: str
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlRefused:
    """An operator command stopped before any campaign saw it: unsigned, unknown operator,
    bad signature, no right to it, or stale. ``operator`` is the name as claimed (not
    proven); ``occurred_at`` is when the worker refused it. Not a campaign event: the
    campaign replay never sees it."""

    TYPE = "ControlRefused"
    SCHEMA_VERSION = 1

    command_id: str
    campaign_id: str
    operator: str
    reason: str
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordsLost:
    """A worker found records of a work topic gone from the broker: it was ahead of the
    log's end (the broker lost its last writes: noida-db killed keeps about its last second
    only), or a hole that will never fill. ``from_offset`` (included) .. ``to_offset``
    (excluded) are what the worker had read or committed past the end; the worker goes on
    from ``from_offset``, the log's end, where new records are written. Not a campaign
    event: a fact for the audit's account of what was lost (infra/faust/lost_tail.py)."""

    TYPE = "RecordsLost"
    SCHEMA_VERSION = 1

    topic: str
    partition: int
    from_offset: int
    to_offset: int
    found: str  # "position" (the worker had read past the end) | "committed"
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPoisoned:
    """A stage could not process a record, alone, in several tries (an error of the data or
    of the code, not of the broker or the shards, which are waited for): the record is
    passed over, and this fact journaled in its place. What the record named is kept (never
    a number: pseudonyms and ids only); for a request, its sender is reopened (screening is
    told, as for a request denied) so he is answered on a later text. Not a campaign
    event: a fact for the operators and the audit (streams/stages/failures.py)."""

    TYPE = "RecordPoisoned"
    SCHEMA_VERSION = 1

    stage: str  # "screen" | "decide" | "control"
    topic: str
    partition: int
    offset: int
    error: str  # the exception's type (its text is not ours to vouch for)
    record_type: str  # the message's type, "" if unknown
    occurred_at: int
    message_id: str = ""
    campaign_id: str = ""
    sender: str = ""
    command_id: str = ""


Event = (
    TextReceived | TextRejected | SenderScreened | ReplyApproved | ReplyDenied | ReplySent
    | ReplyAttempted | ReplyFailed | ReplyUncertain | DeliveryReported | ReplyRefunded
    | ReplyCostReconciled | PolicyChanged | BudgetCredited | ControlRejected | ReplyDeferred
    | ReplyExpired | SurgeStarted | SurgeEnded | ControlRefused | RecordsLost | SenderReopened
    | ReplyPromoted | TextTimeClamped | RecordPoisoned
)

EVENT_TYPES: tuple[type, ...] = (
    SenderReopened,
    ReplyPromoted,
    ReplyHeldBack,
    TextReceived,
    TextRejected,
    TextTimeClamped,
    TextBodyKept,
    SenderScreened,
    ReplyApproved,
    ReplyDenied,
    ReplySent,
    ReplyAttempted,
    ReplyFailed,
    ReplyUncertain,
    DeliveryReported,
    ReplyRefunded,
    ReplyCostReconciled,
    PolicyChanged,
    BudgetCredited,
    ControlRejected,
    ReplyDeferred,
    ReplyExpired,
    SurgeStarted,
    SurgeEnded,
    ControlRefused,
    RecordsLost,
    RecordPoisoned,
)

for _cls in EVENT_TYPES:  # the cheaper __init__, same signature (schemas.frozen)
    fast_init(_cls)
del _cls
