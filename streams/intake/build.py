"""What both providers' intakes make of what they parsed, written once: the ``ScreenText``
of an inbound text (and its ``TextTimeClamped`` when the provider dated it out of bounds),
the ``TextRejected`` of a text no campaign takes, the ``DeliveryReported`` of a reply's
status. MessageBird classic (``streams.intake.messagebird``, ``messagebird_reports``) and
Bird (``streams.intake.bird``) parse; :class:`IntakeBuilder` builds; the web views
(``streams.stages``) store. A fix made here holds for both providers.

Nothing in clear leaves the builder: the sender and the number or channel a text reached
become pseudonyms, the number needed for the reply is sealed (bound to the campaign and the
pseudonym), the number facts are cached by pseudonym.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from infra.numbers import NumberInfo, classify
from schemas.campaign import Campaign
from schemas.commands import ScreenText
from schemas.events import DeliveryReported, TextRejected, TextTimeClamped

MAX_EVENT_SKEW_MS = 5 * 60 * 1000  # a provider's date kept within arrival +- this


def event_time(created_ms: int | None, received_ms: int,
               skew_ms: int = MAX_EVENT_SKEW_MS) -> int:
    """A text's time: the provider's date (``createdDatetime``, Bird's ``createdAt``)
    clamped to the arrival time +- ``skew_ms`` (the arrival time when there is none). One
    text dated in the campaign's last day moved pacing time forward; one dated before the
    sender's previous text made him a flooder."""
    if created_ms is None:
        return received_ms
    return min(max(created_ms, received_ms - skew_ms), received_ms + skew_ms)


class NumberFacts:
    """``infra.numbers.classify`` answers by sender pseudonym (about 45 us each with
    phonenumbers; a flood's senders text again and again). Keyed by the pseudonym, so the
    cache never holds a number in clear; the oldest entries are dropped past ``max_size``."""

    def __init__(self, max_size: int = 65_536) -> None:
        self._by_sender: dict[str, NumberInfo] = {}
        self._max = max_size

    def get(self, sender: str, number: str) -> NumberInfo:
        info = self._by_sender.get(sender)
        if info is None:
            info = self._by_sender[sender] = classify(number)
            if len(self._by_sender) > self._max:
                del self._by_sender[next(iter(self._by_sender))]
        return info


class ParsedText(Protocol):
    """An inbound text as a provider's parser gives it (``InboundSms``, ``BirdText``)."""

    @property
    def message_id(self) -> str: ...
    @property
    def originator(self) -> str: ...  # E.164 digits, in clear: never log it
    @property
    def body(self) -> str: ...  # numbers in it already masked by the parser
    @property
    def created_at_ms(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Intake:
    """What one inbound text becomes: ``facts`` for the journal, stored first, then
    ``command`` for sms-received; no command for a text no campaign takes (``facts`` then
    holds its ``TextRejected``)."""

    facts: tuple[TextRejected | TextTimeClamped, ...]
    command: ScreenText | None


@dataclass
class IntakeBuilder:
    """Both providers' texts and delivery statuses to our commands and facts (one builder
    per web view: it keeps the number facts' cache)."""

    pseudonym: Callable[[str], str]
    seal: Callable[..., str]  # (number, campaign_id=, sender=) -> sealed reply-to
    skew_ms: int = MAX_EVENT_SKEW_MS
    number_facts: NumberFacts = field(default_factory=NumberFacts)

    def text(self, text: ParsedText, campaign: Campaign | None, *, received_at: int,
             reached: str, refusal: str) -> Intake:
        """The intake of ``text``, received at ``received_at``, which reached ``reached``
        (our number, or Bird's channel) of ``campaign``; a text no campaign takes
        (``campaign`` None) is a ``TextRejected`` for ``refusal`` (a reason of
        ``schemas.reasons``)."""
        occurred_at = event_time(text.created_at_ms, received_at, self.skew_ms)
        if campaign is None:
            return Intake(facts=(TextRejected(
                message_id=text.message_id, recipient=self.pseudonym(reached), reason=refusal,
                occurred_at=occurred_at,
            ),), command=None)
        sender = self.pseudonym(text.originator)
        facts: tuple[TextTimeClamped, ...] = ()
        if text.created_at_ms is not None and occurred_at != text.created_at_ms:
            facts = (TextTimeClamped(
                message_id=text.message_id, campaign_id=campaign.id, sender=sender,
                reported_at=text.created_at_ms, received_at=received_at,
                occurred_at=occurred_at,
            ),)
        # Here, while the number is in clear (cached by pseudonym, not by number).
        number = self.number_facts.get(sender, text.originator)
        return Intake(facts=facts, command=ScreenText(
            message_id=text.message_id, campaign_id=campaign.id, sender=sender,
            body=text.body, occurred_at=occurred_at,
            reply_to=self.seal(text.originator, campaign_id=campaign.id, sender=sender),
            number_kind=number.kind, country=number.country, prefix=number.prefix,
        ))

    def delivery(self, *, reference: str, campaign_id: str, recipient: str,
                 provider_message_id: str, status: str, status_reason: str | None,
                 error_code: int | None, price_micros: int | None, currency: str | None,
                 status_at_ms: int | None, now_ms: int) -> DeliveryReported:
        """The fact of a reply's status (``reference``: the inbound message id it answered;
        ``recipient``: the number it went to, in clear), dated by the provider, else now."""
        return DeliveryReported(
            message_id=reference, campaign_id=campaign_id, sender=self.pseudonym(recipient),
            provider_message_id=provider_message_id, status=status,
            status_reason=status_reason, error_code=error_code, price_micros=price_micros,
            currency=currency, occurred_at=status_at_ms if status_at_ms is not None else now_ms,
        )
