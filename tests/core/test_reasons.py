"""The reasons are in journals: one list, never renamed, and the written-out copies agree."""

import ast

from actors.pacing import AllowanceState, allowance_check
from schemas import reasons
from tests.core.test_purity import ROOT


def test_the_reason_strings_are_the_journals_ones():
    assert reasons.SCREENING_REASONS == (
        "duplicate", "flooder", "invalid_number", "not_mobile", "country_not_allowed",
        "blocked_prefix", "test_text", "already_answered")
    assert reasons.DENIAL_REASONS == (
        "budget_exhausted", "reserve_reached", "not_started", "ended", "unknown_campaign",
        "prefix_flood", "allowance", "queue_full", "raid_words", "other_campaign")
    assert reasons.EXPIRY_REASONS == ("ttl", "queue_full", "flooder", "raid", "budget_exhausted",
                                      "raid_words", "other_campaign")
    assert reasons.REVIEW_REASONS == ("flooder", "texted_again", "other_campaign")
    assert reasons.TICK_EXPIRIES <= set(reasons.EXPIRY_REASONS)


def test_the_allowance_writes_out_denial_reasons_only():
    # actors/pacing.py imports the standard library only, so it spells its reasons out.
    tree = ast.parse((ROOT / "actors/pacing.py").read_text())
    check = next(n for n in ast.walk(tree)
                 if isinstance(n, ast.FunctionDef) and n.name == "allowance_check")
    returned = {n.value.value for n in ast.walk(check)
                if isinstance(n, ast.Return) and isinstance(n.value, ast.Constant)
                and isinstance(n.value.value, str)}
    assert returned == {"budget_exhausted", "reserve_reached", "allowance"}
    assert returned <= set(reasons.DENIAL_REASONS)
    assert allowance_check(AllowanceState(), 10, 5, 0, 100, 0, 1) == reasons.BUDGET_EXHAUSTED
