"""Every reason a decision gives, in one place. The strings are in journals: never rename one
(an upcaster in ``schemas.codec`` would have to map the old name).

- Screening (``SenderScreened.reason`` of a ``suppress`` verdict), in the order the rules
  are tried (``streams.rules.screening.decide_screening``; ``duplicate`` only in older journals).
- Denials (``ReplyDenied.reason``): the campaign (``actors.campaign.decide_reply``, the
  allowance's ``actors.pacing.allowance_check``, which writes its three out because the
  flood modules import the standard library only), the surge queue and the shard.
- Expiries (``ReplyExpired.reason``): a queued request that left the queue unanswered.
- Reviews (``ReviewRequest.reason``): what screening tells the campaign of a queued sender.
- Edge refusals (``TextRejected.reason``): a text both providers' intakes take in but no
  campaign does (``streams.intake.build``).
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

# Edge refusals (``TextRejected.reason``): a text the webhook took but no campaign does.
UNKNOWN_RECIPIENT: Final = "unknown_recipient"  # MessageBird classic: our number is no campaign's
UNKNOWN_CHANNEL: Final = "unknown_channel"  # Bird: the channel is no campaign's
EDGE_REASONS: Final = (UNKNOWN_RECIPIENT, UNKNOWN_CHANNEL)

# Not a decision's reason: the audit report's column of every ReplyExpired, whatever its reason.
EXPIRED: Final = "expired"
