"""Flood simulator: a synthetic week of texts to an anti-pest number, modelled on 2017.

What it simulates
-----------------
One campaign number during the week after its launch (the 2017 French numbers got about
25,000 texts in 72 h, ~3,000 of them curious testers; each reply cost EUR 0.16; EUR 3,700
was raised to run a year; on day 3 forum trolls sent 20,000+ texts in four hours and the
number was switched off). ``generate(Scenario(...))`` returns every inbound text as a
``SimText`` with its ground-truth ``kind``:

- ``genuine``: a pest who was given the number; 1-3 texts minutes or hours apart, arriving
  all week with a day/night rhythm, most of them on days 1-2 (the launch buzz);
- ``tester``: a curious person checking the number ("test", "c'est vrai ce numéro ?"),
  mostly on days 1-2, sometimes a second text a few minutes later;
- the flood, from day 3 20:00 for 4 hours (hours count from ``start_ms``):
  ``persistent_troll`` (a few numbers sending hundreds of texts each),
  ``sim_rotating_troll`` (many SIMs with 3-10 texts each, numbers clustered in a few
  3-digit national ranges, which is what a per-prefix rate limit catches) and
  ``one_shot_troll`` (thousands of unrelated numbers, one text each).
  Genuine pests keep arriving during the flood.

Every number is a fake but *valid* French mobile number (``phonenumbers`` agrees); all draws
come from ``random.Random(scenario.seed)``, so a seed always gives the same texts; times are
whole seconds (MessageBird's ``createdDatetime`` has no fraction), so a text replayed through
the webhook carries exactly the same time. ``scale`` multiplies the number of senders of each
kind (for quick runs); how many texts one sender sends does not scale.

Outcomes
--------
A policy is judged by the replies it approves: ``outcome_from_decisions`` turns
``{message_id: cost_micros or None}`` into an ``Outcome`` (EUR spent, genuine senders and
testers answered, spend on trolls, when the budget ran out, a time series). The two
baselines (``answer_every_text``, the 2017 behaviour, and ``answer_once_per_sender``) and
the real policy (any ``PolicyRunner``, see ``run_policy``) all go through it, so their
columns are computed the same way. ``render_report`` prints them side by side and
``write_plot_html`` draws them (one self-contained HTML file, inline SVG, no JS).

``drive_webhook`` posts the texts to a running antirelou webhook, form-encoded and signed
exactly like MessageBird, for an end-to-end run on your own machine.

How to run it
-------------
::

    python -m streams.simulate                      # the 2017 week, both baselines
    python -m streams.simulate --scale 0.1 --seed 7 --html /tmp/sim.html
    MESSAGEBIRD_SIGNING_KEY=... python -m streams.simulate --scale 0.05 \\
        --webhook http://127.0.0.1:6066/webhooks/messagebird/sms --recipient 33644630001

No output ever shows a sender's number.

Layout: ``generation`` (the week, ground truth), ``outcomes`` (``Outcome``, baselines, the
core's run), ``report`` (text report, charts), ``drive`` (webhook posts, progress bar),
``scenarios`` (the named scenarios, scored), ``live`` (a scenario against a running
deployment), ``command`` (the command line; ``__main__``).
"""

from infra.mb_signature import sign_webhook
from streams.simulate.command import main
from streams.simulate.drive import Progress, created_datetime, drive_webhook, webhook_form
from streams.simulate.generation import (
    DAY_MS,
    DEFAULT_START_MS,
    FR_MOBILE_PREFIXES,
    HOUR_MS,
    KINDS,
    MICROS_PER_EUR,
    MINUTE_MS,
    SECOND_MS,
    TROLL_KINDS,
    Scenario,
    SimText,
    generate,
    ground_truth,
)
from streams.simulate.outcomes import (
    FLOOD_RULES,
    REPLY_2017,
    Outcome,
    PolicyRunner,
    answer_every_text,
    answer_once_per_sender,
    campaign_2017,
    core_runner,
    outcome_from_decisions,
    run_policy,
)
from streams.simulate.report import (
    REPORT_ROWS,
    format_day_time,
    format_eur,
    render_report,
    write_plot_html,
)

__all__ = [
    "DAY_MS", "DEFAULT_START_MS", "FLOOD_RULES", "FR_MOBILE_PREFIXES", "HOUR_MS", "KINDS",
    "MICROS_PER_EUR", "MINUTE_MS", "REPLY_2017", "REPORT_ROWS", "SECOND_MS", "TROLL_KINDS",
    "Outcome", "PolicyRunner", "Progress", "Scenario", "SimText", "answer_every_text",
    "answer_once_per_sender", "campaign_2017", "core_runner", "created_datetime",
    "drive_webhook", "format_day_time", "format_eur", "generate", "ground_truth", "main",
    "outcome_from_decisions", "render_report", "run_policy", "sign_webhook", "webhook_form",
    "write_plot_html",
]
