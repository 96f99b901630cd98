"""The deployment secret: where it may come from, and one value that tells two apart.

Every worker of a deployment must hold the same secret (``ANTIRELOU_SECRET``): under
another one the same number gets another pseudonym ("already answered" breaks) and the
sealed numbers of the work topics do not open. ``key_check_value`` is a short one-way
digest of the secret; the first worker to start publishes it in the compacted topic
``<app id>.keycheck``; every worker compares its own with the first one published there
and refuses to start on a mismatch. The record's key is the value itself, so compaction
keeps every value published and the earliest stays the one that counts.

Outside development the secret must not sit in the state folder beside the data it
protects (a backup of ``.state`` would open every sealed number and let every pseudonym
be reversed by hashing the country's mobile numbers): ``ANTIRELOU_SECRET`` or
``ANTIRELOU_SECRET_FILE`` (a file outside the state folder) is required.

The key check value is published on the broker: whoever reads it can test guesses of the
secret offline. So a secret given is refused at start when it is weak
(``secret_weakness``: fewer than 32 bytes, fewer than 10 distinct ones, or a placeholder
such as the example files' ``CHANGE-ME``), and neither the secret nor its check value is
ever logged or printed. ``placeholder`` refuses the example files' values for the other
keys (signing and access keys, the admin token).

Errors::

    SecretError          no usable secret, or one that differs from the deployment's
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from aiokafka import AIOKafkaProducer

from infra.journal import iter_records
from infra.kafka_auth import client_options

KEYCHECK_CONFIG = {"cleanup.policy": "compact"}


class SecretError(Exception):
    """The deployment secret is missing, misplaced, weak, or not the deployment's."""


MIN_SECRET_BYTES = 32
MIN_SECRET_DISTINCT = 10
# What example files and tutorials put where a key goes (compared without case, spaces,
# dashes or underscores): "CHANGE-ME", "<your secret>", "replace_me"...
PLACEHOLDER_WORDS = ("changeme", "replaceme", "placeholder", "yoursecret", "yourkey",
                     "yourtoken", "fillmein", "example")
MAKE_ONE = "make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'"


def placeholder(value: str | bytes) -> bool:
    """Whether ``value`` is an example file's stand-in for a key, not a key."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    squashed = "".join(c for c in text.lower() if c.isalnum())
    return not squashed or any(word in squashed for word in PLACEHOLDER_WORDS)


def secret_weakness(secret: bytes) -> str | None:
    """Why ``secret`` is too weak to key the deployment (its check value is public to
    whoever reads the broker: a guessable secret is found offline); None when it is not."""
    if placeholder(secret):
        return "is a placeholder, not a secret"
    if len(secret) < MIN_SECRET_BYTES:
        return f"has {len(secret)} bytes: at least {MIN_SECRET_BYTES} random ones are needed"
    if len(set(secret)) < MIN_SECRET_DISTINCT:
        return f"has fewer than {MIN_SECRET_DISTINCT} distinct characters: it is not random"
    return None


def _strong(secret: bytes, source: str) -> bytes:
    why = secret_weakness(secret)
    if why is not None:
        raise SecretError(f"{source} {why}; {MAKE_ONE}")
    return secret


def key_check_value(secret: bytes) -> str:
    """16 hex digits derived one-way from the secret (never the secret, nor a key of it)."""
    key = hashlib.sha256(b"antirelou/key-check\0" + secret).digest()
    return hmac.digest(key, b"key check value", "sha256")[:8].hex()


def keycheck_topic(app_id: str) -> str:
    return f"{app_id}.keycheck"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def deployment_secret(state_dir: Path, development: bool,
                      environ: dict[str, str] | os._Environ[str] = os.environ,
                      ) -> tuple[bytes, str]:
    """The secret and where it came from (to say at start).

    ``ANTIRELOU_SECRET``, else the file ``ANTIRELOU_SECRET_FILE`` names (outside the state
    folder unless developing), else, in development only, a random secret kept in the
    state folder (created once)."""
    value = environ.get("ANTIRELOU_SECRET") or ""
    if value:
        return _strong(value.encode(), "ANTIRELOU_SECRET"), "ANTIRELOU_SECRET"
    file = environ.get("ANTIRELOU_SECRET_FILE") or ""
    if file:
        path = Path(file)
        if not development and _inside(path, state_dir):
            raise SecretError(f"ANTIRELOU_SECRET_FILE {path} is inside the state folder "
                              f"{state_dir}: keep the secret apart from the data it protects")
        try:
            secret = path.read_text().strip().encode()
        except OSError as exc:
            raise SecretError(f"ANTIRELOU_SECRET_FILE {path} cannot be read "
                              f"({exc.strerror or type(exc).__name__})") from None
        if not secret:
            raise SecretError(f"ANTIRELOU_SECRET_FILE {path} is empty")
        return (_strong(secret, f"the secret in ANTIRELOU_SECRET_FILE {path}"),
                f"ANTIRELOU_SECRET_FILE ({path})")
    if not development:
        raise SecretError("no deployment secret: set ANTIRELOU_SECRET or ANTIRELOU_SECRET_FILE "
                          "(a file outside the state folder), the same on every worker; "
                          "--insecure-dev keeps a generated one in the state folder")
    path = state_dir / "secret"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode(), f"{path} (development only)"


async def _first_published(kafka: str, topic: str) -> str | None:
    async for _, _, key, _ in iter_records(kafka, topic):
        return key.decode() if key else None
    return None


async def check_key(kafka: str, topic: str, secret: bytes) -> str:
    """Publish this secret's key check value if the deployment has none yet; raise
    SecretError if the deployment's (the first published) is another. The topic exists."""
    mine = key_check_value(secret)
    published = await _first_published(kafka, topic)
    if published is None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", **client_options())
        await producer.start()
        try:
            await producer.send_and_wait(topic, mine.encode(), key=mine.encode())
        finally:
            await producer.stop()
        published = await _first_published(kafka, topic)  # two first workers: one wins
    if published != mine:
        # Neither value is said: each is a one-way digest of a secret, public enough on the
        # broker without being copied into logs.
        raise SecretError(f"this worker's secret is not the deployment's: its key check "
                          f"differs from the one the first worker published in {topic}; start "
                          "every worker with the same ANTIRELOU_SECRET")
    return mine
