"""Operator credentials: who may change a campaign's policy or credit its budget.

Operators are declared in the campaign file, by public key only::

    [[operator]]
    name = "alice"
    public_key = "u1Jm...="           # printed by `antirelou operator new alice`
    may = ["policy", "budget"]         # policy: `policy set`; budget: `budget credit`
    campaigns = ["paris"]              # optional; default: every campaign

The operator keeps the matching private key (Ed25519) and hands it to the CLI through
``ANTIRELOU_OPERATOR_KEY`` (never on the command line). The CLI wraps each command in a
``SignedControl``: the command's exact wire bytes, the operator's name and an Ed25519
signature over ``"antirelou/control/v1" NUL app-id NUL bytes``. Neither key goes on the
control topic, and the worker holds only public keys: reading the campaign file or the topic
does not let anyone sign. The app id in the signed bytes keeps a command of one deployment
from being replayed on another; the command's time (checked within ``MAX_SKEW_MS``) and the
campaign's memory of command ids keep it from being applied twice.

``authorize`` is what the worker's ``apply_controls`` runs before a command reaches a shard.

Errors::

    ConfigError (infra.config)     a bad [[operator]] table
    OperatorKeyError (ValueError)  a private key that does not parse
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from infra.config import ConfigError, read_campaign_file
from schemas import codec
from schemas.commands import ChangePolicy, ControlCommand, CreditBudget, SignedControl

RIGHTS = {"policy": ChangePolicy, "budget": CreditBudget}
MAX_SKEW_MS = 10 * 60 * 1000  # a signed command is valid 10 minutes either side of its time
_KNOWN = {"name", "public_key", "may", "campaigns"}
NO_OPERATORS = ("no operators are configured: create one with `antirelou operator new NAME`, "
                "add the printed [[operator]] table to the campaign file, restart the workers "
                "and set ANTIRELOU_OPERATOR_KEY to the printed private key")


class OperatorKeyError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    public_key: bytes  # raw Ed25519, 32 bytes
    may: frozenset[str]
    campaigns: frozenset[str] | None  # None: every campaign


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a control command was not handed to the campaigns (journaled as ControlRefused)."""

    reason: str
    operator: str = ""
    command_id: str = ""
    campaign_id: str = ""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str, size: int) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != size:
        raise ValueError(f"not {size} bytes")
    return raw


def new_key_pair() -> tuple[str, str]:
    """(private key, public key), both base64: the private one for the operator only."""
    seed = secrets.token_bytes(32)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return b64(seed), b64(public)


def load_private_key(text: str) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(_unb64(text.strip(), 32))
    except ValueError:
        raise OperatorKeyError("ANTIRELOU_OPERATOR_KEY is not an operator private key (base64 "
                               "of 32 bytes, as printed by `antirelou operator new`)") from None


def signed_bytes(app_id: str, command: bytes) -> bytes:
    return b"antirelou/control/v1\0" + app_id.encode() + b"\0" + command


def sign_command(command: ControlCommand, private_key: str, app_id: str) -> SignedControl:
    wire = codec.encode(command)
    signature = load_private_key(private_key).sign(signed_bytes(app_id, wire))
    return SignedControl(operator=command.operator, command=wire.decode(),
                         signature=b64(signature))


def parse_operators(data: Mapping[str, Any], source: str = "<config>",
                    campaign_ids: Iterable[str] | None = None) -> dict[str, Operator]:
    tables = data.get("operator", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{source}: 'operator' must be [[operator]] tables")
    known = set(campaign_ids) if campaign_ids is not None else None
    out: dict[str, Operator] = {}
    for i, t in enumerate(tables):
        where = f"{source}: operator #{i + 1}"
        if not isinstance(t, dict):
            raise ConfigError(f"{where}: must be a table")
        unknown = sorted(set(t) - _KNOWN)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}")
        name = t.get("name")
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise ConfigError(f"{where}: 'name' must be a non-empty string")
        where = f"{where} ({name!r})"
        if name in out:
            raise ConfigError(f"{where}: declared twice")
        try:
            public = _unb64(t.get("public_key") if isinstance(t.get("public_key"), str) else "",
                            32)
            Ed25519PublicKey.from_public_bytes(public)
        except ValueError:
            raise ConfigError(f"{where}: 'public_key' must be an Ed25519 public key (base64, "
                              "as printed by `antirelou operator new`)") from None
        may = t.get("may")
        if (not isinstance(may, list) or not may
                or not all(isinstance(m, str) and m in RIGHTS for m in may)):
            raise ConfigError(f"{where}: 'may' must list some of {sorted(RIGHTS)}")
        campaigns = t.get("campaigns")
        if campaigns is not None:
            if not isinstance(campaigns, list) or not all(isinstance(c, str) for c in campaigns):
                raise ConfigError(f"{where}: 'campaigns' must be a list of campaign ids")
            if known is not None and not set(campaigns) <= known:
                raise ConfigError(f"{where}: unknown campaigns "
                                  f"{sorted(set(campaigns) - known)}")
        twin = next((o.name for o in out.values() if o.public_key == public), None)
        if twin is not None:
            raise ConfigError(f"{where}: same 'public_key' as operator {twin!r} (each "
                              "operator needs a key of her own: `antirelou operator new`)")
        out[name] = Operator(name, public, frozenset(may),
                             None if campaigns is None else frozenset(campaigns))
    return out


def authorize(value: bytes, operators: Mapping[str, Operator], app_id: str, now_ms: int,
              allow_unsigned: bool = False) -> ControlCommand | Refusal:
    """The command to hand to the campaigns, or why it is refused.

    Unsigned commands pass only in insecure development mode with no operator declared.
    """
    try:
        message = codec.decode(value)
    except (codec.CodecError, ValueError, TypeError):
        return Refusal("malformed: not a control command")
    if isinstance(message, ChangePolicy | CreditBudget):
        if allow_unsigned and not operators:
            return message if _well_formed(message) else Refusal(
                "malformed: fields of the wrong type", _text(message.operator),
                _text(message.command_id), _text(message.campaign_id))
        reason = "unsigned command" + ("" if operators else f"; {NO_OPERATORS}")
        return Refusal(reason, _text(message.operator), _text(message.command_id),
                       _text(message.campaign_id))
    if not isinstance(message, SignedControl):
        return Refusal("malformed: not a control command")
    claimed = _text(message.operator)
    try:
        inner_raw = message.command.encode() if isinstance(message.command, str) else b""
        command = codec.decode(inner_raw)
    except (codec.CodecError, ValueError, TypeError):
        return Refusal("malformed: the signed command does not decode", claimed)
    if not isinstance(command, ChangePolicy | CreditBudget):
        return Refusal("malformed: not a control command", claimed)
    if not _well_formed(command):
        # Even signed: the shards index campaigns by these fields.
        return Refusal("malformed: fields of the wrong type", claimed,
                       _text(command.command_id), _text(command.campaign_id))
    ids = (claimed, _text(command.command_id), _text(command.campaign_id))
    if not operators:
        return Refusal(NO_OPERATORS, *ids)
    operator = operators.get(claimed)
    if operator is None:
        return Refusal("unknown operator", *ids)
    try:
        signature = _unb64(message.signature if isinstance(message.signature, str) else "", 64)
        Ed25519PublicKey.from_public_bytes(operator.public_key).verify(
            signature, signed_bytes(app_id, inner_raw))
    except (ValueError, InvalidSignature):
        return Refusal("bad signature", *ids)
    if command.operator != claimed:
        return Refusal("the command names another operator than its signer", *ids)
    right = "policy" if isinstance(command, ChangePolicy) else "budget"
    if right not in operator.may:
        return Refusal(f"operator may not change {right}", *ids)
    if operator.campaigns is not None and command.campaign_id not in operator.campaigns:
        return Refusal("operator may not operate this campaign", *ids)
    if abs(now_ms - command.occurred_at) > MAX_SKEW_MS:
        return Refusal("stale: signed more than 10 minutes from now (a replay, or a clock "
                       "off)", *ids)
    return command


def _well_formed(command: ControlCommand) -> bool:
    common = (isinstance(command.command_id, str) and isinstance(command.campaign_id, str)
              and isinstance(command.operator, str) and type(command.occurred_at) is int)
    if isinstance(command, ChangePolicy):
        return common and isinstance(command.changes, dict)
    return (common and type(command.amount_micros) is int
            and isinstance(command.source, str))


def _text(value: object) -> str:
    return value[:200] if isinstance(value, str) else ""


def load_operators(path: str | Path, campaign_ids: Iterable[str] | None = None
                   ) -> dict[str, Operator]:
    """The ``[[operator]]`` tables of a campaign file (none: an empty dict)."""
    return parse_operators(read_campaign_file(path), str(path), campaign_ids)
