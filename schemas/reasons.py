"""Every reason a "no" gives, in one place: from the edge to the send stage, each refusal of a
text or a reply is an event with one of these, so the journal alone says why a sender was
not answered. The strings are in journals: never rename one (an upcaster in
``schemas.codec`` would have to map the old name). ``tests/schemas/test_reasons.py`` holds
every reason written in the code to this list.

- Screening (``SenderScreened.reason`` of a ``suppress`` verdict), in the order the rules
  are tried (``streams.rules.screening.decide_screening``; ``duplicate`` only in older journals).
- Denials (``ReplyDenied.reason``): the campaign (``actors.campaign.decide_reply``, the
  allowance's ``actors.pacing.allowance_check``, which writes its three out because the
  flood modules import the standard library only), the surge queue and the shard.
- Expiries (``ReplyExpired.reason``): a queued request that left the queue unanswered.
- Reviews (``ReviewRequest.reason``): what screening tells the campaign of a queued sender.
- Edge refusals (``TextRejected.reason``): a text both providers' intakes take in but no
  campaign does (``streams.intake.build``).
- Send give-ups (``ReplyFailed.reason``): a reply not sent, refunded (``infra.sending``,
  the send and decide stages).
- Uncertain sends (``ReplyUncertain.reason``): a reply that may have gone out.

Operators' refusals (``ControlRejected``, ``ControlRefused``) are not here: they answer the
operator who asked, in words (``actors.campaign``, ``infra.operators``), and no text waits
on them.
"""

from __future__ import annotations

from typing import Final

# Screening
DUPLICATE: Final = "duplicate"
FLOODER: Final = "flooder"
INVALID_NUMBER: Final = "invalid_number"
NOT_MOBILE: Final = "not_mobile"
COUNTRY_NOT_ALLOWED: Final = "country_not_allowed"
BLOCKED_PREFIX: Final = "blocked_prefix"
TEST_TEXT: Final = "test_text"
ALREADY_ANSWERED: Final = "already_answered"
SCREENING_REASONS: Final = (DUPLICATE, FLOODER, INVALID_NUMBER, NOT_MOBILE, COUNTRY_NOT_ALLOWED,
                            BLOCKED_PREFIX, TEST_TEXT, ALREADY_ANSWERED)

# Denials
BUDGET_EXHAUSTED: Final = "budget_exhausted"
RESERVE_REACHED: Final = "reserve_reached"
NOT_STARTED: Final = "not_started"
ENDED: Final = "ended"
UNKNOWN_CAMPAIGN: Final = "unknown_campaign"
PREFIX_FLOOD: Final = "prefix_flood"
ALLOWANCE: Final = "allowance"
QUEUE_FULL: Final = "queue_full"
# Content and sender evidence (actors.evidence): the text carries words a raid is pasting (words
# that arrive with a burst of first texts and were rare before it), or its sender texted
# another campaign of the deployment within a day.
RAID_WORDS: Final = "raid_words"
OTHER_CAMPAIGN: Final = "other_campaign"
DENIAL_REASONS: Final = (BUDGET_EXHAUSTED, RESERVE_REACHED, NOT_STARTED, ENDED, UNKNOWN_CAMPAIGN,
                         PREFIX_FLOOD, ALLOWANCE, QUEUE_FULL, RAID_WORDS, OTHER_CAMPAIGN)

# Expiries (FLOODER, QUEUE_FULL and BUDGET_EXHAUSTED are the same words as above)
TTL: Final = "ttl"
RAID: Final = "raid"  # older journals: a whole surge's first texts judged a raid at its end
EXPIRY_REASONS: Final = (TTL, QUEUE_FULL, FLOODER, RAID, BUDGET_EXHAUSTED, RAID_WORDS,
                         OTHER_CAMPAIGN)
# Those a tick decides (the others: a request, or screening's review).
TICK_EXPIRIES: Final = frozenset({TTL, RAID, BUDGET_EXHAUSTED, RAID_WORDS})

# Reviews
TEXTED_AGAIN: Final = "texted_again"
REVIEW_REASONS: Final = (FLOODER, TEXTED_AGAIN, OTHER_CAMPAIGN)

# Edge refusals: a text a provider brought that no campaign takes
UNKNOWN_RECIPIENT: Final = "unknown_recipient"  # MessageBird classic: our number is no campaign's
UNKNOWN_CHANNEL: Final = "unknown_channel"  # Bird: the channel is no campaign's
EDGE_REASONS: Final = (UNKNOWN_RECIPIENT, UNKNOWN_CHANNEL)

# Send give-ups: nothing was sent (refunded)
PROVIDER_REJECTED: Final = "provider_rejected"  # a 4xx or an error answer: at once
PROVIDER_UNAVAILABLE: Final = "provider_unavailable"  # 5xx, 429, unreachable: every attempt
REPLY_TO_LOST: Final = "reply_to_lost"  # the sealed number is gone: nothing to send to
FAILURE_REASONS: Final = (PROVIDER_REJECTED, PROVIDER_UNAVAILABLE, REPLY_TO_LOST)

# Uncertain sends: the reply may have gone out; never sent again, never refunded
TIMEOUT: Final = "timeout"  # no answer after the request left
CONNECTION_LOST: Final = "connection_lost"  # dropped after the request was sent
UNREADABLE_ANSWER: Final = "unreadable_answer"  # an answer we cannot read
CRASH_DURING_SEND: Final = "crash_during_send"  # the worker stopped during the call
UNCERTAIN_REASONS: Final = (TIMEOUT, CONNECTION_LOST, UNREADABLE_ANSWER, CRASH_DURING_SEND)

# Every reason a text or a reply can be given: the journal's whole answer to "why was this
# sender not answered".
ALL_REASONS: Final = frozenset((*SCREENING_REASONS, *DENIAL_REASONS, *EXPIRY_REASONS,
                                *REVIEW_REASONS, *EDGE_REASONS, *FAILURE_REASONS,
                                *UNCERTAIN_REASONS))

# Not a decision's reason: the audit report's column of every ReplyExpired, whatever its reason.
EXPIRED: Final = "expired"
