"""The reply stage's shell (streams/stages/send.py) with a fake runtime and gateway (the stage
against a real broker and the local MessageBird is in tests/e2e/test_send_faults.py)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from infra.gateway import SendResult
from infra.privacy import Privacy
from infra.sending import CircuitBreaker
from schemas import codec
from schemas.commands import SendReply
from schemas.events import ReplyAttempted, ReplySent
from streams.settings import Settings
from streams.stages.send import ReplySender

SECRET = b"k" * 32


class Table(dict):
    def put(self, key, value, partition):
        self[key] = value

    def remove(self, key, partition):
        self.pop(key, None)


class FakeRuntime:
    def __init__(self):
        self.settings = Settings(kafka="localhost:1", campaigns=(), secret=SECRET)
        self.tables = SimpleNamespace(replies_by_message=Table())
        self.names = {"journal": "journal"}
        self.privacy = Privacy(SECRET)
        self.breaker = CircuitBreaker()
        self.campaigns = {"paris": SimpleNamespace(id="paris", originator="Antirelou",
                                                   reply_text="Non, c'est non.")}
        self.journal: list = []
        self.sends: list = []
        self.store_fails = 0
        self.app = SimpleNamespace(producer=SimpleNamespace(flush=self._flush))

    async def _flush(self):
        return None

    def now_ms(self):
        return int(time.time() * 1000)

    def broker_status(self):
        return None

    def decode_or_skip(self, role, value, types):
        return codec.decode(value)

    async def record(self, events, acked=False):
        if self.store_fails:
            self.store_fails -= 1
            raise ConnectionError("the broker went away")
        self.journal.extend(events)

    async def settle(self, command):
        raise AssertionError("nothing is settled here")

    def gateway_for(self, campaign_id):
        return self

    def send(self, **kwargs):  # the gateway
        self.sends.append(kwargs["reference"])
        return SendResult(f"mb-{kwargs['reference']}", 80_000, "EUR", 1, False)


def record_of(rt, mid, offset, number):
    pseudonym = rt.privacy.pseudonym(number)
    value = codec.encode(SendReply(
        message_id=mid, campaign_id="paris", sender=pseudonym, occurred_at=rt.now_ms(),
        reply_to=rt.privacy.seal(
        number, campaign_id="paris", sender=pseudonym),
    ))
    message = SimpleNamespace(timestamp=time.time(), partition=0, offset=offset, tp=("o", 0))
    return SimpleNamespace(value=value, message=message)


def test_when_the_attempts_cannot_be_stored_no_call_is_made_and_the_batch_again_sends_them():
    # The broker went away as the batch's attempts were written: nothing was sent. The marks
    # go with the failed write, so the batch fetched again sends each reply (once), instead
    # of finding "attempting" and marking them uncertain: unsent, and never answered.
    async def scenario():
        rt = FakeRuntime()
        sender = ReplySender(rt)
        batch = [record_of(rt, f"m{i}", i, f"+3361234567{i}") for i in range(3)]
        rt.store_fails = 1
        with pytest.raises(ConnectionError):
            await sender.send_batch(batch)
        assert rt.sends == [] and dict(rt.tables.replies_by_message) == {}
        await sender.send_batch(batch)  # fetched again
        assert sorted(rt.sends) == ["m0", "m1", "m2"]
        assert dict(rt.tables.replies_by_message) == {f"m{i}": "sent" for i in range(3)}
        assert sorted(e.message_id for e in rt.journal if isinstance(e, ReplySent)) == [
            "m0", "m1", "m2"]
        assert len([e for e in rt.journal if isinstance(e, ReplyAttempted)]) == 3
        await sender.send_batch(batch)  # and again: already sent, not sent again
        assert len(rt.sends) == 3
        sender.pool.shutdown()

    asyncio.run(scenario())
