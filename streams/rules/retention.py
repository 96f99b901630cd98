"""How long a text's body is kept, and what is kept of it for the decisions (pure).

A body is personal data (people write their names, places, numbers the mask missed); the
journal is kept for ever. So the body never enters the journal: the webhook splits each
text in two (``split_body``) before anything is stored:

- the ``ScreenText`` for the screening, and so the journal's ``TextReceived``, carries
  ``for_decisions(body)``: what the decisions read of a body, and nothing else;
- a ``TextBodyKept`` with the body itself goes to ``<app>.bodies``, a topic whose
  retention is the campaign file's ``body_retention_days`` (default 30): the broker
  deletes it after that, and ``journal`` / ``export`` show it beside its text while it
  is younger than that (``shown``), the stand-in after.

The audit stays exact: it re-decides from the journal, whose texts carry exactly what the
decisions read. Today that is whether the text is a test text
(``actors.textfilter.is_test_text``, the only rule that reads a body): the stand-in is a
body that rule reads the same way. A rule that reads more of a body (say, word keys for
telling copied raids apart) must be computed here, from the body, and carried as fields
of the text: ``for_decisions`` is the one place that says what is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

from actors.textfilter import is_test_text
from schemas.commands import ScreenText
from schemas.events import TextBodyKept, TextReceived

DAY_MS = 86_400_000

# The bodies the decisions read once the text itself is not kept: is_test_text holds the
# first for a test text and not the second (tests/core/test_retention.py), and a reader
# of the journal sees what they are.
TEST_TEXT_STAND_IN = "[test]"
NOT_KEPT = "[not kept]"
STAND_INS = frozenset((TEST_TEXT_STAND_IN, NOT_KEPT))

Text = TypeVar("Text", ScreenText, TextReceived)


def for_decisions(body: str) -> str:
    """What the decisions read of ``body``, as a body: today whether it is a test text."""
    return TEST_TEXT_STAND_IN if is_test_text(body) else NOT_KEPT


def without_body(text: Text) -> Text:
    """``text`` as the decisions need it, its body not kept."""
    stand_in = for_decisions(text.body)
    return text if text.body == stand_in else dataclasses.replace(text, body=stand_in)


def split_body(command: ScreenText, keep: bool = True) -> tuple[ScreenText, TextBodyKept | None]:
    """The text to screen (its body replaced by what the decisions read) and its body to
    keep apart (None when bodies are not kept at all: ``body_retention_days = 0``, or an
    empty body)."""
    kept = None
    if keep and command.body:
        kept = TextBodyKept(message_id=command.message_id, occurred_at=command.occurred_at,
                            body=command.body)
    return without_body(command), kept


def within_retention(occurred_at: int, now_ms: int, retention_ms: int) -> bool:
    return retention_ms > 0 and occurred_at >= now_ms - retention_ms


def shown(event: object, bodies: Mapping[str, str], now_ms: int, retention_ms: int) -> object:
    """The event as ``journal`` and ``export`` show it: a text younger than the retention
    with its body kept apart (``bodies``: message id -> body); any other text as the
    decisions need it (a journal written before bodies were kept apart holds them: past
    the retention they are not shown). Other events as they are."""
    if not isinstance(event, TextReceived):
        return event
    if within_retention(event.occurred_at, now_ms, retention_ms):
        body = bodies.get(event.message_id)
        if body is not None:
            return dataclasses.replace(event, body=body)
        if event.body not in STAND_INS:  # an older journal's own body, still young
            return event
    return without_body(event)


def retention_ms(days: int) -> int:
    return days * DAY_MS
