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
    """The deployment secret is missing, misplaced, or not the deployment's."""


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
        return value.encode(), "ANTIRELOU_SECRET"
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
        return secret, f"ANTIRELOU_SECRET_FILE ({path})"
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
        raise SecretError(f"this worker's secret is not the deployment's: its key check value "
                          f"{mine} differs from {published}, published in {topic} by the first "
                          f"worker; start every worker with the same ANTIRELOU_SECRET")
    return mine
