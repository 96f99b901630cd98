"""Black box through `antirelou up`: the Ray process holding the campaign shard is stopped
(SIGSTOP) for four minutes while texts arrive, then resumed (issue 29, "must show").

What must hold: the webhook goes on acknowledging texts (they are in Kafka); the decide stage
waits for the shard, it skips nothing (a facade used to give up after 180 s and Faust then
acknowledged the batch for good); /health says degraded while the shard is stopped and ok
after; every text acknowledged is screened once and decided once, no reply twice, and the
audit exits 0. Numbers measured are printed (run with -s to see them).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import ray

from tests.e2e.conftest import new_sender, of
from tests.e2e.test_broker_faults import sms_to, start_up, stop

pytestmark = pytest.mark.services

STOPPED_S = 240.0  # four minutes, past the 180 s after which a call used to give up
DECISIONS = ("ReplyApproved", "ReplyDenied", "ReplyDeferred")


@pytest.mark.timeout(900)
def test_the_shard_process_stopped_for_four_minutes_then_resumed_loses_and_doubles_nothing(
        tmp_path, ray_address, messagebird):
    up = start_up(tmp_path, ray_address, messagebird)
    try:
        shard = ray.get_actor("antirelou-shard-0", namespace=up.app_id)
        pid = ray.get(shard.info.remote())["pid"]
        acknowledged: dict[str, str] = {}  # message id -> sender
        senders = []

        def text(sender: str) -> None:
            r = up.post(sender=sender)
            assert r.status_code == 200, r.text
            acknowledged[r.message_id] = sender

        for _ in range(3):  # before: answered as usual
            senders.append(new_sender())
            text(senders[-1])
        up.wait_for(lambda ev: all(of(ev, m, "ReplySent") for m in acknowledged))

        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        statuses: list[tuple[float, str]] = []
        try:
            n = 0
            while time.monotonic() - stopped_at < STOPPED_S:
                # A newcomer, and now and then someone who texted before (screened
                # already_answered or, while his request waits, not answered twice).
                n += 1
                senders.append(new_sender())
                text(senders[-1])
                if n % 4 == 0:
                    text(senders[n // 4])
                code, health = up.health()
                statuses.append((time.monotonic() - stopped_at, health["status"]))
                time.sleep(2.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        events = up.wait_for(lambda ev: all(of(ev, m, "SenderScreened") for m in acknowledged)
                             and all(decided_or_suppressed(ev, m) for m in acknowledged),
                             timeout=180)
        caught_up = time.monotonic() - resumed_at
        first_degraded = next((at for at, s in statuses if s.startswith("degraded")), None)
        assert first_degraded is not None, statuses[-5:]
        assert all(s.startswith("degraded") for at, s in statuses if at > 20), statuses
        assert any("campaign shard 0" in s for _, s in statuses)
        up.wait_for(lambda ev: all(of(ev, m, "ReplySent") for m in acknowledged
                                   if forwarded_first(ev, m)), timeout=120)
        events = up.journal()
        for mid in acknowledged:
            # Screened once (a verdict restated after a redelivery is the same verdict) and,
            # when forwarded, decided once.
            assert len({(e.verdict, e.reason) for e in of(events, mid, "SenderScreened")}) == 1
            if forwarded_first(events, mid):
                assert len({(e.TYPE, e.seq) for e in events if e.TYPE in DECISIONS
                            and e.message_id == mid}) == 1
        for sender in set(acknowledged.values()):
            assert sms_to(messagebird, sender) <= 1
        answered = {s for s in acknowledged.values() if sms_to(messagebird, s) == 1}
        assert answered == set(acknowledged.values())  # each pest answered once
        code, health = up.health()
        assert health["status"] == "ok", health
        audit = up.cli("audit")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        print(f"\n{len(acknowledged)} texts acknowledged ({len(set(acknowledged.values()))} "
              f"senders); shard stopped {STOPPED_S:.0f} s; /health degraded after "
              f"{first_degraded:.1f} s; every text decided {caught_up:.1f} s after SIGCONT")
    finally:
        stop(up)


def forwarded_first(events, mid) -> bool:
    verdicts = of(events, mid, "SenderScreened")
    return bool(verdicts) and verdicts[0].verdict == "forward"


def decided_or_suppressed(events, mid) -> bool:
    if not forwarded_first(events, mid):
        return bool(of(events, mid, "SenderScreened"))
    return any(e.TYPE in DECISIONS for e in of(events, mid))
