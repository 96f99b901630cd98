"""Several workers, one deployment: two `antirelou worker` processes with the same app id
share the partitions of every stage (one consumer group) and the campaign shards (named Ray
actors, ``--shards 2``); one is stopped (SIGTERM, or kill -9) mid-flood and the other takes its
partitions, its shards and its leader timers over.

Run alone with ``pytest -m scaleout``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from actors.shard import CampaignShard, is_campaign_event
from infra.broker import EmbeddedBroker
from infra.config import load_campaigns
from infra.journal import read_journal
from tests import faust_log
from tests.e2e.conftest import ACCESS_KEY, new_sender, of, start_worker, stop_worker

pytestmark = [pytest.mark.services, pytest.mark.scaleout]

TICK_S = 1.0


def assignment(worker, topic: str) -> tuple[int, str]:
    return faust_log.assignment(worker.log_path, topic)


def syncs(worker) -> int:
    return worker.log_path.read_text().count("Successfully synced group")


def took_over(worker, topic: str, syncs_before: int, timeout: float) -> bool:
    """Whether the worker, in a rebalance after ``syncs_before``, got every partition of
    ``topic`` (both of the two) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if syncs(worker) > syncs_before and assignment(worker, topic)[1] == "{0-1}":
            return True
        time.sleep(0.5)
    return False


def wait_until_sharing(workers, topic: str, timeout: float = 120.0) -> list[str]:
    """Until every worker is in the same generation of the group, each with partitions of
    ``topic`` of its own: the partitions each holds."""
    deadline = time.monotonic() + timeout
    while True:
        seen = [assignment(w, topic) for w in workers]
        if len({g for g, _ in seen}) == 1 and all(p for _, p in seen):
            return [p for _, p in seen]
        assert time.monotonic() < deadline, f"the workers never shared {topic}: {seen}"
        time.sleep(0.5)


def post_quietly(worker, at: float | None = None, **kw):
    """POST a text (at time ``at``); (status, message id), or (None, None) when the worker
    did not answer."""
    if at is not None:
        time.sleep(max(0.0, at - time.monotonic()))
    try:
        r = worker.post(**kw)
    except requests.RequestException:
        return None, None
    return r.status_code, r.message_id


def audit(worker) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "audit", "--kafka", worker.kafka,
         "--app-id", worker.app_id, "--config", str(worker.config)],
        capture_output=True, text=True, timeout=120)


def sms_to(messagebird, sender: str) -> int:
    return len([m for m in messagebird.messages if sender in m["recipients"]])


def surge_off(worker, campaigns=("paris", "lyon")) -> None:
    """Surge mode off for these campaigns (an operator's signed ``policy set``): these tests
    are about sharing the work, and a flood of new senders within seconds is exactly what
    surge mode defers (its own tests cover that)."""
    for cid in campaigns:
        done = worker.cli("policy", "set", cid, "surge_multiple=off", operator="alice")
        assert done.returncode == 0, done.stdout + done.stderr


def all_settled(acknowledged):
    """A journal predicate: every acknowledged text screened, every forwarded one's reply
    sent or uncertain."""
    def settled(ev):
        if not all(of(ev, m, "SenderScreened") for m in acknowledged):
            return False
        fwd = [m for m in acknowledged
               if any(e.verdict == "forward" for e in of(ev, m, "SenderScreened"))]
        return all(of(ev, m, "ReplySent") or of(ev, m, "ReplyUncertain") for m in fwd)
    return settled


def check_deployment(events, acknowledged, senders, survivor, messagebird):
    """What must hold after a fault: one screening decision per acknowledged text, one
    decision per request, every approved reply settled once, at most one SMS per sender,
    live balances = a replay of the journal, and the audit replay clean."""
    for mid in acknowledged:
        assert len({(e.verdict, e.reason) for e in of(events, mid, "SenderScreened")}) == 1, mid
    forwarded = [mid for mid in acknowledged
                 if any(e.verdict == "forward" for e in of(events, mid, "SenderScreened"))]
    assert forwarded, "nothing was forwarded"
    for mid in forwarded:
        assert len(set(of(events, mid, "ReplyApproved") + of(events, mid, "ReplyDenied"))) == 1
    outcomes = {mid: {e.TYPE for e in of(events, mid) if e.TYPE in ("ReplySent", "ReplyUncertain")}
                for mid in forwarded}
    # Every reply settled. A worker killed after a send was journaled but before the send
    # table's changelog had it leaves the reply "attempting": the next worker marks it
    # uncertain too (never sends it again): both outcomes, one SMS (counted below).
    assert all(outcomes.values()), outcomes
    for mid in forwarded:
        assert len(set(of(events, mid, "ReplySent"))) <= 1, mid
    for sender in senders:
        assert sms_to(messagebird, sender) <= 1, "a reply went twice"
    campaigns = load_campaigns(survivor.config)
    status = survivor.status()
    for c in campaigns:
        mine = [e for e in events if is_campaign_event(e) and e.campaign_id == c.id]
        assert status[c.id] == CampaignShard(campaigns, mine).status()[c.id], c.id
    done = audit(survivor)
    assert done.returncode == 0, done.stdout + done.stderr
    return forwarded, outcomes


def ticks_by_campaign(worker, since: float, until: float) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for command in read_journal(worker.kafka, f"{worker.app_id}.reply-requests"):
        if command.TYPE == "Tick" and since * 1000 <= command.occurred_at <= until * 1000:
            out[command.campaign_id].append(command.occurred_at)
    return {cid: sorted(times) for cid, times in out.items()}


@pytest.mark.parametrize("stopped", ["the_other", "the_leader", "the_leader_kill_9"])
def test_two_workers_share_the_work_and_one_stopped_mid_flood_loses_and_doubles_nothing(
        stopped, tmp_path, ray_address, messagebird, stop_at_end):
    """"the_leader": the first worker, which leads the group (and its timers) and created
    the shards (Ray actors die with the process that created them: the other worker takes
    them again from snapshot + journal). "the_other": the second worker. noida-db keeps a
    killed member as the group's leader, and used to wedge the group when a member
    committed during a rebalance (tests/infra/faust/noida_group_wedge.py; the workers now keep
    their member id then, infra/faust/aiokafka_patches.py): when the worker left has not taken every
    partition over within 25 s, the broker is restarted, as in the kill -9 tests (README,
    known limits); a real Kafka needs no restart. The test prints whether it was needed
    (since the member-id fix: only after the kill -9) and what the table recovery guard
    did (infra/faust/recovery_guard.py: once in CI the worker left waited 2 minutes there).
    "the_leader_kill_9": the same worker killed with SIGKILL (no goodbye; a reply under way
    may end uncertain, never sent twice)."""
    broker = stop_at_end(EmbeddedBroker(tmp_path / "kafka").start())
    run_two_workers(stopped, tmp_path, broker, ray_address, messagebird)


def run_two_workers(stopped, tmp_path, broker, ray_address, messagebird):
    kafka = broker.bootstrap_servers
    env = {"MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint,
           "ANTIRELOU_SHARDS": "2", "ANTIRELOU_TICK_INTERVAL_S": str(TICK_S)}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_worker(tmp_path / "a", kafka, ray_address, env)
    second = None
    try:
        # The second follows no journal (the deployment's figures are the first's).
        second = start_worker(tmp_path / "b", kafka, ray_address,
                              {**env, "ANTIRELOU_NO_DASHBOARD": "1"}, app_id=first.app_id)
        # One consumer group: the inbound partitions are split between the two workers.
        inbound = f"{first.app_id}.sms-received"
        restarted_to_share = False
        try:
            shared = wait_until_sharing([first, second], inbound, timeout=30)
        except AssertionError:
            # noida-db wedges the group when a member rejoins under a new member id during
            # the rebalance (a commit refused mid-rebalance, under load): the old id stays
            # its leader and nobody is assigned anything. A broker restart clears it
            # (README, known limits); a real Kafka needs none.
            restarted_to_share = True
            time.sleep(1.5)  # noida-db persists about once a second
            broker.restart()
            shared = wait_until_sharing([first, second], inbound, timeout=90)
        assert len(set(shared)) == 2, shared
        # Neither keeps a copy of the other's tables (streams/app.py: no standby replicas).
        assert not any(faust_log.read_standbys(w.log_path) for w in (first, second))
        no_view = second.admin_get("/dashboard/data")
        assert no_view.status_code == 404 and no_view.json()["error"] == "no_dashboard"
        its_metrics = second.admin_get("/metrics").text
        assert "antirelou_consumer_lag" in its_metrics and "antirelou_texts" not in its_metrics
        assert first.admin_get("/dashboard/data").status_code == 200
        surge_off(first)
        both_up = time.time()
        time.sleep(4 * TICK_S)  # a few ticks of the leader timer while both run
        senders = [new_sender() for _ in range(40)]
        campaign = {s: ("paris", "lyon")[i % 2] for i, s in enumerate(senders)}
        flood = [s for s in senders for _ in range(2)]  # two texts each: one reply each

        # Both webhooks take texts; both workers screen and decide (one partition each).
        acknowledged: list[str] = []
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:  # 60 texts over about 5 s
            futures = [pool.submit(post_quietly, (first, second)[i % 2], at=start + i * 0.08,
                                   sender=s, campaign=campaign[s])
                       for i, s in enumerate(flood[:60])]
            first.wait_for(lambda ev: sum(e.TYPE == "ReplySent" for e in ev) >= 5)
            stopped_at = time.time()
            leader = stopped.startswith("the_leader")
            gone, left = (first, second) if leader else (second, first)
            syncs_before = syncs(left)
            if stopped.endswith("kill_9"):
                os.killpg(gone.process.pid, signal.SIGKILL)  # mid-flood, no goodbye
            else:
                os.kill(gone.process.pid, signal.SIGTERM)  # mid-flood, a clean stop
            for f in futures:
                status, mid = f.result()
                if status == 200:
                    acknowledged.append(mid)
        # Gone within the minute (a stop that takes longer than 7 s is cut short and exits
        # non-zero: under load that happens, and must lose nothing either).
        code = gone.process.wait(60)
        if stopped.endswith("kill_9"):
            assert code == -signal.SIGKILL, code
        # The worker left takes every partition over. On noida-db it does not when the
        # member gone was the group's leader (or was killed): the group wedges until the
        # broker restarts (README, known limits), so that is done after 25 s.
        restarted_to_take_over = not took_over(left, inbound, syncs_before, timeout=25)
        if restarted_to_take_over:
            time.sleep(1.5)  # noida-db persists about once a second
            broker.restart()
            assert took_over(left, inbound, syncs_before, timeout=90), "no take-over"
        # The flood goes on, through the worker left.
        for s in flood[60:]:
            status, mid = post_quietly(left, sender=s, campaign=campaign[s])
            assert status == 200, status
            acknowledged.append(mid)

        events = left.wait_for(all_settled(acknowledged), timeout=120)
        time.sleep(1)
        forwarded, outcomes = check_deployment(events, acknowledged, senders, left, messagebird)

        # The leader-only timer ran once: while both workers ran, never two ticks for one
        # campaign within half an interval (two leaders would tick each interval twice).
        ticks = ticks_by_campaign(left, both_up, stopped_at)
        assert ticks, "no tick while both workers ran"
        for cid, times in ticks.items():
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            assert all(g >= TICK_S * 1000 / 2 for g in gaps), (cid, gaps)
        recovery = left.admin_get("/health").json().get("table_recovery")
        assert recovery is not None and recovery["stalled"] == 0, recovery
        # The tables taken over were read back by the bulk reader (infra/faust/patches.py).
        assert recovery["read_in_bulk"] > 0 and recovery["undecodable_skipped"] == 0, recovery
        sent = sum("ReplySent" in o for o in outcomes.values())
        both = sum(len(o) == 2 for o in outcomes.values())
        print(f"\nscale-out, {stopped} stopped (exit {code}): {len(acknowledged)} texts "
              f"acknowledged of {len(flood)}, {len(forwarded)} forwarded, {sent} sent, "
              f"{len(forwarded) - sent} uncertain, {both} sent then marked uncertain, "
              f"SMS sent {len(messagebird.messages)} "
              f"(all tests), ticks while both ran {sum(map(len, ticks.values()))}, "
              f"broker restarted to share: {restarted_to_share}, to take over: "
              f"{restarted_to_take_over}, "
              f"inbound partitions {shared}, table recovery {recovery}")
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)
