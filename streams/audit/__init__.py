"""The audit replay: re-run the pure core over the journal and diff every decision.

Run it::

    antirelou audit --config campaigns.toml --kafka HOST:PORT          # the live journal
    antirelou audit --config campaigns.toml --file journal.jsonl       # an export
    antirelou export --kafka HOST:PORT --out journal.jsonl             # make an export
    antirelou audit ... --json                      # the report as JSON
    antirelou audit ... --what-if other.toml        # the same texts under another config

Exit status: 0 when every decision is reproduced, 1 on any mismatch (the first one is
printed to stderr as JSON), 2 on bad input. From Python::

    result = audit(events, campaigns)      # events: decoded journal events, in journal order
    print(render_text(result)); data = to_json(result)
    print(render_text(what_if(events, campaigns, other_campaigns)))

This package is pure (``tests/test_purity.py``): no Kafka, no file, no clock. It takes
decoded events (``schemas.codec`` has upcast old versions already) and the campaigns of the
config.

What is checked
---------------

*Screening* (per sender). The journal is keyed by sender pseudonym, so a sender's events are
in order within one partition; partitions may come one after another or interleaved. For
each recorded ``SenderScreened`` the k-th ``TextReceived`` of the same sender and message id
is decided again with ``decide_screening`` (the text itself is the command: it has the
fields of ``ScreenText`` but ``reply_to``, which screening does not read) on a
per-sender ``SenderState`` (a redelivered webhook, or a text given again to a worker after a
crash, legitimately gives a second text and the same verdict again: checked like any other,
counted once, as ``restated``; ``duplicate`` verdicts of older journals are accepted there).
The policy (cooldown, rates, filters) is the version the verdict recorded (the worker's
knowledge at the time is an input): version 1 is the config, later versions come from the
journal's ``PolicyChanged`` events. A sender whose verdict names a version not seen yet is
set aside and replayed, in order, after the pass.

*Campaigns* (per campaign, in ``seq`` order). Every event with a ``seq`` (``ReplyApproved``,
``ReplyDenied``, ``PolicyChanged``, ``BudgetCredited``, ``ReplyRefunded``,
``ReplyCostReconciled``) is sorted by seq; an exact repeat
(at-least-once redelivery) is dropped and counted as ``redelivered``; a different event with
the same seq is a ``conflicting`` mismatch. Each other event is decided again, from
``CampaignState.opening(campaign)``: decisions with ``decide_reply`` on ``RequestReply``
rebuilt from the forwarded ``SenderScreened`` of their message id, policy changes and credits
with ``decide_control`` on the command rebuilt from the event, refunds and price
reconciliations with ``decide_settlement`` (each must follow from a ``ReplyFailed`` or a
``DeliveryReported`` price of the journal, else a ``refund_without_failure`` /
``price_without_report`` mismatch). A message id decided again
under a new seq goes through the core too: it remembers a bounded number of ids
(``REMEMBERED_DECISIONS``), so a late redelivery is legitimately decided afresh, and the core
says whether it would instead have repeated the earlier answer. Forwarded texts with no
decision yet are ``pending`` (not a mismatch).

One command may give several events with consecutive seqs: a request and the
``SurgeStarted``/``SurgeEnded`` or ``ReplyExpired(queue_full)`` it caused, a tick's
releases and expiries. The first is decided again (a request from its forwarded text, its
number range from the ``TextReceived``; a released ``ReplyApproved``, a ``ReplyExpired(ttl)``
or a ``SurgeEnded`` as ``Tick(campaign, occurred_at)``, since a tick's events carry its
time), the others are compared with the rest of what the core decided, in seq order.
``ReplyDenied(reason="unknown_campaign")`` has seq 0 and is checked on its own.
``ControlRejected`` takes no seq and changes nothing: counted only.

The replay state always follows the core's own (expected) events, never the recorded ones:
one tampered event gives one mismatch. A lost event shifts every later ``seq`` of its
campaign, so each later decision mismatches too; the first mismatch is the root cause.
Mismatches are listed screening first (journal order), then per campaign in seq order.
Events are compared as values (dataclass equality, the same as ``codec.to_dict`` equality
for decoded events); only mismatches are turned into dicts.

Report: per campaign and UTC day of ``occurred_at``: texts in, replies approved,
suppressions by reason (screening and denial reasons), EUR spent and credited, the balance at
the end of the day (budget + credits - spending up to that day), replies sent and failed.
It describes the journal as recorded (unique events), so it stays meaningful when a
mismatch is found.

What-if
-------

``what_if(events, campaigns, other_campaigns)`` decides everything afresh, twice, from the
journal's inputs only: its texts and its operator actions (policy changes and credits,
rebuilt as commands). Both runs use fresh states and the same order: event time, ties in
journal order. Event time, not journal order, because the journal is read partition by
partition, and the shells met the texts (and the budget) in about the order they arrived.
Both run the shared in-memory ``Pipeline`` (streams/rules/pipeline.py, the simulator's): screening
under the campaign's current what-if policy, a text again reviewing the sender's awaited
request, outcomes reopening senders, and the campaign's clock ticking once a minute between
the texts and after the last one, so deferred replies are released or expired as live.
The two reports come side by side: texts, replies, EUR spent, budget left and the first
day the budget ran out, per campaign.

On two cores
------------

The same result, in two processes (the shell forks; this package only splits the work):
``Audit(part="screening")`` (fed the texts, verdicts, reopenings, policy changes and
replies sent, None for the other events) gives ``screening_part()``, which
``Audit(part="campaigns")`` (fed everything but the texts and replies sent, None for them,
and the verdicts possibly as ``VerdictNote``: it takes their tallies and counts from the
part, decides each request with the number range its decision recorded, and raises
``PrefixUnconfirmed`` when the part's texts say another range, for the caller to audit in
one process) takes in ``result(screening=...)``; or, after one pass, a copy of the audit
replays some campaigns (``replay_apart``) that ``result(apart=..., apart_ids=...)`` takes.
Either way mismatches, counters and tallies are those of one ``Audit``
(``tests/audit/test_audit_apart.py``).

Layout: ``results`` (the values), ``replay`` (the ``Audit`` class: reading the journal, the
screening replay), ``campaigns`` (the campaign replay), ``whatif``, ``report`` (tallies,
JSON, text tables). The commands each decision is decided again from are rebuilt by the
pipeline glue (``streams.rules.pipeline``), as the workers build them.
"""

from schemas.reasons import DENIAL_REASONS, SCREENING_REASONS
from streams.audit.replay import (
    Audit,
    VerdictNote,
    audit,
    gc_paused,
    verdict_note,
)
from streams.audit.report import Tally, render_text, to_json
from streams.audit.results import (
    DAY_MS,
    KEEP_MISMATCHES,
    AuditResult,
    CampaignReport,
    Counters,
    DayStats,
    MalformedEvent,
    Mismatch,
    Report,
    WhatIf,
)
from streams.audit.whatif import simulate, what_if
from streams.rules.screening import UNKNOWN_CAMPAIGN_POLICY

__all__ = [
    "DAY_MS", "DENIAL_REASONS", "KEEP_MISMATCHES", "SCREENING_REASONS", "UNKNOWN_CAMPAIGN_POLICY",
    "Audit", "AuditResult", "CampaignReport", "Counters", "DayStats", "MalformedEvent",
    "Mismatch", "Report", "Tally", "VerdictNote", "WhatIf", "audit", "gc_paused", "render_text",
    "simulate", "to_json", "verdict_note", "what_if",
]
