"""Named scenarios with ground truth, run through the real core with the shipped defaults.

``antirelou simulate --scenario NAME [--seed N] [--json]`` (or ``python -m streams.simulate``)
generates one of them and runs it through ``streams.rules.pipeline.Pipeline`` (screening, the
campaign, outcomes back to the senders) beside the baselines:

- ``launch``: a media spike of genuine pests (and curious testers) on a fresh campaign, no
  troll at all. Target: >= 98 % of the genuine senders answered, never above the allowance.
- ``flood-2017``: the 2017 week (``streams.simulate.generate``): the launch, then on day 3
  forum trolls for four hours. Target: >= 97 % genuine answered, troll spend <= 15 % of
  what answering every sender once would have paid them, never dark.
- ``raid``: a genuine stream for two hours on a fresh campaign and a raid of a few minutes
  at >= 40x its rate (persistent, SIM-rotating and one-shot numbers). Target: >= 98 % of the
  genuine senders outside the raid answered, >= 30 % of those who first texted inside it,
  troll spend <= 15 % of answer-once's.
- ``slow-drain``: fresh numbers at a steady trickle for the whole campaign, below any surge
  threshold, beside genuine pests. Target: >= 90 % genuine answered and the balance at the
  end date >= the reserve.

Sizes, rates, shapes and times are drawn from the seed, so another seed is another trace of
the same kind (the defaults are not tuned to one). Every run counts senders answered twice
(the target is 0 everywhere).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.campaign import Campaign
from schemas.events import ReplyApproved, ReplySent
from streams.rules.pipeline import Pipeline
from streams.simulate.generation import (
    DAY_MS,
    GENUINE_FIRST,
    GENUINE_FOLLOW_UP,
    HOUR_MS,
    MICROS_PER_EUR,
    MINUTE_MS,
    PREFIXES_07,
    SECOND_MS,
    TESTER_BODIES,
    TROLL_BODIES,
    TROLL_KINDS,
    Draw,
    Scenario,
    SimText,
    generate,
)
from streams.simulate.outcomes import REPLY_2017, campaign_2017, core_runner

REPLY_COST_MICROS = 160_000  # REPLY_2017: two GSM-7 segments at EUR 0.08
# The raid and launch scenarios start at a fixed date: their campaign is fresh (no history).
FRESH_START_MS = 1_796_148_000_000  # 2026-12-01T18:00:00Z
NAMES = ("launch", "flood-2017", "raid", "slow-drain")


@dataclass(frozen=True)
class Plan:
    """One generated scenario: its texts (sorted), the campaign, the raid's window if any."""

    name: str
    seed: int
    texts: list[SimText]
    campaign: Campaign
    raid: tuple[int, int] | None  # [first, last] troll text, ms
    reserve_micros: int = 0


def _campaign(start: int, days: int, budget_eur: int) -> Campaign:
    return Campaign(id="sim", number="33644630001", reply_text=REPLY_2017, language="fr",
                    country="FR", budget_micros=budget_eur * MICROS_PER_EUR,
                    price_per_segment_micros=80_000, starts_at=start,
                    ends_at=start + days * DAY_MS, originator="AntiRelou")


def _genuine(draw: Draw, out: list[SimText], at: int, end: int) -> None:
    """One genuine pest: 1-3 texts, minutes or hours apart (as in the 2017 generator)."""
    rng = draw.rng
    sender = draw.any_mobile()
    draw.text(out, at, sender, rng.choice(GENUINE_FIRST), "genuine")
    for _ in range(rng.randint(1, 3) - 1):
        at += (rng.randint(60, 45 * 60) if rng.random() < 0.6
               else rng.randint(3600, 10 * 3600)) * SECOND_MS
        if at >= end:
            return
        draw.text(out, at, sender, rng.choice(GENUINE_FOLLOW_UP), "genuine")


def _sorted(out: list[SimText]) -> list[SimText]:
    out.sort(key=lambda t: (t.at_ms, t.message_id))
    return out


def launch(seed: int) -> Plan:
    """Three days from a fresh launch; on day 1 a TV or press mention brings a spike."""
    draw, out = Draw(seed), []
    rng = draw.rng
    start, days = FRESH_START_MS - 18 * HOUR_MS, 3  # midnight
    end = start + days * DAY_MS
    steady = rng.randint(3_000, 6_000)
    for _ in range(steady):  # the launch buzz, fading over three days, evenings heavier
        day = rng.choices(range(days), (0.55, 0.30, 0.15))[0]
        hour = rng.choices(range(24), (3, 2, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6, 7, 6, 6, 6, 7, 8,
                                       10, 11, 12, 12, 10, 6))[0]
        _genuine(draw, out, start + day * DAY_MS + hour * HOUR_MS
                 + rng.randrange(3600) * SECOND_MS, end)
    spike = rng.randint(500, 2_500)  # the mention: a triangular spike of 20 to 120 minutes
    spike_at = start + rng.randint(12, 21) * HOUR_MS
    spike_len = rng.randint(20, 120) * 60
    for _ in range(spike):
        offset = int(rng.triangular(0, spike_len, spike_len * rng.uniform(0.05, 0.5)))
        _genuine(draw, out, spike_at + offset * SECOND_MS, end)
    for _ in range(rng.randint(800, 2_000)):  # curious testers
        at = start + rng.randrange(days * 24 * 3600) * SECOND_MS
        draw.text(out, at, draw.any_mobile(), rng.choice(TESTER_BODIES), "tester")
    return Plan("launch", seed, _sorted(out), _campaign(start, 365, 3_700), None)


def flood_2017(seed: int) -> Plan:
    scenario = Scenario(seed=seed)
    texts = generate(scenario)
    trolls = [t.at_ms for t in texts if t.kind in TROLL_KINDS]
    return Plan("flood-2017", seed, texts, campaign_2017(scenario, scenario.budget_micros),
                (min(trolls), max(trolls)) if trolls else None)


def raid(seed: int) -> Plan:
    """Two hours of genuine pests on a fresh campaign; a raid of a few minutes at >= 40x."""
    draw, out = Draw(seed), []
    rng = draw.rng
    start = FRESH_START_MS
    end = start + 2 * HOUR_MS
    rate = rng.uniform(0.5, 3.0)  # genuine first texts a minute
    at = start
    while True:
        at += int(rng.expovariate(rate) * MINUTE_MS)
        if at >= end:
            break
        _genuine(draw, out, at, start + DAY_MS)
    raid_start = start + rng.randint(30, 70) * MINUTE_MS
    raid_s = rng.randint(3, 10) * 60
    multiple = rng.uniform(40, 120)
    one_shots = int(rate * multiple * raid_s / 60)
    for _ in range(one_shots):
        offset = int(rng.triangular(0, raid_s, raid_s * rng.uniform(0, 0.6)))
        draw.text(out, raid_start + offset * SECOND_MS, draw.any_mobile(),
                  rng.choice(TROLL_BODIES), "one_shot_troll")
    for _ in range(rng.randint(2, 8)):  # persistent: tens to hundreds of texts each
        sender = draw.any_mobile()
        texts = rng.randint(30, 300)
        joined = rng.randrange(raid_s)
        span = raid_s + rng.randint(0, 20 * 60) - joined
        for _ in range(texts):
            draw.text(out, raid_start + (joined + rng.randrange(max(1, span))) * SECOND_MS,
                      sender, rng.choice(TROLL_BODIES), "persistent_troll")
    prefixes = rng.sample(PREFIXES_07, rng.randint(1, 4))
    for _ in range(rng.randint(10, 60)):  # SIM-rotating: 2-10 texts each, a few ranges
        prefix = rng.choice(prefixes)
        sender = draw.number((prefix,), f"{rng.randrange(100):02d}")
        first = rng.randrange(raid_s)
        for _ in range(rng.randint(2, 10)):
            draw.text(out, raid_start + (first + rng.randrange(raid_s)) * SECOND_MS, sender,
                      rng.choice(TROLL_BODIES), "sim_rotating_troll")
    texts = _sorted(out)
    trolls = [t.at_ms for t in texts if t.kind in TROLL_KINDS]
    return Plan("raid", seed, texts, _campaign(start, 365, 3_700), (min(trolls), max(trolls)))


def slow_drain(seed: int) -> Plan:
    """A campaign of a few months drained by fresh numbers, one text each, at a steady
    trickle that never looks like a surge, beside genuine pests."""
    draw, out = Draw(seed), []
    rng = draw.rng
    days = rng.randint(60, 120)
    start = FRESH_START_MS - 18 * HOUR_MS
    end = start + days * DAY_MS
    genuine_a_day = rng.randint(8, 25)
    drain_a_day = rng.randint(15, 45)
    for day in range(days):
        for _ in range(genuine_a_day):
            _genuine(draw, out, start + day * DAY_MS + rng.randrange(24 * 3600) * SECOND_MS, end)
        for _ in range(drain_a_day):
            draw.text(out, start + day * DAY_MS + rng.randrange(24 * 3600) * SECOND_MS,
                      draw.any_mobile(), rng.choice(TROLL_BODIES), "one_shot_troll")
    # A budget that can pay this demand with little to spare: the allowance decides.
    demand = (genuine_a_day + drain_a_day) * days * REPLY_COST_MICROS
    budget_eur = max(100, int(demand * 1.1) // MICROS_PER_EUR)
    campaign = _campaign(start, days, budget_eur)
    return Plan("slow-drain", seed, _sorted(out), campaign, None, reserve_micros=50 * MICROS_PER_EUR)


GENERATORS: dict[str, Callable[[int], Plan]] = {
    "launch": launch, "flood-2017": flood_2017, "raid": raid, "slow-drain": slow_drain,
}


def generate_plan(name: str, seed: int) -> Plan:
    if name not in GENERATORS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(NAMES)}")
    return GENERATORS[name](seed)


# --------------------------------------------------------------------------- scoring


def _baseline(texts: Sequence[SimText], budget: int, once: bool) -> dict[str, int]:
    """Answer every text (2017) or every sender once, while the budget lasts."""
    paid: dict[str, int] = {}
    spent, answered = 0, set()
    for t in texts:
        if (not once or t.sender not in answered) and spent + REPLY_COST_MICROS <= budget:
            paid[t.message_id] = REPLY_COST_MICROS
            spent += REPLY_COST_MICROS
            answered.add(t.sender)
    return paid


def score(plan: Plan, name: str, paid: Mapping[str, int], reserve: int,
          answer_once_troll: int | None) -> dict[str, Any]:
    """The JSON row of one run from the replies it paid (``{message_id: cost}``)."""
    first_at: dict[str, int] = {}
    kind_of: dict[str, str] = {}
    replies: dict[str, int] = {}
    troll = spent = 0
    for t in plan.texts:
        first_at.setdefault(t.sender, t.at_ms)
        kind_of[t.sender] = t.kind
        cost = paid.get(t.message_id)
        if cost is not None:
            spent += cost
            replies[t.sender] = replies.get(t.sender, 0) + 1
            if t.kind in TROLL_KINDS:
                troll += cost
    genuine = [s for s, k in kind_of.items() if k == "genuine"]

    def share(senders: list[str]) -> float | None:
        if not senders:
            return None
        return round(sum(1 for s in senders if s in replies) / len(senders), 4)

    inside = outside = None
    if plan.raid is not None:
        lo, hi = plan.raid
        inside = share([s for s in genuine if lo <= first_at[s] <= hi])
        outside = share([s for s in genuine if not lo <= first_at[s] <= hi])
    budget = plan.campaign.budget_micros
    return {
        "name": name,
        "genuine_answered": share(genuine),
        "genuine_answered_outside_raid": outside,
        "genuine_answered_inside_raid": inside,
        "troll_spend_eur": troll / MICROS_PER_EUR,
        "answer_once_troll_spend_eur": (None if answer_once_troll is None
                                        else answer_once_troll / MICROS_PER_EUR),
        "senders_answered_twice": sum(1 for n in replies.values() if n > 1),
        "ran_out": budget - spent < REPLY_COST_MICROS,
        "balance_end_eur": (budget - spent) / MICROS_PER_EUR,
        "reserve_eur": reserve / MICROS_PER_EUR,
    }


def _core(plan: Plan, changes: Mapping[str, object]) -> tuple[dict[str, int], Pipeline]:
    pipelines: list[Pipeline] = []
    decisions = core_runner(plan.campaign, changes, pipelines=pipelines)(plan.texts)
    return {m: c for m, c in decisions.items() if c is not None}, pipelines[0]


# The runs beside the shipped defaults (core units): what each rule is worth.
ALTERNATIVES: dict[str, dict[str, object]] = {
    "pacing_off": {"pacing": False},
    "surge_off": {"surge_multiple": 0},
    "no_safety_delay": {"reply_delay_ms": 0},
    "no_delay_no_surge": {"reply_delay_ms": 0, "surge_multiple": 0},
}


def run_scenario(name: str, seed: int, alternatives: bool = True) -> dict[str, Any]:
    """The ``--json`` object: the shipped defaults (``default``), the baselines and the
    alternatives, each scored the same way."""
    plan = generate_plan(name, seed)
    reserve = plan.reserve_micros
    base = {"reserve_micros": reserve} if reserve else {}
    budget = plan.campaign.budget_micros
    once = _baseline(plan.texts, budget, once=True)
    troll_kinds = {t.message_id for t in plan.texts if t.kind in TROLL_KINDS}
    once_troll = sum(c for m, c in once.items() if m in troll_kinds)
    runs = []
    paid, pipeline = _core(plan, base)
    default = score(plan, "default", paid, reserve, once_troll)
    default["approved_over_allowance"] = _over_allowance(pipeline)
    runs.append(default)
    runs.append(score(plan, "answer_once", once, 0, once_troll))
    runs.append(score(plan, "answer_every_text", _baseline(plan.texts, budget, once=False), 0,
                      once_troll))
    if alternatives:
        for alt, changes in ALTERNATIVES.items():
            runs.append(score(plan, alt, _core(plan, {**base, **changes})[0], reserve, once_troll))
    return {"scenario": name, "seed": seed, "texts": len(plan.texts), "runs": runs}


def _over_allowance(pipeline: Pipeline) -> int:
    """Approvals the allowance did not cover (0: the bucket held). Checked by replaying the
    approvals against the bucket rule, independently of the decision that made them."""
    from actors.pacing import AllowanceState, allowance_left, allowance_spend

    state = AllowanceState()
    over = 0
    for event in pipeline.events:
        if isinstance(event, ReplyApproved):
            balance = event.balance_after_micros + event.cost_micros
            policy = pipeline.policy(event.campaign_id)
            ends = pipeline.shard.campaign(event.campaign_id).ends_at
            left = allowance_left(state, balance, policy.reserve_micros, policy.burst_percent,
                                  event.occurred_at, ends)
            over += left < event.cost_micros
            allowance_spend(state, event.cost_micros, balance, policy.reserve_micros,
                            policy.burst_percent, event.occurred_at, ends)
    return over


def targets_met(result: dict[str, Any]) -> list[str]:
    """The targets of issue 12 the ``default`` run misses (empty: all met)."""
    d = next(r for r in result["runs"] if r["name"] == "default")
    once = d["answer_once_troll_spend_eur"] or 0
    miss = []
    if d["senders_answered_twice"]:
        miss.append("a sender answered twice")
    name = result["scenario"]
    if name == "launch" and d["genuine_answered"] < 0.98:
        miss.append("launch: genuine < 98 %")
    if name == "launch" and d.get("approved_over_allowance"):
        miss.append("launch: above the allowance")
    if name == "flood-2017":
        if d["genuine_answered"] < 0.97:
            miss.append("flood-2017: genuine < 97 %")
        if d["troll_spend_eur"] > 0.15 * once:
            miss.append("flood-2017: troll spend > 15 % of answer-once")
        if d["ran_out"]:
            miss.append("flood-2017: dark")
    if name == "raid":
        if (d["genuine_answered_outside_raid"] or 0) < 0.98:
            miss.append("raid: genuine outside < 98 %")
        if (d["genuine_answered_inside_raid"] or 0) < 0.30:
            miss.append("raid: genuine inside < 30 %")
        if d["troll_spend_eur"] > 0.15 * once:
            miss.append("raid: troll spend > 15 % of answer-once")
        if d["ran_out"]:
            miss.append("raid: dark")
    if name == "slow-drain":
        if d["genuine_answered"] < 0.90:
            miss.append("slow-drain: genuine < 90 %")
        if d["balance_end_eur"] < d["reserve_eur"]:
            miss.append("slow-drain: balance below the reserve")
    return miss


def render(result: dict[str, Any], as_json: bool) -> str:
    """The result as one JSON object, or as a table a person reads."""
    if as_json:
        import json

        return json.dumps(result)
    cols = (("genuine_answered", "genuine"), ("genuine_answered_outside_raid", "outside raid"),
            ("genuine_answered_inside_raid", "inside raid"), ("troll_spend_eur", "troll EUR"),
            ("senders_answered_twice", "twice"), ("balance_end_eur", "balance EUR"))
    lines = [f"scenario {result['scenario']}, seed {result['seed']}, {result['texts']:,} texts",
             f"{'run':26}" + "".join(f"{label:>14}" for _, label in cols)]
    for run in result["runs"]:
        cells = []
        for key, _ in cols:
            v = run[key]
            text = ("-" if v is None else f"{v:.1%}" if key.startswith("genuine")
                    else f"{v:,.2f}" if key.endswith("_eur") else f"{v:,}")  # 3,629.60
            cells.append(f"{text:>14}")
        lines.append(f"{run['name']:26}" + "".join(cells))
    missed = targets_met(result)
    lines.append("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    return "\n".join(lines)


# --------------------------------------------------------------------------- retimed, live


def retimed(plan: Plan, first_at_ms: int) -> Plan:
    """The same texts moved in time so the first is at ``first_at_ms`` (whole seconds, as
    MessageBird's ``createdDatetime``), with the campaign and the raid window moved along."""
    if not plan.texts:
        return plan
    shift = (first_at_ms - plan.texts[0].at_ms) // SECOND_MS * SECOND_MS
    texts = [SimText(t.at_ms + shift, t.sender, t.body, t.message_id, t.kind) for t in plan.texts]
    c = plan.campaign
    campaign = Campaign(c.id, c.number, c.reply_text, c.language, c.country, c.budget_micros,
                        c.price_per_segment_micros, c.starts_at + shift, c.ends_at + shift,
                        c.originator, c.cooldown_ms, c.pacing)
    raid_window = None if plan.raid is None else (plan.raid[0] + shift, plan.raid[1] + shift)
    return Plan(plan.name, plan.seed, texts, campaign, raid_window, plan.reserve_micros)


def live_row(plan: Plan, journal: Sequence[Any], answer_once_troll: int) -> dict[str, Any]:
    """What the live system did with the plan's texts, from its journal: a reply counts when
    it was sent (``ReplySent``), at the cost its approval paid."""
    mine = {t.message_id for t in plan.texts}
    cost = {e.message_id: e.cost_micros for e in journal
            if isinstance(e, ReplyApproved) and e.message_id in mine}
    sent = {e.message_id for e in journal if isinstance(e, ReplySent) and e.message_id in cost}
    return score(plan, "live", {m: cost[m] for m in sent}, plan.reserve_micros, answer_once_troll)


def run_plan(plan: Plan) -> dict[str, Any]:
    """The default run and the answer-once baseline of one (possibly retimed) plan."""
    reserve = plan.reserve_micros
    once = _baseline(plan.texts, plan.campaign.budget_micros, once=True)
    trolls = {t.message_id for t in plan.texts if t.kind in TROLL_KINDS}
    once_troll = sum(c for m, c in once.items() if m in trolls)
    paid, _ = _core(plan, {"reserve_micros": reserve} if reserve else {})
    return {"scenario": plan.name, "seed": plan.seed, "texts": len(plan.texts),
            "runs": [score(plan, "default", paid, reserve, once_troll),
                     score(plan, "answer_once", once, 0, once_troll)]}
