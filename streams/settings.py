"""A worker's settings (``Settings``) and the names of its topics (``topic_names``).

Built by ``streams.cli`` from the environment and the campaigns file; read by the stages in
``streams.stages``. Importable without Faust.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.operators import Operator
from infra.sending import RetryPolicy
from schemas.campaign import Campaign

ACK_TIMEOUT_S = 10.0  # default of Settings.ack_timeout_s
WEBHOOK_PATH = "/webhooks/messagebird/sms"
STATUS_PATH = "/webhooks/messagebird/status"  # delivery reports (GET), ?campaign=<id>


def topic_names(app_id: str) -> dict[str, str]:
    return {
        "inbound": f"{app_id}.sms-received",
        "requests": f"{app_id}.reply-requests",
        "outbound": f"{app_id}.sms-outbound",
        "journal": f"{app_id}.journal",
        "control": f"{app_id}.control",
        "policies": f"{app_id}.policies",
        "snapshots": f"{app_id}.campaign-snapshots",
        # Texts' bodies, kept apart from the journal for the retention the campaign file
        # sets (streams.rules.retention): the broker deletes them after it.
        "bodies": f"{app_id}.bodies",
        # The notary's (streams.stages.notary): every checkpoint with its leaf hashes, kept
        # for ever; the latest checkpoint of each partition, compacted.
        "notary": f"{app_id}.notary",
        "checkpoints": f"{app_id}.checkpoints",
    }


@dataclass
class Settings:
    kafka: str
    campaigns: Sequence[Campaign]
    secret: bytes
    app_id: str = "antirelou"
    partitions: int = 4
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: Path = Path(".state/faust")
    signing_key: str | None = None
    allow_unsigned: bool = False
    # Bird (infra.providers): the signing key of the webhook subscription and each Bird
    # campaign's channel (channel id -> campaign id); none: no /webhooks/bird.
    bird_signing_key: str | None = None
    bird_channels: Mapping[str, str] = field(default_factory=dict)
    public_url: str | None = None  # the base URL MessageBird signs, when behind a proxy
    batch_size: int = 500
    batch_window_s: float = 0.05
    # Texts screened together: a batch is taken when this many wait or the window has passed
    # since the first, so a lone text waits at most the window.
    screen_batch_size: int = 200
    screen_window_s: float = 0.01
    # The reply stage: MessageBird calls under way at once (threads), SendReply batches
    # handled at once (infra/faust/batches.py), and the size and wait of each batch.
    send_concurrency: int = 32
    send_batches: int = 4
    send_batch_size: int = 64
    send_batch_window_s: float = 0.02
    snapshot_interval_s: float = 30.0
    # Who may send operator commands (infra.operators); with none, only an insecure dev
    # deployment (allow_unsigned) applies them, unsigned.
    operators: Mapping[str, Operator] = field(default_factory=dict)
    # Where MessageBird sends delivery reports for our replies (public base URL; None: no
    # reportUrl is sent and the account's default status URL applies).
    report_base_url: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 5.0
    # How long the webhook waits for the broker's ack before answering 503 (MessageBird
    # then retries): short enough that its own request does not time out first.
    ack_timeout_s: float = ACK_TIMEOUT_S
    # Webhook requests under way at once in this process; the next gets 503 + Retry-After
    # at once (streams.stages.admission).
    webhook_concurrency: int = 256
    redelivery_check_s: float = 2.0  # see stages.watchdog
    # Slow clients (infra/faust/httpguard.py): a connection that sends no complete request
    # headers within http_idle_timeout_s (idle keep-alive included) is closed; a body not
    # received within http_body_timeout_s is answered 408 and its connection closed.
    http_idle_timeout_s: float = 15.0
    http_body_timeout_s: float = 10.0
    # A text's createdDatetime is clamped to its arrival time +- this (streams.intake.messagebird).
    event_skew_ms: int = 5 * 60_000
    # How long a text's body is kept (the campaign file's body_retention_days; 0: never
    # kept, the journal's stand-in only): the bodies topic's retention.
    body_retention_ms: int = 30 * 86_400_000
    tick_interval_s: float = 5.0  # the clock Tick sent to each campaign (surge releases)
    replication_factor: int = 1  # of the topics Faust creates (table changelogs, leader)
    # `up`'s broker supervisor (infra/supervisor.py): () -> BrokerStatus; None for a worker
    # on a broker it does not run. While it is down the webhooks answer 503 at once.
    broker_status: Callable[[], Any] | None = None
    # "all": the webhooks and every stage (the default); "web": the webhooks and /health
    # only (``antirelou worker --role web``): no consumer, so no partitions of any stage
    # topic, no Ray; the full workers screen what it stores (streams.app, create_app).
    role: str = "all"
    # The notary (streams.stages.notary): the checkpoint signing key (an Ed25519 private
    # key, infra.checkpoints.signing_key of the secret; None: no notary), the logs' origin
    # (also the key's name), how long records wait for a checkpoint at most, and the file
    # every signed note is appended to (None: the topics only).
    checkpoint_key: Any = None
    origin: str = "antirelou"
    checkpoint_interval_s: float = 300.0
    checkpoints_file: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
