"""What a policy did with the texts: ``Outcome``, the two baselines and the real core's run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.campaign import Campaign
from schemas.commands import ChangePolicy
from schemas.events import ReplyApproved
from schemas.reasons import UNKNOWN_RECIPIENT
from streams.intake.build import IntakeBuilder
from streams.rules.pipeline import Pipeline
from streams.simulate.generation import DAY_MS, HOUR_MS, MINUTE_MS, TROLL_KINDS, Scenario, SimText

# A policy under test: takes the texts (sorted by time) and returns, per message id, the cost
# in micro-euros of the reply it approved, or None when it sent none. Ids left out count as
# None. Report progress through a closure (e.g. a ``Progress``) if you want it.
PolicyRunner = Callable[[Sequence[SimText]], Mapping[str, int | None]]


@dataclass
class Outcome:
    """What a policy did with the texts. Money is in micro-euros (1 EUR = 1_000_000)."""

    name: str
    eur_spent: int  # micro-euros, despite the name
    genuine_senders_answered: int  # distinct genuine senders who got at least one reply
    testers_answered: int  # distinct testers who got at least one reply
    troll_spend_micros: int  # spend on replies to any troll kind
    budget_ran_out_at_ms: int | None  # after this reply the budget could not pay another
    # (at_ms, cumulative spend micros, cumulative genuine senders answered), on a regular grid
    series: list[tuple[int, int, int]] = field(default_factory=list)
    texts_answered: int = 0
    budget_micros: int = 0
    start_ms: int = 0  # origin of "day N hh:mm" (UTC midnight of the first text's day)
    flood_window_ms: tuple[int, int] | None = None  # first and last troll text, if any


def _sorted(texts: Iterable[SimText]) -> list[SimText]:
    return sorted(texts, key=lambda t: (t.at_ms, t.message_id))


def outcome_from_decisions(
    name: str,
    texts: Iterable[SimText],
    decisions: Mapping[str, int | None],
    budget_micros: int,
    *,
    reply_cost_micros: int | None = None,
    start_ms: int | None = None,
    sample_every_ms: int = 15 * MINUTE_MS,
) -> Outcome:
    """Score approved replies (``{message_id: cost_micros or None}``) against the ground truth.

    Each reply is counted at its text's time. The budget has "run out" at the reply after which
    ``budget_micros - spent < reply_cost_micros`` (default: the cheapest approved reply); a
    policy that pauses or paces replies without emptying the budget never runs out.
    """
    ordered = _sorted(texts)
    known = {t.message_id for t in ordered}
    unknown = [mid for mid in decisions if mid not in known]
    if unknown:
        raise ValueError(f"{len(unknown)} decisions name message ids that are not in the texts")
    costs = {}
    for mid, cost in decisions.items():
        if cost is None:
            continue
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
            raise ValueError("a decision's cost must be a non-negative int (micros) or None")
        costs[mid] = cost
    threshold = reply_cost_micros if reply_cost_micros is not None else min(costs.values(), default=None)
    if start_ms is None:
        start_ms = (ordered[0].at_ms // DAY_MS) * DAY_MS if ordered else 0
    if sample_every_ms <= 0:
        raise ValueError("sample_every_ms must be positive")

    spent = troll = answered_texts = 0
    genuine: set[str] = set()
    testers: set[str] = set()
    ran_out = None
    if ordered and threshold is not None and budget_micros < threshold:
        ran_out = ordered[0].at_ms  # could not pay a single reply
    series: list[tuple[int, int, int]] = []
    next_sample = start_ms
    trolls = [t.at_ms for t in ordered if t.kind in TROLL_KINDS]

    for t in ordered:
        while next_sample < t.at_ms:
            series.append((next_sample, spent, len(genuine)))
            next_sample += sample_every_ms
        cost = costs.get(t.message_id)
        if cost is None:
            continue
        spent += cost
        answered_texts += 1
        if t.kind == "genuine":
            genuine.add(t.sender)
        elif t.kind == "tester":
            testers.add(t.sender)
        elif t.kind in TROLL_KINDS:
            troll += cost
        if ran_out is None and threshold is not None and budget_micros - spent < threshold:
            ran_out = t.at_ms
    series.append((next_sample, spent, len(genuine)))

    return Outcome(
        name=name, eur_spent=spent, genuine_senders_answered=len(genuine),
        testers_answered=len(testers), troll_spend_micros=troll, budget_ran_out_at_ms=ran_out,
        series=series, texts_answered=answered_texts, budget_micros=budget_micros,
        start_ms=start_ms, flood_window_ms=(trolls[0], trolls[-1]) if trolls else None,
    )


def run_policy(name: str, runner: PolicyRunner, texts: Sequence[SimText], budget_micros: int,
               *, reply_cost_micros: int | None = None) -> Outcome:
    """Run a policy over the texts (sorted by time) and score its decisions."""
    ordered = _sorted(texts)
    return outcome_from_decisions(name, ordered, runner(ordered), budget_micros,
                                  reply_cost_micros=reply_cost_micros)


def answer_every_text(texts: Iterable[SimText], reply_cost_micros: int, budget_micros: int) -> Outcome:
    """The 2017 behaviour: every text gets a reply while the budget lasts."""
    decisions: dict[str, int | None] = {}
    spent = 0
    for t in _sorted(texts):
        if spent + reply_cost_micros <= budget_micros:
            decisions[t.message_id] = reply_cost_micros
            spent += reply_cost_micros
    return outcome_from_decisions("answer every text (2017)", texts, decisions, budget_micros,
                                  reply_cost_micros=reply_cost_micros)


def answer_once_per_sender(texts: Iterable[SimText], reply_cost_micros: int,
                           budget_micros: int) -> Outcome:
    """One reply per sender (his first text) while the budget lasts; nothing else."""
    decisions: dict[str, int | None] = {}
    answered: set[str] = set()
    spent = 0
    for t in _sorted(texts):
        if t.sender not in answered and spent + reply_cost_micros <= budget_micros:
            decisions[t.message_id] = reply_cost_micros
            spent += reply_cost_micros
            answered.add(t.sender)
    return outcome_from_decisions("answer once per sender", texts, decisions, budget_micros,
                                  reply_cost_micros=reply_cost_micros)


# --------------------------------------------------------------------------- the core


REPLY_2017 = (
    "Bonjour. Ce numéro sert à tenir à distance les gens qui insistent. Par votre faute, une "
    "femme ne s'est pas sentie en sécurité. Non, c'est non : elle n'a pas à se justifier. Ne la "
    "contactez plus jamais. Ce message est automatique."
)  # 229 GSM-7 characters: two segments, EUR 0.16 at EUR 0.08 a segment


def campaign_2017(scenario: Scenario, budget_micros: int) -> Campaign:
    """The 2017 campaign: one year from the launch, pacing on, the default policy."""
    return Campaign(
        id="paris-2017", number="33644630001", reply_text=REPLY_2017, language="fr", country="FR",
        budget_micros=budget_micros, price_per_segment_micros=80_000,
        starts_at=scenario.start_ms, ends_at=scenario.start_ms + 365 * DAY_MS,
        originator="AntiRelou",
    )


# The flood rules the simulator tries beside the configured policy (core units): a surge is 5x
# the last hour's first texts a minute (and at least 20); deferred replies wait up to two
# hours, the best 1,000 of them, released at most 5 a minute; a number range may send 5 first
# texts at once, then one every 10 minutes.
FLOOD_RULES: dict[str, object] = {
    "surge_multiple": 5, "surge_min_rate": 20, "surge_quiet_minutes": 10, "surge_queue": 1_000,
    "surge_ttl_ms": 2 * HOUR_MS, "surge_release_per_minute": 5,
    "prefix_burst": 5, "prefix_period_ms": 10 * MINUTE_MS,
}


def core_runner(campaign: Campaign, changes: Mapping[str, object] | None = None,
                stats: dict[str, int] | None = None,
                pipelines: list[Pipeline] | None = None) -> PolicyRunner:
    """Run the texts through the real decision core (``streams.rules.pipeline.Pipeline``:
    screening, the campaign shard, outcomes back to the senders), as the live system would,
    with the campaign's policy (plus ``changes``, core units).

    Between texts the clock ticks once a minute while the campaign has a queue or a surge
    (the live shell ticks every few seconds), and after the last text until the queue is
    empty. ``stats`` (if given) receives the counts of each campaign event type and denial
    reason; ``pipelines`` (if given) receives the pipeline, to read its events."""

    def run(texts: Sequence[SimText]) -> dict[str, int | None]:
        pipeline = Pipeline([campaign])
        if pipelines is not None:
            pipelines.append(pipeline)
        if changes:
            pipeline.shard.control([ChangePolicy(command_id="sim-policy", campaign_id=campaign.id,
                                                 changes=dict(changes), operator="simulator",
                                                 occurred_at=campaign.starts_at)])
        # The live intake, offline: the sender's number is his own "pseudonym", nothing is
        # sealed, and each text arrives when it is dated.
        intake = IntakeBuilder(pseudonym=str, seal=lambda number, **bound: "")
        for text in texts:
            pipeline.text(intake.text(text, campaign, received_at=text.at_ms,
                                      reached=campaign.number, refusal=UNKNOWN_RECIPIENT).command)
        if texts:
            pipeline.tick_out(campaign.id, texts[-1].at_ms,
                              pipeline.policy(campaign.id).surge_ttl_ms + 2 * MINUTE_MS)
        out: dict[str, int | None] = {}
        for event in pipeline.events:
            if isinstance(event, ReplyApproved):
                out[event.message_id] = event.cost_micros
            if stats is not None and hasattr(event, "seq"):
                name = type(event).__name__
                reason = getattr(event, "reason", None)
                key = f"{name}:{reason}" if reason else name
                if name == "ReplyApproved" and event.deferred_at is not None:
                    key = "released"
                stats[key] = stats.get(key, 0) + 1
        return out

    return run
