"""How long a text's body is kept, and what is kept of it for the decisions (pure).

A body is personal data (people write their names, places, numbers the mask missed); the
journal is kept for ever. So the body never enters the journal: the webhook splits each
text in two (``split_body``) before anything is stored:

- the ``ScreenText`` for the screening, and so the journal's ``TextReceived``, carries what
  the decisions read of the body as fields (``for_decisions``: whether it is a test text,
  ``actors.textfilter``; its word keys, ``actors.words``) and ``[not kept]`` as its body;
- a ``TextBodyKept`` with the body itself goes to ``<app>.bodies``, a topic whose
  retention is the campaign file's ``body_retention_days`` (default 30): the broker
  deletes it after that, and ``journal`` / ``export`` show it beside its text while it
  is younger than that (``shown``), the text as the decisions need it after.

The audit stays exact: it re-decides from the journal, whose texts carry exactly what the
decisions read (``is_a_test_text``, ``words_of``: the screening's only reads of a text's
content; a text journaled with its body, before, is read from its body). A rule that comes
to read more of a body must be computed in ``for_decisions`` and carried as a field: it is
the one place that says what is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

from actors.textfilter import is_test_text
from actors.words import word_keys
from schemas.commands import ScreenText
from schemas.events import TextBodyKept, TextReceived

DAY_MS = 86_400_000

NOT_KEPT = "[not kept]"  # the body of a text whose body is kept apart, or no longer

Text = TypeVar("Text", ScreenText, TextReceived)


def is_a_test_text(text: ScreenText | TextReceived) -> bool:
    """Whether the text is a test text: as established at the edge, else from its body."""
    return text.test_text if text.test_text is not None else is_test_text(text.body)


def words_of(text: ScreenText | TextReceived) -> str:
    """The text's word keys: as established at the edge, else from its body."""
    return text.words if text.words is not None else word_keys(text.body)


def for_decisions(text: Text) -> Text:
    """``text`` as the decisions need it, its body not kept: what they read of the body
    carried as fields."""
    if text.body == NOT_KEPT and text.test_text is not None and text.words is not None:
        return text
    return dataclasses.replace(text, body=NOT_KEPT, test_text=is_a_test_text(text),
                               words=words_of(text))


def split_body(command: ScreenText, keep: bool = True) -> tuple[ScreenText, TextBodyKept | None]:
    """The text to screen (what the decisions read of its body instead of it) and its body to
    keep apart (None when bodies are not kept at all: ``body_retention_days = 0``, or an
    empty body)."""
    kept = None
    if keep and command.body:
        kept = TextBodyKept(message_id=command.message_id, occurred_at=command.occurred_at,
                            body=command.body)
    return for_decisions(command), kept


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
        if body is not None:  # as journaled with its body: the decisions read it from it
            return dataclasses.replace(event, body=body, test_text=None, words=None)
        if event.test_text is None:  # an older journal's own body, still young
            return event
    return for_decisions(event)


def retention_ms(days: int) -> int:
    return days * DAY_MS
