"""Operator credentials: the campaign file's [[operator]] tables and ``authorize``, the
check every operator command passes before a campaign sees it."""

from __future__ import annotations

import pytest

from infra.config import ConfigError
from infra.operators import (
    MAX_SKEW_MS,
    NO_OPERATORS,
    OperatorKeyError,
    Refusal,
    authorize,
    b64,
    load_private_key,
    new_key_pair,
    parse_operators,
    sign_command,
    signed_bytes,
)
from schemas import codec
from schemas.commands import ChangePolicy, CreditBudget, SignedControl

NOW = 1_800_000_000_000
APP = "antirelou"
ALICE_KEY, ALICE_PUB = new_key_pair()
CAROL_KEY, CAROL_PUB = new_key_pair()
OPERATORS = parse_operators({"operator": [
    {"name": "alice", "public_key": ALICE_PUB, "may": ["policy", "budget"]},
    {"name": "carol", "public_key": CAROL_PUB, "may": ["policy"], "campaigns": ["paris"]},
]}, campaign_ids=["paris", "lyon"])


def credit(operator="alice", campaign="paris", at=NOW, command_id="c1"):
    return CreditBudget(command_id=command_id, campaign_id=campaign, amount_micros=1_000_000,
                        source="leetchi", operator=operator, occurred_at=at)


def change(operator="carol", campaign="paris", at=NOW, command_id="c2"):
    return ChangePolicy(command_id=command_id, campaign_id=campaign, changes={"reserve_micros": 5},
                        operator=operator, occurred_at=at)


def signed(command, key=ALICE_KEY, app=APP) -> bytes:
    return codec.encode(sign_command(command, key, app))


def check(value: bytes, operators=OPERATORS, allow_unsigned=False, now=NOW):
    return authorize(value, operators, APP, now, allow_unsigned=allow_unsigned)


def test_a_command_signed_by_an_allowed_operator_passes_unchanged():
    assert check(signed(credit())) == credit()
    assert check(signed(change(), CAROL_KEY)) == change()


def test_the_signed_envelope_holds_no_key():
    wire = signed(credit())
    assert ALICE_KEY.encode() not in wire and ALICE_PUB.encode() not in wire


@pytest.mark.parametrize("value, reason", [
    (codec.encode(credit()), "unsigned command"),
    (signed(credit(operator="mallory"), new_key_pair()[0]), "unknown operator"),
    (signed(credit(), new_key_pair()[0]), "bad signature"),  # alice's name, another key
    (signed(credit(operator="alice"), CAROL_KEY), "bad signature"),
    (signed(credit(), app="other-deployment"), "bad signature"),
    (signed(credit(operator="carol"), CAROL_KEY), "operator may not change budget"),
    (signed(change(campaign="lyon"), CAROL_KEY), "operator may not operate this campaign"),
    (signed(credit(at=NOW - MAX_SKEW_MS - 1)), "stale"),
    (signed(credit(at=NOW + MAX_SKEW_MS + 1)), "stale"),
    (b"\xff not json", "malformed"),
    (b'{"type": "TextReceived", "v": 1}', "malformed"),
    (codec.encode(SignedControl(operator="alice", command="{}", signature="sig")), "malformed"),
    (codec.encode(SignedControl(operator="alice", command=codec.encode(credit()).decode(), signature="AAAA")),
     "bad signature"),
    (codec.encode(SignedControl(operator="alice", command=codec.encode(credit()).decode(), signature=5)),
     "bad signature"),
])
def test_refusals_say_why(value, reason):
    refused = check(value)
    assert isinstance(refused, Refusal) and refused.reason.startswith(reason), refused


def test_a_command_naming_another_operator_than_its_signer_is_refused():
    # Signed correctly by alice, but an envelope claiming carol's name.
    inner = sign_command(credit(), ALICE_KEY, APP)
    forged = codec.encode(SignedControl(operator="carol", command=inner.command, signature=inner.signature))
    assert isinstance(check(forged), Refusal)
    # And a command saying "carol" inside, signed by alice as alice: refused too.
    wire = codec.encode(credit(operator="carol"))
    sig = b64(load_private_key(ALICE_KEY).sign(signed_bytes(APP, wire)))
    refused = check(codec.encode(SignedControl(operator="alice", command=wire.decode(), signature=sig)))
    assert isinstance(refused, Refusal) and "another operator" in refused.reason


@pytest.mark.parametrize("command", [
    CreditBudget(command_id="c3", campaign_id=["paris"], amount_micros=1, source="x", operator="alice",
                 occurred_at=NOW),
    CreditBudget(command_id="c3", campaign_id="paris", amount_micros="1000000", source="x", operator="alice",
                 occurred_at=NOW),
    CreditBudget(command_id="c3", campaign_id="paris", amount_micros=True, source="x", operator="alice",
                 occurred_at=NOW),
    ChangePolicy(command_id="c3", campaign_id="paris", changes=["reserve_micros"], operator="alice",
                 occurred_at=NOW),
    ChangePolicy(command_id=7, campaign_id="paris", changes={}, operator="alice", occurred_at=NOW),
])
def test_commands_with_fields_of_the_wrong_type_are_refused_even_signed(command):
    assert check(signed(command)).reason.startswith("malformed")
    unsigned = check(codec.encode(command), operators={}, allow_unsigned=True)
    assert isinstance(unsigned, Refusal) and unsigned.reason.startswith("malformed")


def test_a_refusal_names_the_claimed_operator_and_the_command():
    refused = check(signed(credit(operator="mallory", command_id="x9"), new_key_pair()[0]))
    assert (refused.operator, refused.command_id, refused.campaign_id) == ("mallory", "x9",
                                                                            "paris")


def test_unsigned_commands_pass_only_in_insecure_dev_mode_without_operators():
    assert check(codec.encode(credit()), operators={}, allow_unsigned=True) == credit()
    assert isinstance(check(codec.encode(credit()), operators={}), Refusal)
    assert NO_OPERATORS in check(codec.encode(credit()), operators={}).reason
    assert isinstance(check(codec.encode(credit()), allow_unsigned=True), Refusal)


@pytest.mark.parametrize("table, message", [
    ({"name": "x", "public_key": "nope", "may": ["policy"]}, "public_key"),
    ({"name": "x", "public_key": ALICE_PUB, "may": ["root"]}, "'may'"),
    ({"name": "x", "public_key": ALICE_PUB, "may": []}, "'may'"),
    ({"name": "", "public_key": ALICE_PUB, "may": ["policy"]}, "'name'"),
    ({"name": "x", "public_key": ALICE_PUB, "may": ["policy"], "campaigns": ["atlantis"]},
     "unknown campaigns"),
    ({"name": "x", "public_key": ALICE_PUB, "may": ["policy"], "token": "t"}, "unknown keys"),
])
def test_bad_operator_tables_fail_at_start(table, message):
    with pytest.raises(ConfigError, match=message):
        parse_operators({"operator": [table]}, campaign_ids=["paris"])


def test_an_operator_declared_twice_fails():
    table = {"name": "x", "public_key": ALICE_PUB, "may": ["policy"]}
    with pytest.raises(ConfigError, match="twice"):
        parse_operators({"operator": [table, table]})


def test_a_bad_private_key_is_a_clear_error():
    with pytest.raises(OperatorKeyError, match="ANTIRELOU_OPERATOR_KEY"):
        sign_command(credit(), "not-a-key", APP)


# --- the shard checks what it applies (issue 31) -------------------------------------------


class EmptyJournal:
    """A JournalSource with nothing in it: the shard starts from its campaign file."""

    async def events(self, topic, start=None):
        return
        yield

    async def latest_by_key(self, topic):
        return {}


def journal_shard(authority=None):
    from actors.remote import JournalShard
    from infra.operators import OperatorAuthority
    from schemas.campaign import Campaign

    paris = Campaign(id="paris", number="33644630001", reply_text="Non c'est non.", language="fr",
                     country="FR", budget_micros=1_000_000, price_per_segment_micros=80_000,
                     starts_at=0, ends_at=10**13, originator="AntiRelou", pacing=False)
    authority = authority if authority is not None else OperatorAuthority(OPERATORS, APP)
    return JournalShard([paris], EmptyJournal(), "journal", "snapshots", authority=authority,
                        clock=lambda: NOW / 1000)


def test_the_named_shard_itself_refuses_an_unsigned_credit_whoever_calls_it():
    # Issue 31: the Ed25519 check ran in the worker, and the shard applied whatever it was
    # handed: anyone who could call the named Ray actor credited a budget with a bare
    # CreditBudget. The shard now checks each control record itself.
    shard = journal_shard()
    before = shard.status()["paris"]["balance_micros"]
    for attempt in (credit(), codec.encode(credit()),
                    signed(credit(operator="mallory"), new_key_pair()[0])):
        (refused,) = shard.control([attempt])
        assert refused.TYPE == "ControlRefused", refused
    assert shard.status()["paris"]["balance_micros"] == before
    (credited,) = shard.control([signed(credit(command_id="c9"))])  # alice's, signed
    assert credited.TYPE == "BudgetCredited" and credited.amount_micros == 1_000_000
    assert shard.status()["paris"]["balance_micros"] == before + 1_000_000


def test_the_shard_judges_freshness_by_its_own_clock_and_without_keys_applies_nothing():
    from actors.remote import NO_AUTHORITY
    from infra.operators import OperatorAuthority

    stale = signed(credit(at=NOW - MAX_SKEW_MS - 1))
    (refused,) = journal_shard().control([stale])
    assert refused.reason.startswith("stale")
    keyless = journal_shard()
    keyless._authority = None  # a shard created without an authority
    (refused,) = keyless.control([signed(credit())])
    assert refused.reason == NO_AUTHORITY
    # Insecure development mode with no operator: unsigned accepted, as the worker did.
    dev = journal_shard(OperatorAuthority({}, APP, allow_unsigned=True))
    (credited,) = dev.control([codec.encode(credit(operator=""))])
    assert credited.TYPE == "BudgetCredited"
