"""Bodies kept apart for a retention, the journal keeping what the decisions need (issue 31).

A text's body used to be journaled as sent and kept for ever (the journal's retention is
unlimited); ``export`` and ``journal --human`` printed it, whatever its age. Now the webhook
splits each text (``streams.rules.retention.split_body``): the body goes to a topic with
the campaign file's retention, the journal's text carries what the decisions read. The
audit must stay exact on such a journal, and on an old journal once its bodies are past
the retention.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.textfilter import DEFAULT_TEST_PATTERNS, is_test_text
from actors.words import word_keys
from infra.config import ConfigError, parse_body_retention_days
from schemas.campaign import Campaign
from schemas.commands import ScreenText
from schemas.events import SenderScreened, TextBodyKept, TextReceived
from streams.audit import audit
from streams.rules.pipeline import Pipeline
from streams.rules.retention import (
    NOT_KEPT,
    for_decisions,
    is_a_test_text,
    retention_ms,
    shown,
    split_body,
    words_of,
)

T0 = 1_508_112_000_000  # 2017-10-16
DAY = 86_400_000
CAMPAIGN = Campaign(id="paris", number="33644630001", reply_text="Non, c'est non.",
                    language="fr", country="FR", budget_micros=3_700_000_000,
                    price_per_segment_micros=80_000, starts_at=T0, ends_at=T0 + 365 * DAY,
                    originator="AntiRelou", cooldown_ms=None, pacing=False)
BODIES = ["t'es charmante", "test", "Test 123", "c'est vrai ce numéro ?", "tu fais quoi ce soir",
          "appelle moi au [numero]", "", "is this real", "ça marche ?", "un test de plus ici",
          "rejoins la cagnotte issou", "rejoins la cagnotte issou", "ISSOU la cagnotte !!"]


def command(i: int, body: str) -> ScreenText:
    return ScreenText(message_id=f"m{i}", campaign_id="paris", sender=f"s_{i % 7}", body=body,
                      occurred_at=T0 + i * 60_000, reply_to="sealed", number_kind="mobile",
                      country="FR", prefix="33-612")


def test_what_the_decisions_read_of_a_body_is_carried_without_it():
    for pattern in DEFAULT_TEST_PATTERNS:
        assert for_decisions(command(1, pattern)).test_text is True
    text = for_decisions(command(1, "rejoins la cagnotte issou"))
    assert (text.body, text.test_text, text.words) == (
        NOT_KEPT, False, word_keys("rejoins la cagnotte issou"))


@given(st.text(max_size=200))
def test_property_the_decisions_read_a_text_without_its_body_as_with_it(body):
    whole = command(1, body)
    kept = for_decisions(whole)
    assert kept.body == NOT_KEPT
    assert is_a_test_text(kept) == is_test_text(body) == is_a_test_text(whole)
    assert words_of(kept) == word_keys(body) == words_of(whole)
    assert for_decisions(kept) == kept  # replacing twice changes nothing


def test_a_text_is_split_into_what_the_decisions_read_and_its_body_kept_apart():
    text, kept = split_body(command(1, "t'es charmante"))
    assert text.body == NOT_KEPT and text.message_id == "m1" and text.reply_to == "sealed"
    assert kept == TextBodyKept(message_id="m1", occurred_at=T0 + 60_000, body="t'es charmante")
    assert split_body(command(2, "test"))[0].test_text is True
    assert split_body(command(3, "t'es charmante"), keep=False)[1] is None  # 0 days
    assert split_body(command(4, ""))[1] is None


def journal_of(commands: list[ScreenText]) -> list[object]:
    """The journal the workers write for these texts (each text, then what it caused)."""
    pipeline = Pipeline([CAMPAIGN])
    for c in commands:
        pipeline.events.append(TextReceived(
            message_id=c.message_id, campaign_id=c.campaign_id, sender=c.sender, body=c.body,
            occurred_at=c.occurred_at, number_kind=c.number_kind, country=c.country,
            prefix=c.prefix, test_text=c.test_text, words=c.words))
        pipeline.text(c)
    return pipeline.events


def decisions(journal: list[object]) -> list[object]:
    return [e for e in journal if not isinstance(e, TextReceived)]


def test_texts_split_at_the_webhook_get_the_same_decisions_and_audit_clean():
    # given the same texts screened with their bodies and split as the webhook splits them
    texts = [command(i, body) for i, body in enumerate(BODIES * 3)]
    whole = journal_of(texts)
    split = journal_of([split_body(c)[0] for c in texts])
    # then every decision is the same (test texts suppressed as such), no body is in the
    # journal, and the audit reproduces every decision
    assert decisions(split) == decisions(whole)
    assert any(isinstance(e, SenderScreened) and e.reason == "test_text" for e in split)
    texts_journaled = [e for e in split if isinstance(e, TextReceived)]
    assert {e.body for e in texts_journaled} == {NOT_KEPT}
    assert all(e.test_text is not None and e.words is not None for e in texts_journaled)
    result = audit(split, [CAMPAIGN])
    assert result.ok and result.counters.texts == len(texts)


def test_an_old_journal_shown_past_the_retention_still_audits_clean():
    # given a journal written before bodies were kept apart (bodies in its texts)
    journal = journal_of([command(i, body) for i, body in enumerate(BODIES)])
    now, keep = T0 + 40 * DAY, retention_ms(30)
    # when it is exported 40 days later, past the 30 days: no body is shown
    exported = [shown(e, {}, now, keep) for e in journal]
    assert all(e.body == NOT_KEPT for e in exported if isinstance(e, TextReceived))
    assert audit(exported, [CAMPAIGN]).ok


def test_a_body_is_shown_while_kept_and_young_and_never_after():
    text, kept = split_body(command(1, "t'es charmante"))
    journaled = TextReceived(message_id=text.message_id, campaign_id="paris", sender=text.sender,
                             body=text.body, occurred_at=text.occurred_at, number_kind="mobile",
                             country="FR", prefix="33-612", test_text=text.test_text,
                             words=text.words)
    bodies = {kept.message_id: kept.body}
    keep = retention_ms(30)
    again = shown(journaled, bodies, text.occurred_at + DAY, keep)
    assert (again.body, again.test_text, again.words) == ("t'es charmante", None, None)
    # past the retention, even if the broker has not deleted it yet
    assert shown(journaled, bodies, text.occurred_at + 31 * DAY, keep).body == NOT_KEPT
    assert shown(journaled, bodies, text.occurred_at, 0).body == NOT_KEPT  # 0 days: never
    assert shown(journaled, {}, text.occurred_at + DAY, keep).body == NOT_KEPT  # deleted
    old = dataclasses.replace(journaled, body="old", test_text=None, words=None)  # older: bodies
    assert shown(old, {}, text.occurred_at + DAY, keep).body == "old"  # an old journal's, young
    assert shown(old, {}, text.occurred_at + 31 * DAY, keep).body == NOT_KEPT
    other = SenderScreened(message_id="m1", campaign_id="paris", sender="s", verdict="forward",
                           reason=None, texts_from_sender=1, occurred_at=T0, policy_version=1)
    assert shown(other, bodies, T0, keep) is other


@pytest.mark.parametrize("value, days", [(None, 30), (0, 0), (7, 7), (3650, 3650)])
def test_the_campaign_file_sets_the_retention(value, days):
    data = {} if value is None else {"body_retention_days": value}
    assert parse_body_retention_days(data) == days


@pytest.mark.parametrize("value", [-1, 3651, 1.5, "30", True])
def test_a_bad_retention_is_one_clear_line(value):
    with pytest.raises(ConfigError, match="body_retention_days"):
        parse_body_retention_days({"body_retention_days": value}, "camp.toml")
