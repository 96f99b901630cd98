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
