"""What a campaign file can hold that parses and still can never work: checked by
``antirelou check`` and by ``up`` / ``worker`` before anything starts, one line each with
the campaign's name.

Errors (``check`` exits 2, ``up`` does not start): no reply can ever be paid (the budget,
less the reserve, is below one reply's cost: a budget of 0, a price of EUR 800, a reserve
not below the budget); no number is answered (``allowed_countries`` empty).
Warnings: the campaign has ended (every text is denied ``ended``; a file may keep it for the
audit of its journal); its number is of a kind that does not receive texts (a fixed line,
premium rate...); the budget pays fewer than ``FEW_REPLIES`` replies.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.campaign import reply_cost
from actors.state import initial_policy
from schemas.campaign import Campaign
from streams.cli.common import eur, iso_ms

# Fewer replies than this on the whole budget is said (a price typed in EUR per reply?).
FEW_REPLIES = 100


@dataclass(frozen=True)
class Problem:
    campaign_id: str
    error: bool  # False: a warning
    text: str


def campaign_problems(campaigns: list[Campaign], now_ms: int) -> list[Problem]:
    out: list[Problem] = []
    for c in campaigns:
        out += [Problem(c.id, True, text) for text in _never_replies(c)]
        policy = initial_policy(c)
        replies = (c.budget_micros - policy.reserve_micros) // reply_cost(c, policy).cost_micros
        if 0 < replies < FEW_REPLIES:
            out.append(Problem(c.id, False, f"the budget pays only {replies} replies"))
        if c.ends_at <= now_ms:
            out.append(Problem(c.id, False, f"ended on {iso_ms(c.ends_at - 1)[:10]}: every text "
                               "is denied 'ended' (keep it only to audit its journal)"))
        kind = _number_kind(c.number)
        if kind is not None:
            out.append(Problem(c.id, False, f"its number +{c.number} is a {kind} number: most "
                               "cannot receive texts (use a mobile or an SMS-enabled virtual "
                               "number)"))
    return out


def _never_replies(c: Campaign) -> list[str]:
    policy = initial_policy(c)
    cost = reply_cost(c, policy).cost_micros
    out = []
    if policy.reserve_micros and policy.reserve_micros >= c.budget_micros:
        out.append(f"the reserve EUR {eur(policy.reserve_micros)} is not below the budget EUR "
                   f"{eur(c.budget_micros)}: no reply can ever be paid")
    elif c.budget_micros - policy.reserve_micros < cost:
        less = f" less the reserve EUR {eur(policy.reserve_micros)}" if policy.reserve_micros else ""
        out.append(f"the budget EUR {eur(c.budget_micros)}{less} pays no reply of EUR "
                   f"{cost / 1e6:.4f} (0 replies): raise budget_eur or lower the price")
    if not policy.allowed_countries:
        out.append("allowed_countries is empty: no number is answered")
    return out


def _number_kind(number: str) -> str | None:
    """The kind of a campaign number that does not take texts (None: mobile, VoIP, unsure)."""
    import phonenumbers
    from phonenumbers import PhoneNumberType as T

    kinds = {T.FIXED_LINE: "fixed-line", T.PREMIUM_RATE: "premium-rate",
             T.TOLL_FREE: "toll-free", T.SHARED_COST: "shared-cost"}
    try:
        return kinds.get(phonenumbers.number_type(phonenumbers.parse("+" + number)))
    except phonenumbers.NumberParseException:
        return None
