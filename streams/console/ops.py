"""What the people who run a deployment see: ``/dashboard``, ``/metrics``, the admin token,
and a one-line summary per campaign in the worker log every minute.

``register_ops(app, settings, ...)`` adds to a Faust app (after ``create_app``):

- a task following the journal from its beginning (and the webhook's records in
  ``sms-received`` from their end, for their timestamps only) into a
  ``streams.console.metrics.Projection``; every worker holds the whole deployment's figures, so any
  worker's dashboard shows every campaign (in Prometheus, aggregate them with ``max``, not
  ``sum``); the consumer lag is this worker's own, per stage;
- ``/metrics`` (Prometheus text format), ``/dashboard`` (a page and its script, in the
  package: no CDN), ``/dashboard/data`` (what the page polls every second), ``/login``;
- ``/public`` (open to anyone: the transparency page, ``streams.console.public``) and
  ``/dashboard/why`` (one sender's story), ``streams.console.accountable``;
- an aiohttp middleware that protects ``/dashboard``, ``/campaigns``, ``/metrics``, Faust's
  own pages (``/router``, ``/table``, ``/stats``...) and the details of ``/health`` with
  ``ANTIRELOU_ADMIN_TOKEN`` (only the webhooks and ``/login`` are open): ``Authorization: Bearer TOKEN``,
  or the login form, which sets an HttpOnly cookie that expires (``COOKIE_MAX_AGE_S``,
  12 h: it carries its expiry, signed with a key derived from the token), ``Secure`` when
  the request came over TLS or the deployment's public URL is https (a TLS proxy in
  front). ``/login`` takes ``LOGIN_FAILURES`` wrong tokens per client a minute, then
  answers 429 with ``Retry-After``. With no token, an ``--insecure-dev``
  deployment leaves them open (and says so at start); any other refuses them (403).
- security headers on every answer (``SECURITY_HEADERS``: no sniffing, no framing, no
  referrer, a content security policy; ``Cache-Control: no-store`` on all but the
  webhooks; HSTS behind https).

Read-only: policy changes stay signed operator commands (``antirelou policy set``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from infra.kafka_auth import client_options
from schemas import codec
from schemas.codec import CodecError
from streams.console.accountable import register_public, register_why
from streams.console.guard import (  # noqa: F401  (the guard's names, as ops gave them)
    COOKIE,
    COOKIE_MAX_AGE_S,
    LOGIN_FAILURES,
    LOGIN_WINDOW_S,
    PUBLIC,
    PUBLIC_PREFIXES,
    Guard,
    asset,
    login_page,
    register_guard,
)
from streams.console.metrics import PROJECTED_TYPES, TEXT_BUCKETS, Projection
from streams.console.public import PublicFigures

log = logging.getLogger("antirelou")

# The stages and the work topic each consumes (topic_names roles).
STAGES = {"screening": "inbound", "decisions": "requests", "sending": "outbound",
          "control": "control"}


def lag_family(lags: dict[str, int]) -> GaugeMetricFamily:
    lag = GaugeMetricFamily("antirelou_consumer_lag", "Records waiting in this worker's "
                            "partitions, per stage", labels=["stage"])
    for stage, n in sorted(lags.items()):
        lag.add_metric([stage], n)
    return lag


class FaultCollector:
    """The worker's faults (streams/stages/failures.py, actors/remote.py): failed batches
    and poison records per stage, shards away, degraded or not."""

    def __init__(self, figures: Callable[[], dict[str, Any]]) -> None:
        self.figures = figures

    def collect(self):
        figures = self.figures()
        failures = CounterMetricFamily("antirelou_stage_failures", "Batches of a stage that "
                                       "failed and were fetched again", labels=["stage"])
        poisoned = CounterMetricFamily("antirelou_records_poisoned", "Records a stage "
                                       "passed over as poison (RecordPoisoned)",
                                       labels=["stage"])
        for stage, health in sorted(figures["stages"].items()):
            failures.add_metric([stage], health.failures)
            poisoned.add_metric([stage], health.poisoned)
        away = GaugeMetricFamily("antirelou_shard_away_seconds", "How long a campaign shard "
                                 "has been away or not answering this worker's calls",
                                 labels=["shard"])
        for shard, seconds in sorted(figures["shards_away"].items()):
            away.add_metric([shard], seconds)
        degraded = GaugeMetricFamily("antirelou_degraded", "1 while /health says degraded "
                                     "(a stage failing, a shard away)")
        degraded.add_metric([], 1 if figures["degraded"] else 0)
        yield from (failures, poisoned, away, degraded)


class LagCollector:
    """A worker that does not follow the journal (--no-dashboard): its consumer lag only."""

    def __init__(self, lag: Callable[[], dict[str, int]]) -> None:
        self.lag = lag

    def collect(self):
        yield lag_family(self.lag())


class ProjectionCollector:
    """The projection as Prometheus metric families, computed at scrape time."""

    def __init__(self, projection: Projection, clock: Callable[[], float],
                 lag: Callable[[], dict[str, int]]) -> None:
        self.projection, self.clock, self.lag = projection, clock, lag

    def collect(self):  # noqa: C901 - one family after the other
        p = self.projection
        now = int(self.clock() * 1000)
        texts = CounterMetricFamily("antirelou_texts", "Texts screened, by verdict and reason",
                                    labels=["campaign", "verdict", "reason"])
        replies = CounterMetricFamily("antirelou_replies", "Replies by outcome of the send",
                                      labels=["campaign", "outcome"])
        decisions = CounterMetricFamily(
            "antirelou_decisions", "Campaign decisions on reply requests, by reason",
            labels=["campaign", "decision", "reason"])
        spend = CounterMetricFamily("antirelou_spend_eur", "EUR spent on replies (estimates, "
                                    "plus reported prices above them)", labels=["campaign"])
        refunded = CounterMetricFamily("antirelou_refunded_eur", "EUR given back: refunds, "
                                       "reported prices below the estimate", labels=["campaign"])
        deferred = CounterMetricFamily("antirelou_deferred", "Replies deferred in a surge",
                                       labels=["campaign"])
        released = CounterMetricFamily("antirelou_released", "Deferred replies released",
                                       labels=["campaign"])
        expired = CounterMetricFamily("antirelou_expired", "Deferred replies expired",
                                      labels=["campaign", "reason"])
        overruns = CounterMetricFamily(
            "antirelou_price_overruns", "Delivery reports priced above what the balance "
            "was charged (over 3x the estimate, or below the reserve)", labels=["campaign"])
        overrun_eur = CounterMetricFamily(
            "antirelou_price_overrun_eur", "EUR those reports priced and the balance did "
            "not pay (the allowance absorbed it)", labels=["campaign"])
        balance = GaugeMetricFamily("antirelou_balance_eur", "Campaign balance",
                                    labels=["campaign"])
        reserve = GaugeMetricFamily("antirelou_reserve_eur", "Reserve never spent",
                                    labels=["campaign"])
        allowance = GaugeMetricFamily("antirelou_allowance_left_eur", "What today's pacing "
                                      "still allows (absent with pacing off)",
                                      labels=["campaign"])
        queue = GaugeMetricFamily("antirelou_queue_length", "Deferred replies waiting",
                                  labels=["campaign"])
        surge = GaugeMetricFamily("antirelou_surge", "1 during a surge", labels=["campaign"])
        version = GaugeMetricFamily("antirelou_policy_version", "Policy version in force",
                                    labels=["campaign"])
        for cid, fig in p.figures.items():
            for (verdict, reason), n in fig.texts.items():
                texts.add_metric([cid, verdict, reason], n)
            for outcome, n in fig.replies.items():
                replies.add_metric([cid, outcome], n)
            for (decision, reason), n in fig.decisions.items():
                decisions.add_metric([cid, decision, reason], n)
            spend.add_metric([cid], fig.spend_micros / 1e6)
            refunded.add_metric([cid], fig.refunded_micros / 1e6)
            deferred.add_metric([cid], fig.deferred)
            released.add_metric([cid], fig.released)
            for reason, n in fig.expired.items():
                expired.add_metric([cid, reason], n)
            overruns.add_metric([cid], fig.overruns)
            overrun_eur.add_metric([cid], fig.overrun_micros / 1e6)
            balance.add_metric([cid], fig.state.balance_micros / 1e6)
            reserve.add_metric([cid], fig.state.policy.reserve_micros / 1e6)
            left = p.allowance_left(cid, now)
            if left is not None:
                allowance.add_metric([cid], left / 1e6)
            queue.add_metric([cid], len(fig.state.queue))
            surge.add_metric([cid], 1 if fig.state.cohorts.active else 0)
            version.add_metric([cid], fig.state.policy.version)
        lag = lag_family(self.lag())
        events = CounterMetricFamily("antirelou_journal_events", "Journal events read by "
                                     "this worker's projection")
        events.add_metric([], p.events)
        yield from (texts, replies, decisions, spend, refunded, deferred, released, expired,
                    overruns, overrun_eur, balance, reserve, allowance, queue, surge, version, lag, events)


def register_ops(app: Any, settings: Any, admin_token: str | None, insecure_dev: bool,
                 clock: Callable[[], float] = time.time, follow_journal: bool = True
                 ) -> Projection:
    """Add the dashboard, /metrics, the admin guard and the minute summary to ``app``.

    ``follow_journal`` False (``worker --no-dashboard``): no journal follower, so no
    dashboard and no minute summary; /metrics holds this worker's consumer lag only. Each
    follower reads the whole journal (about a tenth of a worker's CPU in a flood, measured
    2026-12-02): in a deployment of several workers, one follows and the others need not."""
    from streams.settings import topic_names

    names = topic_names(settings.app_id)
    projection = Projection(settings.campaigns)
    guard = register_guard(app, admin_token, insecure_dev, settings.public_url)
    lags: dict[str, int] = {}
    app.antirelou_projection = projection  # for tests and the CLI banner
    registry = CollectorRegistry()
    faults = getattr(app, "antirelou_faults", None)
    if faults is not None:
        registry.register(FaultCollector(faults))
    if not follow_journal:
        registry.register(LagCollector(lambda: lags))
        _register_lag(app, names, lags)
        _register_no_dashboard(app, registry)
        return projection
    to_verdict = Histogram("antirelou_webhook_to_verdict_seconds",
                           "From the webhook's record to the screening verdict in the journal",
                           ["campaign"], buckets=TEXT_BUCKETS, registry=registry)
    to_sent = Histogram("antirelou_webhook_to_reply_sent_seconds",
                        "From the webhook's record to the ReplySent in the journal",
                        ["campaign"], buckets=TEXT_BUCKETS, registry=registry)
    registry.register(ProjectionCollector(projection, clock, lambda: lags))
    ready = asyncio.Event()
    public = PublicFigures(settings.campaigns)
    _register_follower(app, settings.kafka, names, (projection, public), ready,
                       {"verdict": to_verdict, "sent": to_sent}, lags, clock)
    _register_pages(app, guard, registry, projection, ready, lags, clock)
    register_public(app, settings, public, names, clock)
    register_why(app, settings, names)
    return projection


NO_DASHBOARD = ("this worker was started with --no-dashboard: it does not follow the "
                "journal; ask a worker that does")


def _register_metrics(app: Any, registry: CollectorRegistry) -> None:
    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return web.Response(body=generate_latest(registry),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})


def _register_no_dashboard(app: Any, registry: CollectorRegistry) -> None:
    """/metrics with the consumer lag only; the dashboard's pages say where it is not."""
    _register_metrics(app, registry)
    for path in ("/dashboard", "/dashboard/data", "/dashboard/dashboard.js"):
        @app.page(path)
        class NoDashboard(View):
            async def get(self, request: Request) -> Response:
                return self.bytes(orjson.dumps({"error": "no_dashboard",
                                                "message": NO_DASHBOARD}),
                                  content_type="application/json", status=404)


def _register_lag(app: Any, names: dict[str, str], lags: dict[str, int]) -> None:
    @app.timer(interval=5.0)
    async def measure_lag() -> None:
        lags.clear()
        lags.update(consumer_lag(app, names))


def _register_follower(app: Any, kafka: str, names: dict[str, str],
                       fed: tuple[Projection, PublicFigures], ready: asyncio.Event,
                       histograms: dict[str, Histogram], lags: dict[str, int],
                       clock: Callable[[], float]) -> None:
    """The journal follower feeding the projections (the dashboard's, the public page's),
    the lag gauge, the minute summary."""
    projection = fed[0]

    @app.task
    async def follow_journal() -> None:
        while True:
            try:
                await _follow(kafka, names, fed, ready, histograms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker away: try again
                log.warning("dashboard: journal follower stopped (%s: %s); again in 2 s",
                            type(exc).__name__, exc)
                await asyncio.sleep(2)

    _register_lag(app, names, lags)

    last_summary = {"minute": int(clock() // 60)}

    @app.timer(interval=10.0)
    async def log_minute_summary() -> None:
        minute = int(clock() // 60) - 1  # the last full minute
        if minute <= last_summary["minute"] - 1 or not app.is_leader():
            return
        for m in range(last_summary["minute"], minute + 1):
            for cid, line in projection.minute_summary(m).items():
                log.info("campaign %s, minute %s UTC: %s", cid,
                         time.strftime("%H:%M", time.gmtime(m * 60)), line)
        last_summary["minute"] = minute + 1


def _register_pages(app: Any, guard: Guard, registry: CollectorRegistry, projection: Projection,
                    ready: asyncio.Event, lags: dict[str, int],
                    clock: Callable[[], float]) -> None:
    """/metrics, the dashboard and its data, the login form (behind the admin guard)."""

    _register_metrics(app, registry)

    @app.page("/dashboard")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            page = asset("dashboard.html").decode().replace(
                "{banner}", "" if not guard.open else
                '<p class="insecure">INSECURE DEV MODE: this page is open to anyone who '
                "reaches the worker (set ANTIRELOU_ADMIN_TOKEN)</p>")
            return self.html(page)

    @app.page("/dashboard/dashboard.js")
    class DashboardScript(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(asset("dashboard.js"), content_type="application/javascript")

    @app.page("/dashboard/data")
    class DashboardData(View):
        async def get(self, request: Request) -> Response:
            data = projection.snapshot(int(clock() * 1000))
            data["ready"] = ready.is_set()
            data["lag"] = dict(lags)
            return self.bytes(orjson.dumps(data), content_type="application/json")

    @app.page("/login")
    class Login(View):
        async def post(self, request: Request) -> Response:
            return await guard.login(request)


FOLLOW_MAX_RECORDS = 1_000  # per read of the journal follower
FOLLOW_PAUSE_S = 0.2  # between its reads once caught up


async def _follow(kafka: str, names: dict[str, str], fed: tuple[Projection, PublicFigures],
                  ready: asyncio.Event, histograms: dict[str, Histogram]) -> None:
    projection, public = fed
    public.reset()  # read from the beginning again (the dashboard's projection dedups)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, **client_options(),
                                enable_auto_commit=False, max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    try:
        journal_tps: list[TopicPartition] = []
        inbound_tps: list[TopicPartition] = []
        while not journal_tps:
            await consumer.topics()
            journal_tps = [TopicPartition(names["journal"], p)
                           for p in sorted(consumer.partitions_for_topic(names["journal"]) or ())]
            inbound_tps = [TopicPartition(names["inbound"], p)
                           for p in sorted(consumer.partitions_for_topic(names["inbound"]) or ())]
            if not journal_tps:
                await asyncio.sleep(1)
        consumer.assign(journal_tps + inbound_tps)
        await consumer.seek_to_beginning(*journal_tps)
        if inbound_tps:
            await consumer.seek_to_end(*inbound_tps)
        ends = await consumer.end_offsets(journal_tps)
        behind = {tp for tp in journal_tps if ends[tp] > 0}
        if not behind:
            ready.set()
        inbound = names["inbound"]
        decode, loads = codec.decode, orjson.loads
        while True:
            # Small batches: catching up on a long journal shares the loop with the agents.
            batches = await consumer.getmany(timeout_ms=500, max_records=FOLLOW_MAX_RECORDS)
            for tp, records in batches.items():
                if tp.topic == inbound:
                    for r in records:
                        try:
                            projection.webhook_seen(loads(r.value)["message_id"], r.timestamp)
                        except (orjson.JSONDecodeError, KeyError, TypeError):
                            continue
                    continue
                for r in records:
                    if not projected(r.value):
                        projection.count(r.timestamp)
                        continue
                    try:
                        event = decode(r.value)
                    except CodecError:
                        continue  # the audit reports it; the dashboard shows the rest
                    projection.apply(event, r.timestamp)
                    public.apply(event)
                if behind and records and records[-1].offset + 1 >= ends[tp]:
                    behind.discard(tp)
                    if not behind:
                        ready.set()
            for kind, campaign, seconds in projection.take_latencies():
                if campaign:
                    histograms[kind].labels(campaign).observe(seconds)
            # Caught up: read again in a while, not at once. The records wait in the
            # consumer, which fetches no more of a partition until they are taken, so a
            # flood is read in a few large fetches rather than many small ones (profiled:
            # the follower's fetches were 5% of a busy worker). Every figure uses the
            # records' own timestamps; the page polls once a second.
            caught_up = sum(len(records) for records in batches.values()) < FOLLOW_MAX_RECORDS
            await asyncio.sleep(FOLLOW_PAUSE_S if caught_up and not behind else 0)
    finally:
        await consumer.stop()


TYPE_PREFIX = b'{"type":"'  # how the codec's records begin (orjson keeps the dict's order)
_PROJECTED = frozenset(t.encode() for t in PROJECTED_TYPES)


def projected(value: bytes) -> bool:
    """Whether a journal record is of a type the projection looks into (else it is only
    counted: a third of the journal is TextReceived), read from its first bytes; a record
    that does not begin as the codec writes is decoded (and skipped if bad)."""
    if not value.startswith(TYPE_PREFIX):
        return True
    end = value.find(b'"', 9)
    return end < 0 or value[9:end] in _PROJECTED


def consumer_lag(app: Any, names: dict[str, str]) -> dict[str, int]:
    """Records waiting per stage in the partitions this worker consumes: the highwater the
    last fetch saw, minus the offset after the last record handed to the agents."""
    try:
        consumer = app.consumer
        read = app.monitor.tp_read_offsets
        assigned = consumer.assignment()
    except Exception:  # noqa: BLE001 - not started yet
        return {}
    stage_of = {names[role]: stage for stage, role in STAGES.items()}
    out: dict[str, int] = {stage: 0 for stage in STAGES}
    for tp in assigned:
        stage = stage_of.get(tp.topic)
        if stage is None:
            continue
        try:
            high = consumer.highwater(tp)
        except Exception:  # noqa: BLE001
            continue
        last = read.get(tp)
        if high is None or last is None:
            continue
        out[stage] += max(0, high - last - 1)
    return out
