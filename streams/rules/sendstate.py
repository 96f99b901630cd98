"""The send stage's at-most-once rule, and what a delivery report's price settles. Pure.

``replies_by_message`` (a changelog-backed table, partitioned like sms-outbound, where every
copy of one SendReply arrives) says where each reply got to::

    (none) --first copy--> attempting --the gateway's outcome--> sent | failed | uncertain
    attempting --a copy redelivered after a crash mid-call--> uncertain (never sent again)

"attempting" is stored (flushed, acks=all) and ReplyAttempted journaled before any call, so a
copy that finds it comes after a crash mid-call. ``streams.stages.send`` is the shell.
"""

from __future__ import annotations

# Where a reply got to (the values of replies_by_message); "sent", "failed" and "uncertain"
# are also the kinds of infra.sending.Outcome, stored as they are.
ATTEMPTING = "attempting"
SENT = "sent"
FAILED = "failed"
UNCERTAIN = "uncertain"

# What to do with one copy of a SendReply.
SEND = "send"  # the first copy: mark it attempting, then call the gateway
DROP = "drop"  # a copy of a reply this worker is sending right now
MARK_UNCERTAIN = "mark_uncertain"  # a send was under way when the worker stopped
SETTLE_AGAIN = "settle_again"  # failed: the refund may not have been asked for
SKIP = "skip"  # already sent (or uncertain): not sent again

# The table value each step stores at once, before any await (None: left as it is).
MARK_OF_STEP: dict[str, str | None] = {
    SEND: ATTEMPTING, DROP: None, MARK_UNCERTAIN: UNCERTAIN, SETTLE_AGAIN: None, SKIP: None,
}


def next_step(where: str | None, in_flight: bool) -> str:
    """The step for a copy of a SendReply whose reply is at ``where`` in the table
    (None: never seen), ``in_flight`` if this worker is sending it right now."""
    if where is None:
        return SEND
    if in_flight:
        return DROP
    if where == ATTEMPTING:
        return MARK_UNCERTAIN
    if where == FAILED:
        return SETTLE_AGAIN
    return SKIP


def price_settles(price_micros: int | None, currency: str | None) -> bool:
    """Whether a delivery report's price replaces the campaign's estimated cost: a price in
    the budget's currency, EUR, said so (a price without a currency is journaled with the
    report, and the estimate stays)."""
    return price_micros is not None and currency == "EUR"
