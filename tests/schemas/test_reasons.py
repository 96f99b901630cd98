"""The reasons are in journals: one list, never renamed, and the written-out copies agree."""

import ast

from actors.pacing import AllowanceState, allowance_check
from schemas import reasons
from tests.factories import ROOT


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


def test_the_reasons_of_the_edge_and_the_send_stage_are_the_journals_ones():
    assert reasons.EDGE_REASONS == ("unknown_recipient", "unknown_channel")
    assert reasons.FAILURE_REASONS == ("provider_rejected", "provider_unavailable",
                                       "reply_to_lost")
    assert reasons.UNCERTAIN_REASONS == ("timeout", "connection_lost", "unreadable_answer",
                                         "crash_during_send")
    groups = (reasons.SCREENING_REASONS, reasons.DENIAL_REASONS, reasons.EXPIRY_REASONS,
              reasons.REVIEW_REASONS, reasons.EDGE_REASONS, reasons.FAILURE_REASONS,
              reasons.UNCERTAIN_REASONS)
    assert reasons.ALL_REASONS == {r for group in groups for r in group}
    # Every reason constant of the module is in a group (the report's EXPIRED is a column).
    constants = {v for k, v in vars(reasons).items() if k.isupper() and isinstance(v, str)}
    assert constants - reasons.ALL_REASONS == {reasons.EXPIRED}


# Calls whose ``reason`` is not one of a text's or a reply's: an operator's refusal is told
# in words (ControlRejected), and the embedded broker's status says why it is down.
NOT_A_TEXT_S_REASON = {"ControlRejected", "_set"}


def _written_reasons() -> dict[str, str]:
    """Every string given as ``reason=`` or ``refusal=`` in the code: where -> the string."""
    found = {}
    for folder in ("actors", "infra", "schemas", "streams"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                callee = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                for kw in node.keywords:
                    if (kw.arg in ("reason", "refusal") and isinstance(kw.value, ast.Constant)
                            and isinstance(kw.value.value, str)
                            and callee not in NOT_A_TEXT_S_REASON):
                        found[f"{path.relative_to(ROOT)}:{node.lineno}"] = kw.value.value
    return found


def test_every_reason_written_in_the_code_is_in_the_one_list():
    written = _written_reasons()
    assert {where: r for where, r in written.items() if r not in reasons.ALL_REASONS} == {}


def test_the_guard_sees_a_reason_written_out():
    tree = ast.parse('ReplyFailed(reason="oops")\nControlRejected(reason="in words")')
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    spelled = {kw.value.value for c in calls for kw in c.keywords
               if c.func.id not in NOT_A_TEXT_S_REASON}
    assert spelled == {"oops"}


def test_every_outcome_of_a_send_given_up_carries_a_listed_reason():
    # given each error the gateway can raise, then the send's outcome (infra.sending.deliver)
    # says why it gave up with a reason of the list
    import asyncio

    from infra.gateway import (
        GatewayConnectionLost,
        GatewayError,
        GatewayRejected,
        GatewayTimeout,
        GatewayUnavailable,
    )
    from infra.sending import CircuitBreaker, RetryPolicy, deliver

    async def attempt(n):
        pass

    async def no_sleep(s):
        pass

    def outcome(error):
        async def call():
            raise error("no")
        return asyncio.run(deliver(call, attempt, retry=RetryPolicy(max_attempts=2),
                                   breaker=CircuitBreaker(), sleep=no_sleep))

    got = {e.__name__: (o.kind, o.reason) for e in (
        GatewayRejected, GatewayUnavailable, GatewayTimeout, GatewayConnectionLost, GatewayError)
        for o in [outcome(e)]}
    assert got == {
        "GatewayRejected": ("failed", reasons.PROVIDER_REJECTED),
        "GatewayUnavailable": ("failed", reasons.PROVIDER_UNAVAILABLE),
        "GatewayTimeout": ("uncertain", reasons.TIMEOUT),
        "GatewayConnectionLost": ("uncertain", reasons.CONNECTION_LOST),
        "GatewayError": ("uncertain", reasons.UNREADABLE_ANSWER),
    }


def test_every_reason_the_core_gives_in_the_scenarios_is_in_the_one_list():
    # given the named scenarios run through the real core (screening, campaign, surge), then
    # every "no" it journals carries a reason of the list
    from streams.simulate.outcomes import core_runner
    from streams.simulate.scenarios import NAMES, generate_plan

    given = set()
    for name in NAMES:
        plan = generate_plan(name, seed=3)
        pipelines: list = []
        core_runner(plan.campaign, {}, pipelines=pipelines)(plan.texts)
        given |= {e.reason for e in pipelines[0].events if getattr(e, "reason", None)}
    assert {"already_answered", "flooder"} <= given <= reasons.ALL_REASONS
