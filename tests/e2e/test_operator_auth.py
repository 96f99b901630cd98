"""Operator commands need credentials: whoever reaches the broker cannot change a policy or
credit a budget. Refused attempts are journaled as ``ControlRefused`` and stay out of the
campaign replay (the audit stays clean); a signed command replayed is not applied twice."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time

import pytest
from aiokafka import AIOKafkaProducer

from infra.operators import new_key_pair, sign_command
from schemas import codec
from streams.cli import control
from tests.e2e.conftest import CONFIG, OPERATOR_KEYS

pytestmark = pytest.mark.services


def produce(worker, value: bytes) -> None:
    """Write raw bytes to the control topic, as anyone with broker access could."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=worker.kafka, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(f"{worker.app_id}.control", value, key=b"paris")
        finally:
            await producer.stop()

    asyncio.run(send())


def refusals(worker, command_id: str | None = None) -> list:
    return [e for e in worker.journal() if e.TYPE == "ControlRefused"
            and (command_id is None or e.command_id == command_id)]


def wait_refused(worker, command_id: str) -> object:
    events = worker.wait_for(lambda ev: any(e.TYPE == "ControlRefused"
                                            and e.command_id == command_id for e in ev))
    return next(e for e in events if e.TYPE == "ControlRefused" and e.command_id == command_id)


def balance(worker, campaign: str) -> int:
    return worker.status()[campaign]["balance_micros"]


def test_without_a_key_the_cli_says_what_to_set_and_sends_nothing(worker):
    r = worker.cli("budget", "credit", "lyon", "5", "--source", "leetchi")
    assert r.returncode == 2
    assert "ANTIRELOU_OPERATOR_KEY" in r.stderr and "alice" in r.stderr


def test_with_no_operator_configured_the_cli_says_what_to_configure(worker, tmp_path):
    config = tmp_path / "no-operators.toml"
    config.write_text(CONFIG.split("[[operator]]")[0])
    r = subprocess.run(
        [sys.executable, "-m", "streams.cli", "policy", "set", "paris", "reserve_eur=1",
         "--kafka", worker.kafka, "--app-id", worker.app_id, "--config", str(config)],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert r.returncode == 2, r.stderr
    assert "no operators are configured" in r.stderr and "antirelou operator new" in r.stderr


@pytest.mark.parametrize("who, key, args, reason", [
    # alice's name, someone else's key: a forged signature
    ("alice", new_key_pair()[0], ("budget", "credit", "lyon", "5", "--source", "x"),
     "bad signature"),
    ("mallory", new_key_pair()[0], ("budget", "credit", "lyon", "5", "--source", "x"),
     "unknown operator"),
    ("carol", None, ("budget", "credit", "paris", "5", "--source", "x"),
     "operator may not change budget"),
    ("carol", None, ("policy", "set", "lyon", "reserve_eur=40"),
     "operator may not operate this campaign"),
])
def test_unauthenticated_or_unauthorised_commands_are_refused_and_recorded(
        worker, who, key, args, reason):
    before = worker.status()
    r = worker.cli(*args, operator=who, key=key)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"refused (operator {who!r}): {reason}" in r.stderr
    (refused,) = [e for e in refusals(worker) if e.operator == who and e.reason == reason
                  and e.campaign_id == args[2]][-1:]
    assert refused.command_id and refused.occurred_at > 0
    after = worker.status()
    assert {c: (s["balance_micros"], s["policy"]) for c, s in after.items()} == {
        c: (s["balance_micros"], s["policy"]) for c, s in before.items()}


def test_an_unsigned_command_written_straight_to_the_topic_is_refused(worker):
    credit = control.new_credit("lyon", 9_000_000, "mallory-fund", "alice")
    before = balance(worker, "lyon")
    produce(worker, codec.encode(credit))
    refused = wait_refused(worker, credit.command_id)
    assert (refused.operator, refused.reason) == ("alice", "unsigned command")
    assert balance(worker, "lyon") == before


def test_garbage_on_the_control_topic_is_refused_and_the_agent_carries_on(worker):
    produce(worker, b"\xff\x00 not a command")
    produce(worker, b'{"type": "SignedControl", "v": 1, "operator": ["x"], "command": 5, '
                    b'"signature": null}')
    r = worker.cli("budget", "credit", "paris", "1", "--source", "grant", operator="alice")
    assert r.returncode == 0, r.stderr  # the agent survived both
    malformed = [e for e in refusals(worker) if e.reason.startswith("malformed")]
    assert len(malformed) >= 2


def test_a_replayed_signed_command_is_applied_once_and_a_stale_one_never(worker):
    credit = control.new_credit("lyon", 1_000_000, "leetchi", "alice")
    wire = codec.encode(sign_command(credit, OPERATOR_KEYS["alice"], worker.app_id))
    before = balance(worker, "lyon")
    produce(worker, wire)
    produce(worker, wire)  # an eavesdropper's replay, or a redelivery
    events = worker.wait_for(lambda ev: len([e for e in ev if getattr(e, "command_id", None)
                                             == credit.command_id]) >= 2)
    answers = [e for e in events if getattr(e, "command_id", None) == credit.command_id]
    assert [e.TYPE for e in answers] == ["BudgetCredited"] * 2, answers
    assert answers[0] == answers[1]  # the same decision, repeated: same seq, same balance
    assert balance(worker, "lyon") == before + 1_000_000
    # Signed an hour ago: outside the window, whatever the campaign remembers.
    old = control.new_credit("lyon", 1_000_000, "leetchi", "alice")
    old = dataclasses.replace(old, occurred_at=int(time.time() * 1000) - 3_600_000)
    produce(worker, codec.encode(sign_command(old, OPERATOR_KEYS["alice"], worker.app_id)))
    assert wait_refused(worker, old.command_id).reason.startswith("stale")
    # Signed for another deployment: refused here.
    other = control.new_credit("lyon", 1_000_000, "leetchi", "alice")
    produce(worker, codec.encode(sign_command(other, OPERATOR_KEYS["alice"], "other-app")))
    assert wait_refused(worker, other.command_id).reason == "bad signature"
    assert balance(worker, "lyon") == before + 1_000_000


def test_refusals_stay_out_of_the_campaign_replay(worker):
    # A refusal and an accepted command, then the audit replays the journal: clean.
    assert worker.cli("policy", "set", "paris", "reserve_eur=1", operator="carol").returncode == 0
    assert worker.cli("policy", "set", "paris", "reserve_eur=2", operator="mallory",
                      key=new_key_pair()[0]).returncode == 1
    assert refusals(worker)
    audit = worker.cli("audit")
    assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-2000:]


def test_a_caller_of_the_named_shard_cannot_credit_a_budget(worker, ray_address):
    # Issue 31: the signature was checked in the worker only; any process of the Ray cluster
    # could look the shard up by name and hand it a bare CreditBudget, and the budget grew.
    # (This test's process is a driver of the Ray session the worker joined.)
    import ray

    from schemas.commands import CreditBudget

    shard = ray.get_actor("antirelou-shard-0", namespace=worker.app_id)
    before = balance(worker, "paris")
    bare = CreditBudget(command_id="direct-1", campaign_id="paris", amount_micros=10**9,
                        source="nobody", operator="alice", occurred_at=int(time.time() * 1000))
    (answer,) = ray.get(shard.control.remote([bare]), timeout=60)
    assert answer.TYPE == "ControlRefused", answer  # main: BudgetCredited, EUR 1,000 more
    assert balance(worker, "paris") == before
    (answer,) = ray.get(shard.control.remote([codec.encode(bare)]), timeout=60)
    assert answer.TYPE == "ControlRefused" and answer.reason.startswith("unsigned command")
    assert balance(worker, "paris") == before
