"""One intake for both providers (streams.intake.build): a MessageBird classic text and a
Bird text become the same ScreenText, are dated by the same clamp (``--event-skew-minutes``),
and a text no campaign takes is journaled TextRejected whichever provider brought it."""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import urlencode

from infra.privacy import Privacy
from schemas.events import TextRejected, TextTimeClamped
from schemas.reasons import EDGE_REASONS, UNKNOWN_CHANNEL, UNKNOWN_RECIPIENT
from streams.intake.bird import intake_of, parse_bird_event
from streams.intake.build import IntakeBuilder
from streams.intake.messagebird import parse_inbound
from streams.stages import bird as bird_stage
from tests import factories

SENDER, NUMBER = "33612345678", "33644630001"
CAMPAIGN = factories.campaign(number=NUMBER)
PRIVACY = Privacy(b"0123456789abcdef0123")
ARRIVAL = 1_764_620_100_000  # 2025-12-01T20:15:00Z
MINUTE = 60_000


def classic(created: str, recipient: str = NUMBER):
    form = {"id": "mb-1", "originator": SENDER, "recipient": recipient,
            "body": "t'es ou ? 06 12 34 56 78", "createdDatetime": created}
    return parse_inbound("application/x-www-form-urlencoded", urlencode(form).encode())


def bird(created: str, channel: str = "ch-paris"):
    payload = {"id": "bird-1", "channelId": channel, "direction": "incoming",
               "sender": {"contact": {"identifierValue": "+" + SENDER}},
               "body": {"type": "text", "text": {"text": "t'es ou ? 06 12 34 56 78"}},
               "createdAt": created}
    raw = json.dumps({"service": "channels", "event": "sms.inbound", "payload": payload})
    return parse_bird_event("application/json", raw.encode())


def builder(skew_ms: int = 5 * MINUTE) -> IntakeBuilder:
    return IntakeBuilder(pseudonym=PRIVACY.pseudonym, seal=PRIVACY.seal, skew_ms=skew_ms)


def both(created: str, *, skew_ms: int = 5 * MINUTE, campaign=CAMPAIGN):
    """The intakes of the same text through each provider, as their web views build them."""
    b = builder(skew_ms)
    return (b.text(classic(created), campaign, received_at=ARRIVAL, reached=NUMBER,
                   refusal=UNKNOWN_RECIPIENT),
            intake_of(bird(created), campaign, b, received_at=ARRIVAL))


def test_a_classic_and_a_bird_text_become_the_same_command():
    # given the same text, sent a minute before it arrived, through each provider
    classic_in, bird_in = both("2025-12-01T20:14:00Z")
    # then both make the same ScreenText but for the provider's message id (the sealed
    # reply-to is random, and opens to the same number), and journal nothing before it
    assert classic_in.facts == bird_in.facts == ()
    one, other = classic_in.command, bird_in.command
    assert (one.message_id, other.message_id) == ("mb-1", "bird-1")
    same = ("campaign_id", "sender", "body", "occurred_at", "number_kind", "country", "prefix")
    assert [getattr(one, f) for f in same] == [getattr(other, f) for f in same]
    assert one.body == "t'es ou ? [numero]" and one.occurred_at == ARRIVAL - MINUTE
    for command in (one, other):
        assert PRIVACY.open(command.reply_to, campaign_id="paris",
                            sender=command.sender) == SENDER


def test_a_bird_text_dated_out_of_bounds_is_clamped_and_journaled_like_a_classic_one():
    # given a text dated an hour before it arrived, with a skew of 2 minutes
    for intake in both("2025-12-01T19:15:00Z", skew_ms=2 * MINUTE):
        # then its time is the arrival's minus the skew, and a TextTimeClamped says both
        (clamped,) = intake.facts
        assert isinstance(clamped, TextTimeClamped)
        assert intake.command.occurred_at == clamped.occurred_at == ARRIVAL - 2 * MINUTE
        assert (clamped.reported_at, clamped.received_at) == (ARRIVAL - 60 * MINUTE, ARRIVAL)
        assert clamped.sender == intake.command.sender


def test_a_text_no_campaign_takes_is_rejected_with_its_provider_s_reason():
    # given a classic text to a number and a Bird text on a channel no campaign uses
    b = builder()
    classic_in = b.text(classic("2025-12-01T20:14:00Z", recipient="33699999999"), None,
                        received_at=ARRIVAL, reached="33699999999", refusal=UNKNOWN_RECIPIENT)
    bird_in = intake_of(bird("2025-12-01T20:14:00Z", channel="ch-x"), None, b,
                        received_at=ARRIVAL)
    # then neither is screened; each is one TextRejected with a reason from the one list,
    # naming what it reached by pseudonym only
    assert classic_in.command is None and bird_in.command is None
    (one,), (other,) = classic_in.facts, bird_in.facts
    assert one == TextRejected(message_id="mb-1", recipient=PRIVACY.pseudonym("33699999999"),
                               reason=UNKNOWN_RECIPIENT, occurred_at=ARRIVAL - MINUTE)
    assert other == TextRejected(message_id="bird-1", recipient=PRIVACY.pseudonym("ch-x"),
                                 reason=UNKNOWN_CHANNEL, occurred_at=ARRIVAL - MINUTE)
    assert {one.reason, other.reason} <= set(EDGE_REASONS)
    assert SENDER not in repr(classic_in) + repr(bird_in)


def test_the_bird_stage_builds_with_the_worker_s_event_skew(monkeypatch):
    # given a worker started with --event-skew-minutes 1, its Bird view's ports
    captured = {}
    monkeypatch.setattr(bird_stage, "register_bird_webhook",
                        lambda app, ports: captured.setdefault("ports", ports))
    settings = SimpleNamespace(event_skew_ms=MINUTE, bird_signing_key=None, public_url=None,
                               bird_channels={"ch-paris": "paris"}, ack_timeout_s=1.0)
    rt = SimpleNamespace(settings=settings, privacy=PRIVACY, app=None, clock=lambda: 0,
                         now_ms=lambda: ARRIVAL, campaigns={"paris": CAMPAIGN})
    bird_stage.register_bird(rt)
    ports = captured["ports"]
    # then a text dated an hour early is brought back to one minute before its arrival
    intake = ports.to_intake(bird("2025-12-01T19:15:00Z"), ports.campaign_for_channel("ch-paris"))
    assert intake.command.occurred_at == ARRIVAL - MINUTE
    assert [f.TYPE for f in intake.facts] == ["TextTimeClamped"]
