"""What ``antirelou up`` and ``antirelou worker`` read and build before the Faust worker runs
(``streams.cli.run``): the deployment (campaigns, operators, providers, webhook keys, the
deployment secret), its topics (layout, settings, creation), the check of the secret
against the journal's, the Ray campaign shards, the worker's ``Settings``, and the banner
that says what is reachable and every development shortcut in force.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import ConfigError, load_body_retention_days, load_campaigns
from streams.cli.common import env, eur, ucs2_warning

log = logging.getLogger("antirelou")

# The work topics carry the sender's number (sealed): kept long enough for any restart or
# outage to be worked through (a surge's deferred replies wait in a table, not here), then
# deleted by the broker. The journal, without numbers, is kept for ever (the broker's
# default would drop it after 7 days).
WORK_TOPIC_RETENTION_MS = 7 * 24 * 3_600_000

# --- topics ------------------------------------------------------------------------------


def topic_layout(names: dict[str, str], partitions: int) -> dict[str, int]:
    # Policies are few and must be read in order by every worker; snapshots are one record
    # per campaign: one partition each.
    single = ("policies", "snapshots", "notary", "checkpoints")
    return {name: 1 if role in single else partitions for role, name in names.items()}


def min_insync_for(replication: int, given: int | None = None) -> int | None:
    """``min.insync.replicas`` for topics replicated ``replication`` times: the one given,
    else 2 from 3 replicas on (a write acknowledged with acks=all is then on two brokers,
    and one broker may be down), else None (the broker's default)."""
    if given is not None:
        if not 1 <= given <= replication:
            raise ConfigError(f"min.insync.replicas {given} must be between 1 and the "
                              f"replication factor {replication}")
        return given
    return 2 if replication >= 3 else None


BODY_SEGMENT_MAX_MS = 86_400_000  # the bodies topic's segments: a body outlives its
# retention by at most this (Kafka deletes whole segments, the newest record past it)


def body_topic_config(body_retention_ms: int) -> dict[str, str]:
    """The bodies topic's config: deleted past the campaign file's retention (a minute
    when bodies are not kept: none is written)."""
    retention = max(body_retention_ms, 60_000)
    return {"cleanup.policy": "delete", "retention.ms": str(retention),
            "segment.ms": str(min(retention, BODY_SEGMENT_MAX_MS))}


def topic_configs(names: dict[str, str], min_insync: int | None = None,
                  body_retention_ms: int = 30 * 86_400_000) -> dict[str, dict[str, str]]:
    from actors.snapshot import MAX_SNAPSHOT_BYTES

    work = {"cleanup.policy": "delete", "retention.ms": str(WORK_TOPIC_RETENTION_MS)}
    configs = {
        names["bodies"]: body_topic_config(body_retention_ms),

        # Snapshots: only the latest per campaign matters, and one may exceed Kafka's 1 MiB.
        names["snapshots"]: {"cleanup.policy": "compact",
                             "max.message.bytes": str(MAX_SNAPSHOT_BYTES)},
        names["journal"]: {"cleanup.policy": "delete", "retention.ms": "-1"},
        # Every worker's screening reads every policy version from the start: kept for ever
        # (a version deleted by retention left a gap, repaired from the journal since).
        names["policies"]: {"cleanup.policy": "delete", "retention.ms": "-1"},
        # The notary's: every checkpoint kept, as the journal; the latest per partition.
        names["notary"]: {"cleanup.policy": "delete", "retention.ms": "-1"},
        names["checkpoints"]: {"cleanup.policy": "compact"},
        names["inbound"]: work, names["requests"]: work, names["outbound"]: work,
    }
    if min_insync is not None:
        for role in names:
            configs[names[role]] = {**configs.get(names[role], {}),
                                    "min.insync.replicas": str(min_insync)}
    return configs


def create_topics(args: argparse.Namespace, kafka: str,
                   body_retention_ms: int) -> tuple[dict[str, str], int]:
    """The deployment's topics (those missing); their names and replication factor. The
    bodies topic's retention is set to the campaign file's at every start (a retention
    lowered in the file deletes the older bodies)."""
    from infra.broker import BrokerError, broker_count, default_replication, ensure_topics
    from infra.kafka_admin import set_topic_configs
    from streams.settings import topic_names

    names = topic_names(args.app_id)
    replication = args.replication_factor or default_replication(broker_count(kafka))
    min_insync = min_insync_for(replication, args.min_insync_replicas)
    configs = topic_configs(names, min_insync, body_retention_ms)
    created = ensure_topics(kafka, topic_layout(names, args.partitions),
                            config=configs, replication=replication)
    if created:
        log.info("created topics %s (replication factor %d, min.insync.replicas %s)",
                 ", ".join(created), replication, min_insync or "the broker's")
    if names["bodies"] not in created:
        try:
            set_topic_configs(kafka, {names["bodies"]: configs[names["bodies"]]})
        except BrokerError as exc:
            log.warning("the retention of %s could not be set to the campaign file's (%s): "
                        "set retention.ms=%s on it with your Kafka tooling", names["bodies"],
                        exc, configs[names["bodies"]]["retention.ms"])
    return names, replication


@dataclass(frozen=True)
class Deployment:
    """What ``up`` and ``worker`` read before they start anything."""

    campaigns: list
    operators: dict
    providers: Any
    state_dir: Path
    secret: bytes
    signing_key: str | None
    bird_signing_key: str | None
    body_retention_ms: int


def read_deployment(args: argparse.Namespace) -> Deployment | None:
    """The campaign file, the webhook signing keys and the deployment secret; None (said
    why) when a key is missing or the secret cannot be had."""
    from infra.keycheck import SecretError, deployment_secret
    from infra.operators import load_operators
    from infra.providers import load_providers
    from infra.statedir import make_private
    from streams.rules.retention import retention_ms

    campaigns = load_campaigns(args.config)
    operators = load_operators(args.config, [c.id for c in campaigns])
    providers = load_providers(args.config, campaigns)  # provider of each campaign, checked
    if not campaigns_can_work(args.config, campaigns):
        return None
    signing_key = env("MESSAGEBIRD_SIGNING_KEY")
    bird_signing_key = env("BIRD_SIGNING_KEY")
    sends_only = getattr(args, "role", "all") == "send"
    if sends_only:
        # No webhook here: the signing keys stay with the processes that check signatures.
        signing_key = bird_signing_key = None
    elif signing_key is None and providers.uses_messagebird and not args.insecure_dev:
        print("antirelou: no webhook signing key. Set MESSAGEBIRD_SIGNING_KEY, or pass "
              "--insecure-dev to accept unsigned webhooks while developing.", file=sys.stderr)
        return None
    if bird_signing_key is None and providers.uses_bird and not args.insecure_dev \
            and not sends_only:
        print("antirelou: no Bird webhook signing key. Set BIRD_SIGNING_KEY (the signing key "
              "of the webhook subscription), or pass --insecure-dev.", file=sys.stderr)
        return None
    refusal = start_refusal(args)
    if refusal is not None:
        print(f"antirelou: {refusal}", file=sys.stderr)
        return None
    try:
        state_dir = make_private(Path(args.state_dir).resolve())  # broker data, tables, secret
    except OSError as exc:
        print(f"antirelou: --state-dir {args.state_dir}: cannot create the folder "
              f"({exc.strerror or exc})", file=sys.stderr)
        return None
    try:
        secret, secret_from = deployment_secret(state_dir, development=args.insecure_dev)
    except SecretError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return None
    log.info("deployment secret from %s", secret_from)
    if not secret_from.startswith("ANTIRELOU"):
        log.warning("the deployment secret is kept in the state folder (%s): development "
                    "only, a backup of the folder opens every sealed number", secret_from)
    return Deployment(campaigns, operators, providers, state_dir, secret, signing_key,
                      bird_signing_key, retention_ms(load_body_retention_days(args.config)))


# Keys an example file or a tutorial may leave as a placeholder ("CHANGE-ME"): refused.
KEYS = {"MESSAGEBIRD_SIGNING_KEY": "the signing key MessageBird gives",
        "BIRD_SIGNING_KEY": "the webhook subscription's signing key",
        "MESSAGEBIRD_ACCESS_KEY": "MessageBird's access key (or none: dry run)",
        "BIRD_ACCESS_KEY": "Bird's access key (or none: dry run)",
        "ANTIRELOU_ADMIN_TOKEN": "a random token (or none: no admin pages)"}
MIN_ADMIN_TOKEN_CHARS = 16


def start_refusal(args: argparse.Namespace) -> str | None:
    """Why ``up`` / ``worker`` must not start with these settings (one line), or None:
    a placeholder for a key; an admin token too short to stand guessing; outside
    ``--insecure-dev``, no ``--public-url``, which fixes the URL MessageBird's and Bird's
    signatures are checked against (without it the request's Host header chose it: a
    token signed for another endpoint of the account was accepted); a public URL that is
    not one."""
    from urllib.parse import urlsplit

    from infra.keycheck import placeholder

    for name, what in KEYS.items():
        value = env(name)
        if value is not None and value.strip() and placeholder(value):
            return f"{name} is a placeholder, not a key: set {what}"
    if args.webhook_concurrency < 1:
        return f"--webhook-concurrency {args.webhook_concurrency}: at least 1"
    token = env("ANTIRELOU_ADMIN_TOKEN")
    if token is not None and len(token) < MIN_ADMIN_TOKEN_CHARS:
        return (f"ANTIRELOU_ADMIN_TOKEN has {len(token)} characters: it guards the admin "
                f"pages, give it at least {MIN_ADMIN_TOKEN_CHARS} random ones")
    url = args.public_url
    if url is None:
        if args.insecure_dev:
            return None
        return ("--public-url (ANTIRELOU_PUBLIC_URL) is required outside --insecure-dev: the "
                "base URL MessageBird calls (https://sms.example.org), which its signatures "
                "cover")
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        ok = False
    if not ok or parts.query or parts.fragment:
        return (f"--public-url {url!r} is not a base URL like https://sms.example.org "
                "(scheme, host, optional port and path; no query)")
    return None


def campaigns_can_work(config: str, campaigns: list) -> bool:
    """What ``antirelou check`` refuses is refused here too (one line each, False); what it
    warns of is said."""
    import time

    from streams.cli.checks import campaign_problems

    problems = campaign_problems(campaigns, int(time.time() * 1000))
    for p in problems:
        if p.error:
            print(f"antirelou: {config}: campaign {p.campaign_id!r}: {p.text}", file=sys.stderr)
        else:
            print(f"antirelou: WARNING campaign {p.campaign_id}: {p.text}", flush=True)
    return not any(p.error for p in problems)


def key_matches(args: argparse.Namespace, kafka: str, secret: bytes) -> bool:
    """The deployment secret is the one the journal was written with (else said, False)."""
    from infra.broker import ensure_topics
    from infra.keycheck import KEYCHECK_CONFIG, SecretError, check_key, keycheck_topic

    topic = keycheck_topic(args.app_id)
    ensure_topics(kafka, {topic: 1}, config={topic: KEYCHECK_CONFIG})
    try:
        asyncio.run(check_key(kafka, topic, secret))
    except SecretError as exc:
        print(f"antirelou: {exc}", file=sys.stderr)
        return False
    log.info("the deployment secret is the deployment's (key check in %s)", topic)
    return True


def start_shards(args: argparse.Namespace, d: Deployment, kafka: str,
                  names: dict[str, str]) -> Any:
    from actors.remote import CampaignShards
    from infra.journal import KafkaJournal
    from infra.operators import OperatorAuthority

    shards = CampaignShards(d.campaigns, journal=KafkaJournal(kafka),
                            journal_topic=names["journal"],
                            snapshot_topic=names["snapshots"], n_shards=args.shards,
                            namespace=args.app_id, resource=args.shard_resource,
                            spread=args.shard_spread, memory_mb=args.shard_memory_mb,
                            # The shards check operator commands themselves (public keys).
                            authority=OperatorAuthority(d.operators, args.app_id,
                                                        allow_unsigned=args.insecure_dev))
    # Synchronous on purpose: an event loop run here, before Faust's, would be the one
    # Ray's awaitable refs bind to, and the agents' awaits could then hang.
    infos = shards.info_now()
    log.info("campaign shards recovered %d campaign(s) from snapshots and %d journal "
             "events after them", sum(i["from_snapshots"] for i in infos),
             sum(i["recovered"] for i in infos))
    return shards


def settings_for(args: argparse.Namespace, d: Deployment, kafka: str, replication: int,
              broker: Any) -> Any:
    from infra.checkpoints import signing_key
    from infra.sending import RetryPolicy
    from streams.settings import Settings

    return Settings(
        kafka=kafka, campaigns=d.campaigns, secret=d.secret, app_id=args.app_id,
        partitions=args.partitions, web_host=args.web_host, web_port=args.web_port,
        data_dir=d.state_dir / "faust", signing_key=d.signing_key,
        bird_signing_key=d.bird_signing_key, bird_channels=d.providers.bird_channels,
        allow_unsigned=args.insecure_dev, public_url=args.public_url,
        snapshot_interval_s=args.snapshot_interval, operators=d.operators,
        tick_interval_s=args.tick_interval, screen_batch_size=args.screen_batch,
        report_base_url=(args.report_url or args.public_url
                         or f"http://{args.web_host}:{args.web_port}"),
        # The hard cap on calls (probes included) is never below the attempts asked for.
        retry=RetryPolicy(max_attempts=args.send_attempts,
                          max_calls=max(RetryPolicy.max_calls, args.send_attempts)),
        breaker_cooldown_s=args.breaker_cooldown,
        ack_timeout_s=args.ack_timeout,
        webhook_concurrency=args.webhook_concurrency,
        replication_factor=replication,
        http_idle_timeout_s=args.http_idle_timeout,
        http_body_timeout_s=args.http_body_timeout,
        event_skew_ms=int(args.event_skew_minutes * 60_000),
        body_retention_ms=d.body_retention_ms,
        broker_status=broker.status if broker is not None else None,
        checkpoint_key=signing_key(d.secret), origin=log_name(args),
        checkpoint_interval_s=args.checkpoint_minutes * 60,
        checkpoints_file=d.state_dir / "checkpoints.txt",
    )


def body_retention_line(body_retention_ms: int, app_id: str) -> str:
    """What the deployment keeps of texts, said at start."""
    days = body_retention_ms // 86_400_000
    if not days:
        return "texts' bodies are not kept (body_retention_days = 0)"
    return (f"texts' bodies kept {days} day(s) in {app_id}.bodies, then deleted; the journal "
            "keeps what the decisions need of them")


def log_name(args: argparse.Namespace) -> str:
    """The journal logs' origin and the checkpoint key's name: ANTIRELOU_ORIGIN (e.g. the
    deployment's public host), else ``antirelou/<app id>``."""
    return env("ANTIRELOU_ORIGIN") or f"antirelou/{args.app_id}"


def verifier_of(args: argparse.Namespace, secret: bytes) -> str:
    """The verifier key of the deployment's checkpoints (what a donor checks them with)."""
    from infra.checkpoints import signing_key, verifier_key

    return verifier_key(log_name(args), signing_key(secret).public_key().public_bytes_raw())


def announce_campaigns(args: argparse.Namespace, d: Deployment, shards: Any) -> None:
    """The webhook's address and each campaign's live balance and reply cost."""
    from actors.campaign import reply_cost
    from schemas.events import MICROS_PER_EUR
    from streams.app import WEBHOOK_PATH
    from streams.intake.bird import BIRD_WEBHOOK_PATH

    web = f"http://{args.web_host}:{args.web_port}"
    providers = d.providers
    on = {p: ", ".join(sorted(c for c, q in providers.by_campaign.items() if q == p))
          for p in ("bird", "messagebird")}
    if providers.uses_bird:  # Bird first: the provider of new deployments
        print(f"antirelou: Bird webhook at {web}{BIRD_WEBHOOK_PATH} (campaigns {on['bird']})",
              flush=True)
    if providers.uses_messagebird:
        print(f"antirelou: MessageBird classic webhook at {web}{WEBHOOK_PATH} (campaigns "
              f"{on['messagebird']})", flush=True)
    print(f"antirelou: {body_retention_line(d.body_retention_ms, args.app_id)}", flush=True)
    live = shards.status_now()  # after the journal: the live balance and policy
    for c in d.campaigns:
        cost = reply_cost(c)
        st = live.get(c.id)
        now = ("" if st is None else
               f" (policy v{st['policy']['version']}); balance EUR "
               f"{eur(st['balance_micros'])}, spent EUR {eur(st['spent_micros'])}, reserve "
               f"EUR {st['policy']['reserve_eur']}")
        print(f"antirelou: campaign {c.id} ({c.country}, {c.language}): budget "
              f"EUR {eur(c.budget_micros)}, reply {cost.segments} "
              f"{cost.encoding} segment(s) = EUR "
              f"{(st['reply_cost_micros'] if st else cost.cost_micros) / MICROS_PER_EUR:.4f}"
              + now, flush=True)
        warning = ucs2_warning(c.reply_text)
        if warning:
            print(f"antirelou: WARNING campaign {c.id}: {warning}", flush=True)


def announce_access(args: argparse.Namespace, d: Deployment, gateway: Any,
                     admin_token: str | None) -> None:
    """Who may reach what, and every development shortcut in force, said loudly."""
    import datetime as dt

    from infra.gateway import DryRunGateway
    from infra.operators import NO_OPERATORS
    from infra.providers import classic_warning

    web = f"http://{args.web_host}:{args.web_port}"
    if admin_token:
        print(f"antirelou: dashboard at {web}/dashboard, metrics at {web}/metrics "
              "(admin token: ANTIRELOU_ADMIN_TOKEN)", flush=True)
    elif args.insecure_dev:
        print(f"antirelou: *** INSECURE DEV MODE: {web}/dashboard, /metrics, /campaigns "
              "and /health are OPEN to anyone who reaches this port (set "
              "ANTIRELOU_ADMIN_TOKEN) ***", flush=True)
    else:
        print("antirelou: WARNING /dashboard, /metrics and /campaigns are refused: set "
              "ANTIRELOU_ADMIN_TOKEN", flush=True)
    providers = d.providers
    classic = classic_warning(providers, dt.datetime.now(dt.UTC).date())
    if classic:
        print(f"antirelou: WARNING {classic}", flush=True)
    dry = sorted(c.id for c in d.campaigns if gateway is not None
                 and isinstance(gateway.for_campaign(c.id), DryRunGateway))
    if gateway is None:
        print("antirelou: --role decide: no reply is sent from here (the send role sends "
              "them)", flush=True)
    if dry:
        keys = {"messagebird": "MESSAGEBIRD_ACCESS_KEY", "bird": "BIRD_ACCESS_KEY"}
        missing = sorted({keys[providers.by_campaign[cid]] for cid in dry})
        print(f"antirelou: *** DRY RUN for {', '.join(dry)}: {' / '.join(missing)} not "
              "set; replies are journaled but NO SMS IS SENT ***", flush=True)
    if d.signing_key is None and providers.uses_messagebird \
            and getattr(args, "role", "all") != "send":
        print("antirelou: *** INSECURE DEV MODE: webhooks are accepted unsigned ***",
              flush=True)
    if d.bird_signing_key is None and providers.uses_bird:
        print("antirelou: *** INSECURE DEV MODE: Bird webhook events are accepted unsigned "
              "(set BIRD_SIGNING_KEY) ***", flush=True)
    print(f"antirelou: journal checkpoints signed by {verifier_of(args, d.secret)} (check an "
          "export with: antirelou verify FILE --key KEY)", flush=True)
    if d.operators:
        print(f"antirelou: operators: {', '.join(sorted(d.operators))} (signed commands only)",
              flush=True)
    elif args.insecure_dev:
        print("antirelou: *** INSECURE DEV MODE: no [[operator]]: operator commands are "
              "accepted UNSIGNED, from anyone who reaches the broker ***", flush=True)
    else:
        print(f"antirelou: WARNING operator commands will be refused: {NO_OPERATORS}",
              flush=True)
