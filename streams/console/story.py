"""One sender's story in plain words (``antirelou why NUMBER``, the dashboard's "why"):
every text, its verdict and reason, the waits, releases and expiries, the reply sent or
why not. Read from the journal alone (every "no" is an event with a reason); pure: the
caller gives the events and the sender's pseudonym.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from schemas import reasons as r

WORDS = {
    r.ALREADY_ANSWERED: "he was already answered (one reply per sender)",
    r.FLOODER: "he texts too fast (a flooder)",
    r.DUPLICATE: "a copy of a text already taken",
    r.INVALID_NUMBER: "his number is not a valid phone number",
    r.NOT_MOBILE: "his number is not a mobile number",
    r.COUNTRY_NOT_ALLOWED: "his number's country is not served",
    r.BLOCKED_PREFIX: "his number range is blocked",
    r.TEST_TEXT: "the text looks like a test of the number",
    r.BUDGET_EXHAUSTED: "the campaign's money was spent",
    r.RESERVE_REACHED: "the budget was down to its reserve",
    r.NOT_STARTED: "the campaign had not started",
    r.ENDED: "the campaign had ended",
    r.UNKNOWN_CAMPAIGN: "no campaign has this number",
    r.PREFIX_FLOOD: "too many first texts from his number range at once",
    r.ALLOWANCE: "the spending allowance of the moment was used up",
    r.QUEUE_FULL: "the waiting line was full",
    r.RAID_WORDS: "his words are those a raid was pasting",
    r.OTHER_CAMPAIGN: "the same number texted another campaign within a day",
    r.TTL: "it waited longer than a request may",
    r.RAID: "his surge was judged a raid",
    r.PROVIDER_REJECTED: "the SMS provider refused it",
    r.PROVIDER_UNAVAILABLE: "the SMS provider could not be reached",
    r.REPLY_TO_LOST: "the number to reply to was lost",
    r.TIMEOUT: "the SMS provider did not answer in time",
    r.CONNECTION_LOST: "the connection dropped during the send",
    r.UNREADABLE_ANSWER: "the SMS provider's answer could not be read",
    r.CRASH_DURING_SEND: "the worker stopped during the send",
}


def words(reason: str | None) -> str:
    return WORDS.get(reason or "", reason or "no reason given")


def hhmm(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%H:%M:%S")


def when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def eur(micros: int) -> str:
    return f"EUR {micros / 1e6:,.2f}"


def _said(e: Any) -> str | None:  # noqa: C901 - one plain sentence per event type
    kind = e.TYPE
    if kind == "TextReceived":
        where = ", ".join(x for x in (e.number_kind, e.country or "", e.prefix) if x)
        # A text whose body is kept apart (its decision fields set) has none in the journal.
        body = f': "{e.body}"' if getattr(e, "test_text", None) is None else ""
        return f"text {e.message_id} received{body} ({where})"
    if kind == "TextTimeClamped":
        return f"its time said {when(e.reported_at)}; taken as {when(e.occurred_at)}"
    if kind == "SenderScreened":
        if e.verdict == "forward":
            return f"passed on to the campaign (his text #{e.texts_from_sender})"
        return f"not answered: {words(e.reason)} (his text #{e.texts_from_sender})"
    if kind == "SenderReopened":
        return f"may be answered again ({e.outcome.replace(':', ': ')})"
    if kind == "ReplyDeferred":
        hold = f" until {hhmm(e.hold_until)}" if e.hold_until else ""
        return f"reply held for the safety delay{hold} ({e.queued} waiting)"
    if kind == "ReplyHeldBack":
        raid = "in a raid's minute" if e.in_raid else "in a surge"
        again = ", he texted again" if e.texted_again else ""
        return (f"held back {raid}: his minute's first texts at {e.excess_percent}% of the usual "
                f"rate{again}; rank {e.rank}")
    if kind == "ReplyPromoted":
        return "moved up the waiting line (he texted again)"
    if kind == "ReplyApproved":
        released = f"released (waiting since {hhmm(e.deferred_at)}): " if e.deferred_at else ""
        return (f"{released}reply approved, {eur(e.cost_micros)}; balance after "
                f"{eur(e.balance_after_micros)}; to send at {hhmm(e.send_at)}")
    if kind == "ReplyDenied":
        return f"reply refused: {words(e.reason)}"
    if kind == "ReplyExpired":
        return f"request withdrawn (waiting since {hhmm(e.deferred_at)}): {words(e.reason)}"
    if kind == "ReplySent":
        return "reply sent" + (" (dry run: journaled, no SMS)" if e.dry_run else "")
    if kind == "ReplyFailed":
        return f"reply not sent after {e.attempts} attempt(s): {words(e.reason)}; refunded"
    if kind == "ReplyUncertain":
        return f"reply may have gone out: {words(e.reason)}"
    if kind == "DeliveryReported":
        return f"delivery report: {e.status}"
    if kind == "ReplyRefunded":
        return f"refunded {eur(e.refund_micros)}"
    return None


def sender_story(events: Iterable[Any], sender: str, campaign: str | None = None) -> list[str]:
    """The lines of ``sender``'s story (journal order: a sender's events are in one
    partition, in order); the last says whether he was answered. Empty: no event of his."""
    lines, texts, sent, last_no = [], 0, 0, None
    campaigns: set[str] = set()
    for e in events:
        if getattr(e, "sender", None) != sender:
            continue
        if campaign is not None and getattr(e, "campaign_id", None) != campaign:
            continue
        said = _said(e)
        if said is None:
            continue
        campaigns.add(e.campaign_id)
        texts += e.TYPE == "TextReceived"
        sent += e.TYPE == "ReplySent"
        if said.startswith(("not answered", "reply refused", "request withdrawn", "reply not")):
            last_no = said
        indent = "" if e.TYPE == "TextReceived" else "  "
        lines.append(f"{when(e.occurred_at)}  {e.campaign_id:<8}  {indent}{said}")
    if not lines:
        return []
    if sent:
        end = f"answered: {sent} reply(ies) sent"
    else:
        end = f"not answered; the last refusal: {last_no}" if last_no else "not answered yet"
    return [*lines, f"{texts} text(s) to {', '.join(sorted(campaigns))}; {end}"]
