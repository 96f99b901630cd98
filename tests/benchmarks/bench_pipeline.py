"""Benchmarks of the running system on this machine, printed as one table.

    bash tests/benchmarks/run.sh                 # quick run, about 4 minutes
    bash tests/benchmarks/run.sh --full          # the full run, about 20 minutes here
    bash tests/benchmarks/run.sh --only pipeline,audit --texts 50000 --profile
    bash tests/benchmarks/run.sh --only raw,pipeline,sends --baseline-root ../main  # before/after

Starts its own noida-db broker, a local Ray session, a local MessageBird-compatible server
(``antirelou fake-messagebird``, its own process) and real ``antirelou worker`` processes,
and measures each row beside its reference, in the same run:

  pipeline   texts/s from the inbound topic to the journal holding every decision (screening,
             campaign decision in the Ray shard, reply sent to the local MessageBird), for a
             flood mix pre-produced into ``sms-received`` as the webhook encodes it; beside a
             raw aiokafka consume-and-produce loop over the same texts, same broker, same
             partitions.
  webhook    signed webhooks/s accepted (HTTP 200 = broker ack, acks=all) with concurrent
             clients; beside a bare aiohttp server that produces each body with acks=all.
  latency    at 1,000 texts/s offered through the webhook: from the client's 200 to the
             journal's SenderScreened and ReplySent records (their Kafka timestamps).
  audit      tests/benchmarks/bench_audit.py: audit replay beside plain decoding.
  verify     tests/benchmarks/bench_verify.py: `antirelou verify` of an export against its
             signed checkpoints, beside plain decoding (--audit-events events).
  stage      the reply stage in a real worker: SendReply commands pre-produced into
             sms-outbound, until every reply is journaled as attempted and sent.
  sends      the reply stage alone: the MessageBird gateway from 8 and 32 threads (a worker
             sends from 32) to the same local MessageBird server, beside that server alone
             (a cheap aiohttp client): the ceiling of the replies/s.
  growth     one text from each of N distinct senders (a "test" text: screened and suppressed,
             so the per-sender table is what grows): texts/s and the worker's RSS.
  restart    (--only restart) a worker restarted on a table of N senders (--senders): seconds
             until 64 new texts are screened, beside an empty table's, and a bare consumer
             reading that changelog: the tables' recovery in records/s.

Numbers are printed, never asserted. The machine is shared: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIGNING_KEY = "bench-signing-key-0123456789abcdef0123456789"
SECRET = "bench-secret-3e9a1c7f5b2d8e4a6c0f9b1d7e3a5c2f"
ACCESS_KEY = "bench_access_key"
NUMBER = "33644630001"
CONFIG = """
[[campaign]]
id = "paris"
number = "+33644630001"
reply_text = "{reply}"
language = "fr"
budget_eur = "100000000.00"
price_per_segment_eur = "0.08"
start = 2017-01-01
end = 2099-12-31
pacing = false
originator = "AntiRelou"
policy = {{ reply_delay_minutes = "0" }}  # decided as they come: the replies go out in the run
"""
NO_SURGE_POLICY = ('policy = { reply_delay_minutes = "0" }',
                   'policy = { reply_delay_minutes = "0", surge_multiple = "off" }')


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- texts


def flood_texts(n: int, seed: int) -> list:
    """About ``n`` texts of the 2017 story with eight times the persistent trolls: most texts
    are repeats of flooders, some are first texts that get a reply."""
    from streams.simulate import Scenario, generate

    scale = max(n / 48_000 * 1.05, 0.01)
    texts = generate(Scenario(seed=seed, scale=scale, persistent_trolls=40))
    return texts[:n]


def distinct_sender_texts(n: int, seed: int) -> list:
    """One "test" text from each of ``n`` distinct French mobile numbers."""
    from streams.simulate import SimText

    t0 = 1_700_000_000_000
    base = seed * 10_000_000
    return [SimText(t0 + i, f"336{(base + i) % 10**8:08d}", "test", f"g{seed}-{i:09d}", "tester")
            for i in range(n)]


@dataclass
class Encoded:
    keys: list[bytes]
    values: list[bytes]
    commands: list


def encode(texts: list) -> Encoded:
    """ScreenText commands exactly as the webhook makes them (pseudonym, sealed number,
    number facts)."""
    from infra.numbers import classify
    from infra.privacy import Privacy
    from schemas import codec
    from schemas.commands import ScreenText

    privacy = Privacy(SECRET.encode())
    facts: dict[str, tuple] = {}
    out = Encoded([], [], [])
    for t in texts:
        f = facts.get(t.sender)
        if f is None:
            info = classify(t.sender)
            pseudonym = privacy.pseudonym(t.sender)
            f = facts[t.sender] = (pseudonym, privacy.seal(t.sender, campaign_id="paris",
                                                           sender=pseudonym), info)
        pseudonym, sealed, info = f
        command = ScreenText(message_id=t.message_id, campaign_id="paris", sender=pseudonym, body=t.body,
                             occurred_at=t.at_ms, reply_to=sealed, number_kind=info.kind,
                             country=info.country, prefix=info.prefix)
        out.keys.append(pseudonym.encode())
        out.values.append(codec.encode(command))
        out.commands.append(command)
    return out


def expected(commands: list, config: Path) -> dict[str, int]:
    """What the journal must hold once every text is decided, from the pure core."""
    from actors.shard import CampaignShard
    from infra.config import load_campaigns
    from schemas.events import ReplyApproved
    from streams.rules.pipeline import request_for
    from streams.rules.screening import SenderState, decide_screening, evolve_sender

    (campaign,) = load_campaigns(config)
    shard = CampaignShard([campaign])
    policy = shard._states[campaign.id].policy
    senders: dict[str, SenderState] = {}
    events = 0
    requests = []
    for c in commands:
        state = senders.get(c.sender)
        if state is None:
            state = senders[c.sender] = SenderState()
        screened = decide_screening(state, c, policy)
        for e in screened:
            evolve_sender(state, e, policy)
        events += 1 + len(screened)
        if screened[0].verdict == "forward":
            requests.append(request_for(screened[0], c.prefix, c.reply_to))
    decisions = shard.decide(requests)
    approved = sum(isinstance(d, ReplyApproved) for d in decisions)
    # Each approved reply: ReplyAttempted, then ReplySent (the local MessageBird accepts all).
    return {"texts": len(commands), "senders": len(senders), "forwarded": len(requests),
            "approved": approved, "events": events + len(decisions) + 2 * approved}


# --------------------------------------------------------------------------- Kafka helpers


async def produce(kafka: str, topic: str, keys: list, values: list,
                  partitions: int | None = None) -> float:
    """Produce all records (acks=all); returns records/s. With ``partitions``, record i goes
    to partition i mod ``partitions`` (as the worker writes its changelogs: the partition
    given, not the key's hash)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        t = time.perf_counter()
        futures = []
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            futures.append(await producer.send(
                topic, v, key=k, partition=None if partitions is None else i % partitions))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
        return len(values) / (time.perf_counter() - t)
    finally:
        await producer.stop()


class TopicCounter:
    """Sum of a topic's end offsets, polled."""

    def __init__(self, kafka: str, topic: str) -> None:
        self.kafka, self.topic = kafka, topic

    async def __aenter__(self) -> TopicCounter:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka, group_id=None,
                                         enable_auto_commit=False)
        await self.consumer.start()
        await self.consumer.topics()
        parts = self.consumer.partitions_for_topic(self.topic) or set()
        self.tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def count(self) -> int:
        return sum((await self.consumer.end_offsets(self.tps)).values())

    async def offsets(self) -> dict[int, int]:
        return {tp.partition: o for tp, o in (await self.consumer.end_offsets(self.tps)).items()}

    async def wait(self, target: int, baseline: int, quiet_s: float, timeout_s: float,
                   on_start=None, until_quiet: bool = False, settle_s: float = 0.0
                   ) -> tuple[float, float, int]:
        """Poll until the count reaches ``target`` (or, once it grew or with ``until_quiet``,
        stops growing for ``quiet_s``); with ``settle_s``, from ``target`` on until it stops
        growing for that long (the live mix can journal more than the core's count: deferred
        replies expire on the worker's clock). Returns (first growth time, done time, count),
        perf_counter seconds."""
        t_first = None
        last, last_change = baseline, time.perf_counter()
        deadline = time.perf_counter() + timeout_s
        while True:
            n = await self.count()
            now = time.perf_counter()
            if n != last:
                if t_first is None:
                    t_first = now
                    if on_start:
                        on_start()
                last, last_change = n, now
            if n >= target and (not settle_s or now - last_change > settle_s):
                return t_first or now, last_change if settle_s else now, n
            if ((t_first is not None or until_quiet) and now - last_change > quiet_s) \
                    or now > deadline:
                return t_first or now, last_change, n
            await asyncio.sleep(0.05)


async def records_by_topic(kafka: str, prefix: str) -> dict[str, int]:
    """Sum of the end offsets of every topic whose name starts with ``prefix`` (the app's
    topics and Faust's changelogs, ``<app id>-<table>-changelog``), and of the broker's
    ``__consumer_offsets`` if it lists it: what was written, counted by the broker."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        names = [t for t in await consumer.topics()
                 if t.startswith(prefix) or t == "__consumer_offsets"]
        out = {}
        for name in names:
            tps = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
            out[name] = sum((await consumer.end_offsets(tps)).values()) if tps else 0
        return out
    finally:
        await consumer.stop()


def records_note(before: dict[str, int], after: dict[str, int], texts: int,
                 app_id: str) -> tuple[float, str]:
    """Records written per text during a run, in all and per topic (pre-produced texts are
    in ``before``: the webhook's one record per text is not counted)."""
    per = {name.removeprefix(app_id).lstrip(".-"): (after[name] - before.get(name, 0)) / texts
           for name in after}
    per = {k: v for k, v in per.items() if v > 0}
    total = sum(per.values())
    return total, ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))


async def read_timestamps(kafka: str, topic: str, start: dict[int, int],
                          types: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """{event type: {message_id: Kafka record timestamp, s}} for the journal after ``start``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from schemas import codec

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: dict[str, dict[str, float]] = {t: {} for t in types}
    try:
        tps = [TopicPartition(topic, p) for p in start]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > start[tp.partition]}
        while remaining:
            for tp, records in (await consumer.getmany(*tps, timeout_ms=500)).items():
                for r in records:
                    event = codec.decode(r.value)
                    if event.TYPE in out:
                        out[event.TYPE].setdefault(event.message_id, r.timestamp / 1000)
                    if r.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


# --------------------------------------------------------------------------- processes


def code_env(root: Path) -> dict[str, str]:
    """The environment for a child running ``root``'s code (this checkout, or another one
    given as --baseline-root: its packages come first on the path)."""
    env = dict(os.environ)
    if root != ROOT:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


@dataclass
class Worker:
    url: str
    app_id: str
    process: subprocess.Popen
    log_path: Path
    names: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def wait_healthy(worker: Worker, what: str, timeout_s: float, poll_s: float) -> Worker:
    """Until the process answers /health 200; its log's end in the error if it exits or
    does not come up."""
    import requests

    deadline = time.monotonic() + timeout_s
    while True:
        if worker.process.poll() is not None:
            raise RuntimeError(f"{what} exited {worker.process.returncode}:\n"
                               f"{worker.log_path.read_text()[-3000:]}")
        try:
            if requests.get(worker.url + "/health", timeout=2).status_code == 200:
                return worker
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up:\n{worker.log_path.read_text()[-3000:]}")
        time.sleep(poll_s)


class Bench:
    """The broker, the Ray session, the local MessageBird and the workers of one run."""

    def __init__(self, tmp: Path, partitions: int, baseline_root: Path | None = None) -> None:
        self.tmp, self.partitions = tmp, partitions
        self.baseline_root = baseline_root
        self.workers: list[Worker] = []
        self.children: list[subprocess.Popen] = []

    def start_messagebird(self, root: Path) -> str:
        """The local MessageBird of ``root``'s code, in its own process; its endpoint."""
        port = free_port()
        self.children.append(subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "fake-messagebird", "--port", str(port),
             "--access-key", ACCESS_KEY], cwd=root, env=code_env(root),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until it listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        return f"http://127.0.0.1:{port}/"

    def __enter__(self) -> Bench:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        import ray

        from infra.broker import EmbeddedBroker
        from streams.simulate import REPLY_2017

        self.broker = EmbeddedBroker(self.tmp / "kafka").start()
        self.kafka = self.broker.bootstrap_servers
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        self.ray_address = ray.get_runtime_context().gcs_address
        self.config = self.tmp / "campaigns.toml"
        config = CONFIG.format(reply=REPLY_2017)
        self.config.write_text(config.replace(*NO_SURGE_POLICY) if NO_SURGE else config)
        self.mb_endpoint = self.start_messagebird(ROOT)
        self.baseline_mb_endpoint = (self.start_messagebird(self.baseline_root)
                                     if self.baseline_root else None)
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        for w in self.workers:
            w.stop()
        for p in self.children:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
        ray.shutdown()
        self.broker.stop()

    def new_app(self, label: str) -> tuple[str, dict[str, str]]:
        from infra.broker import ensure_topics
        from streams.app import topic_names
        from streams.cli import topic_configs, topic_layout

        app_id = f"bench-{label}-{uuid.uuid4().hex[:6]}"
        names = topic_names(app_id)
        ensure_topics(self.kafka, topic_layout(names, self.partitions),
                      config=topic_configs(names))
        return app_id, names

    def start_worker(self, app_id: str, names: dict[str, str],
                     env_extra: dict[str, str] | None = None, baseline: bool = False) -> Worker:
        """A worker of this checkout's code, or (``baseline``) of ``--baseline-root``'s, which
        sends to that checkout's local MessageBird."""
        root = self.baseline_root if baseline and self.baseline_root else ROOT
        endpoint = self.baseline_mb_endpoint if root != ROOT else self.mb_endpoint
        port = free_port()
        # A second worker of the same app: a log and a state folder of its own.
        nth = sum(w.app_id == app_id for w in self.workers)
        name = app_id if nth == 0 else f"{app_id}-w{nth + 1}"
        log_path = self.tmp / f"{name}.log"
        env = {**code_env(root), "MESSAGEBIRD_SIGNING_KEY": SIGNING_KEY,
               "ANTIRELOU_SECRET": SECRET, "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY,
               "ANTIRELOU_PUBLIC_URL": f"http://127.0.0.1:{port}",
               "MESSAGEBIRD_ENDPOINT": endpoint, **(env_extra or {})}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--kafka", self.kafka,
             "--ray-address", self.ray_address, "--config", str(self.config), "--app-id", app_id,
             "--web-port", str(port), "--state-dir", str(self.tmp / name),
             "--partitions", str(self.partitions)],
            cwd=root, stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        worker = Worker(f"http://127.0.0.1:{port}", app_id, process, log_path, names)
        self.workers.append(worker)
        return wait_healthy(worker, "worker", timeout_s=120, poll_s=0.3)


# --------------------------------------------------------------------------- measurements


NO_SURGE = False  # --no-surge: the campaign's surge mode off (100 first texts/s are a surge)
PROFILE_GIL = False  # --profile-gil: sample only the thread holding the GIL (CPU, not waits)


def profile_worker(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        log("py-spy not installed (pip install -e '.[bench]'); no profile")
        return None
    return subprocess.Popen([str(spy), "record", "-p", str(pid), "-d", str(int(seconds)),
                             "-r", "50", "-f", "raw", "-o", str(out), "--nonblocking",
                             *(["--gil"] if PROFILE_GIL else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_of_profile(path: Path, n: int = 12) -> str:
    """Self and total sample shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # a stack cut short when py-spy was stopped
            continue
        c = int(count)
        samples += c
        frames = [re.sub(r" \(.*?/(site-packages/)?", " (", f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + c
        for f in set(frames):
            total[f] = total.get(f, 0) + c
    lines = [f"py-spy: {samples} samples of the worker; self time:"]
    for f, c in sorted(own.items(), key=lambda kv: -kv[1])[:n]:
        lines.append(f"  {100 * c / samples:5.1f}%  {f}")
    lines.append("total time (inclusive), our code and the libraries' entry points:")
    keep = [kv for kv in total.items() if re.search(r"\((streams|actors|schemas|infra|faust|"
                                                       r"aiokafka|mode|orjson)", kv[0])]
    for f, c in sorted(keep, key=lambda kv: -kv[1])[:n * 2]:
        lines.append(f"  {100 * c / samples:5.1f}%  {f}")
    return "\n".join(lines)


async def raw_loop(kafka: str, partitions: int, keys: list, values: list) -> float:
    """The reference: one aiokafka consumer reads the texts and produces each one to another
    topic (acks=all), as fast as it can. Returns records/s, first record to last ack."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from infra.broker import ensure_topics_async

    tag = uuid.uuid4().hex[:6]
    src, dst = f"raw-{tag}.in", f"raw-{tag}.out"
    await ensure_topics_async(kafka, {src: partitions, dst: partitions})
    await produce(kafka, src, keys, values)
    consumer = AIOKafkaConsumer(src, bootstrap_servers=kafka, group_id=f"raw-{tag}",
                                auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await consumer.start()
    await producer.start()
    try:
        n, t0, futures = 0, None, []
        while n < len(values):
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                if t0 is None:
                    t0 = time.perf_counter()
                for r in records:
                    futures.append(await producer.send(dst, r.value, key=r.key))
                    n += 1
            if len(futures) > 2000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
        return n / (time.perf_counter() - t0)
    finally:
        await consumer.stop()
        await producer.stop()


def ray_actor_pids() -> list[int]:
    """The processes of this machine's Ray actors (the campaign shards): their title starts
    with ``ray::`` and names the actor class."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::") and b"IDLE" not in cmdline[:20]:
                pids.append(int(entry.name))
    return pids


def threads_cpu(pids: list[int]) -> dict[tuple[int, int], float]:
    """CPU seconds so far of each thread of the processes, by (pid, tid)."""
    out: dict[tuple[int, int], float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                fields = (task / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            out[pid, int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_names(pids: list[int]) -> dict[tuple[int, int], str]:
    """Python's name of each thread (py-spy dump), digits folded: ThreadPoolExecutor-0_*.
    Threads py-spy does not list (Ray's, gRPC's: native) are not in it."""
    spy = Path(sys.executable).parent / "py-spy"
    names: dict[tuple[int, int], str] = {}
    if not spy.exists():
        return names
    for pid in pids:
        try:
            out = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True,
                                 text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for m in re.finditer(r'^Thread (\d+) \(\w+\): "(.*)"$\n\s*(\S+)?', out, re.M):
            frames = out[m.end():].split("\nThread ", 1)[0].strip().splitlines()
            where = frames[-1].strip().split(" ")[0] if frames else ""
            names[pid, int(m.group(1))] = (re.sub(r"\d+", "*", m.group(2))
                                           + (f" [{where}]" if where else ""))
    return names


def threads_ms(before: dict, after: dict, names: dict, texts: int) -> dict[str, float]:
    """CPU ms per text of the threads between two ``threads_cpu``, summed by name (and by
    worker, the first worker's pid being w1, when there are several)."""
    out: dict[str, float] = {}
    pids = sorted({pid for pid, _ in after}, key=list(dict.fromkeys(p for p, _ in after)).index)
    for key, secs in after.items():
        used = secs - before.get(key, 0.0)
        if used > 0:
            name = names.get(key, "native (not Python's)")
            if len(pids) > 1:
                name = f"w{pids.index(key[0]) + 1} {name}"
            out[name] = out.get(name, 0.0) + used * 1000 / texts
    return {k: round(v, 4) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_s(pid)
        except OSError:
            pass
    return total


def synced(worker: Worker, topic: str) -> tuple[int, str]:
    from tests.faust_log import assignment

    return assignment(worker.log_path, topic)


def wait_until_sharing(workers: list[Worker], topic: str, timeout: float = 180.0) -> list[str]:
    """Until every worker is in the same generation, each with partitions of ``topic``."""
    deadline = time.monotonic() + timeout
    while True:
        seen = [synced(w, topic) for w in workers]
        if len({g for g, _ in seen}) == 1 and all(p for _, p in seen):
            return [p for _, p in seen]
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers never shared {topic}: {seen}")
        time.sleep(0.3)


@contextlib.asynccontextmanager
async def topic_reader(kafka: str, topic: str, from_end: bool = False) -> AsyncIterator[tuple]:
    """A consumer assigned every partition of ``topic``, at its start (or its end), and
    those partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        if from_end:
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
        else:
            await consumer.seek_to_beginning(*tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def discard_screened(consumer: Any, waiting: set, deadline: float, what: str) -> None:
    """Read the journal until it holds a SenderScreened of every message id in ``waiting``
    (each one discarded from it), or ``deadline`` (perf_counter) passes."""
    from schemas import codec

    while waiting:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{what}: {len(waiting)} texts not screened in time")
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                event = codec.decode(record.value)
                if type(event).__name__ == "SenderScreened":
                    waiting.discard(event.message_id)


async def journal_facts(kafka: str, topic: str) -> dict[str, int]:
    """Read the whole journal: events by type, and the message ids with more than one
    ReplySent (a reply sent twice) or with no SenderScreened (a text lost)."""
    from schemas import codec

    async with topic_reader(kafka, topic) as (consumer, tps):
        end = await consumer.end_offsets(tps)
        sent: dict[str, int] = {}
        texts, screened = set(), set()
        by_type: dict[str, int] = {}
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    event = codec.decode(record.value)
                    name = type(event).__name__
                    by_type[name] = by_type.get(name, 0) + 1
                    if name == "ReplySent":
                        sent[event.message_id] = sent.get(event.message_id, 0) + 1
                    elif name == "TextReceived":
                        texts.add(event.message_id)
                    elif name == "SenderScreened":
                        screened.add(event.message_id)
    return {**by_type, "sent_twice": sum(n > 1 for n in sent.values()),
            "texts": len(texts), "unscreened": len(texts - screened)}


def run_pipeline(bench: Bench, label: str, texts: list, profile_s: float = 0.0,
                 env_extra: dict[str, str] | None = None, baseline: bool = False,
                 workers: int = 1, live: bool = False,
                 others_env: dict[str, str] | None = None) -> dict:
    """Pre-produce the texts, start a worker, time the journal until every decision is in.
    ``workers`` > 1, or ``live``: start the workers first, wait until they share the
    partitions, then produce the texts (no rebalance within the timed run)."""
    enc = encode(texts)
    want = expected(enc.commands, bench.config)
    app_id, names = bench.new_app(label)
    live = live or workers > 1
    produced = 0.0
    if not live:
        produced = asyncio.run(produce(bench.kafka, names["inbound"], enc.keys, enc.values))
    records_before = asyncio.run(records_by_topic(bench.kafka, app_id))
    log(f"{label}: {want['texts']:,} texts ({want['senders']:,} senders, {want['forwarded']:,} "
        f"forwarded){'' if live else f' produced at {produced:,.0f}/s'}; starting "
        f"{workers} worker(s)")
    started_workers = [bench.start_worker(app_id, names,
                                          {**(env_extra or {}), **((others_env or {}) if i else {})},
                                          baseline=baseline)
                       for i in range(workers)]
    worker = started_workers[0]
    if live:
        shares = wait_until_sharing(started_workers, names["inbound"])
        log(f"{label}: the workers hold partitions {shares} of sms-received; producing")
    # The web server answers before the consumer is assigned partitions: an empty worker.
    result = {**want, "produced_per_s": produced, "rss_ready_mib": rss_mib(worker.pid)[0],
              "workers": workers}
    spy: list = []
    pids = [w.pid for w in started_workers]

    def started() -> None:
        result["rss_start_mib"] = rss_mib(worker.pid)[0]
        result["actor_cpu_start"] = {p: cpu_of([p]) for p in ray_actor_pids()}
        result["cpu_start"] = (cpu_of(pids), cpu_s(bench.broker.pid))
        result["threads_start"] = threads_cpu(pids)
        if profile_s:
            spy.extend(profile_worker(w.pid, profile_s,
                                      bench.tmp / f"{label}{f'.{i}' if i else ''}.pyspy")
                       for i, w in enumerate(started_workers))

    async def wait() -> tuple[float, float, int]:
        async with TopicCounter(bench.kafka, names["journal"]) as journal:
            if live:
                result["produced_per_s"] = await produce(bench.kafka, names["inbound"],
                                                         enc.keys, enc.values)
            return await journal.wait(want["events"], 0, quiet_s=20, timeout_s=3600,
                                      on_start=started, settle_s=2.0)

    t0, t1, n = asyncio.run(wait())
    for w in started_workers:
        if w.process.poll() is not None:
            raise RuntimeError(f"{label}: a worker exited {w.process.returncode}:\n"
                               + w.log_path.read_text()[-3000:])
    result["rss_end_mib"], result["hwm_mib"] = rss_mib(worker.pid)
    w0, b0 = result["cpu_start"]
    records_after = asyncio.run(records_by_topic(bench.kafka, app_id))
    if live:  # the texts produced during the run are not the pipeline's own records
        records_after[names["inbound"]] -= len(enc.values)
    result["records_per_text"], result["records"] = records_note(
        records_before, records_after, want["texts"], app_id)
    result["worker_cpu_ms"] = (cpu_of(pids) - w0) * 1000 / want["texts"]
    result["threads_ms"] = threads_ms(result.pop("threads_start"), threads_cpu(pids),
                                      thread_names(pids), want["texts"])
    result["broker_cpu_ms"] = (cpu_s(bench.broker.pid) - b0) * 1000 / want["texts"]
    alive, actors_at_start = set(ray_actor_pids()), result["actor_cpu_start"]
    if set(actors_at_start) - alive:
        log(f"{label}: WARNING campaign actor processes ended during the run: their CPU is "
            f"not counted")
    result["actor_cpu_ms"] = sum(cpu_of([p]) - c0 for p, c0 in actors_at_start.items()
                                 if p in alive) * 1000 / want["texts"]
    result["journal"] = n
    result["seconds"] = t1 - t0
    result["texts_per_s"] = want["texts"] / (t1 - t0)
    facts = asyncio.run(journal_facts(bench.kafka, names["journal"]))
    result["facts"] = facts
    for other in spy[1:]:
        if other is not None:
            other.wait()
    if spy and spy[0] is not None:
        spy[0].wait()
        path = bench.tmp / f"{label}.pyspy"
        if path.exists():
            result["profile"] = top_of_profile(path)
    if n < want["events"]:
        log(f"{label}: WARNING the journal holds {n:,} events, expected {want['events']:,}")
    if facts["sent_twice"] or facts["unscreened"] or facts["texts"] != want["texts"]:
        log(f"{label}: WARNING {facts['sent_twice']} replies sent twice, "
            f"{facts['unscreened']} texts not screened, {facts['texts']:,} of "
            f"{want['texts']:,} texts journaled")
    log(f"{label}: {result['texts_per_s']:,.0f} texts/s over {result['seconds']:.1f} s; "
        f"worker RSS {result['rss_end_mib']:.0f} MiB; CPU per text: worker(s) "
        f"{result['worker_cpu_ms']:.3f} ms, campaign actors {result['actor_cpu_ms']:.3f} ms, "
        f"broker {result['broker_cpu_ms']:.3f} ms; records written per text "
        f"{result['records_per_text']:.2f} ({result['records']}); journal {facts}; "
        f"the workers' threads, ms per text: {result['threads_ms']}")
    result["worker"] = worker
    result["all_workers"] = started_workers
    result["names"] = names
    return result


def takeover(result: dict, kafka: str, n: int = 64) -> float:
    """Stop the first of the run's workers (SIGINT, as Ctrl-C or ``docker stop`` does) and
    produce ``n`` texts of new senders (over every partition) at once: the seconds from the
    signal until the journal holds every one's SenderScreened, which for the texts of the
    partitions it held is the other worker's takeover (rebalance, the tables' recovery)."""
    enc = encode(distinct_sender_texts(n, seed=77))
    waiting = {c.message_id for c in enc.commands}
    topic = result["names"]["journal"]

    async def run() -> float:
        async with topic_reader(kafka, topic, from_end=True) as (consumer, _):
            t0 = time.perf_counter()
            stopping = asyncio.get_running_loop().run_in_executor(
                None, result["all_workers"][0].stop)
            await produce(kafka, result["names"]["inbound"], enc.keys, enc.values)
            await discard_screened(consumer, waiting, t0 + 300, f"takeover, {n} texts")
            took = time.perf_counter() - t0
            await stopping
            return took

    return asyncio.run(run())


def sender_table_records(n: int, config: Path, seed: int = 91) -> tuple[list, list]:
    """The per-sender table's changelog as ``n`` senders' first texts leave it: each
    pseudonym and his state's bytes (the pure core's screening of one "test" text)."""
    import orjson

    from actors.shard import CampaignShard
    from infra.config import load_campaigns
    from schemas import codec
    from streams.rules.pipeline import screen
    from streams.rules.screening import SenderState
    from streams.stages.screen import compact

    (campaign,) = load_campaigns(config)
    policy = CampaignShard([campaign])._states[campaign.id].policy
    keys, values = [], []
    for command in encode(distinct_sender_texts(n, seed)).commands:
        state = SenderState()
        screen(state, command, policy)
        keys.append(orjson.dumps(command.sender))  # the table's keys go as JSON
        values.append(compact(codec.dump_data(state.to_dict())))
    return keys, values


async def read_all(kafka: str, topic: str) -> tuple[int, float]:
    """A bare aiokafka consumer reading the whole topic: (records, seconds)."""
    async with topic_reader(kafka, topic) as (consumer, tps):
        ends = await consumer.end_offsets(tps)
        t0, count = time.perf_counter(), 0
        while count < sum(ends.values()):  # a new topic: no record deleted yet
            for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                count += len(records)
        return count, time.perf_counter() - t0


def restart(bench: Bench, n: int, profile_s: float = 0.0,
            env_extra: dict[str, str] | None = None) -> dict:
    """A worker restarted on a table of ``n`` senders (its changelog written as the worker
    writes it), then 64 texts of new senders produced at once: the seconds from the start
    of the process until every one is screened (the tables' recovery, the in-memory store
    keeping nothing across a restart), and the worker's CPU by then; beside it the same
    with an empty table, and a bare consumer reading the changelog."""
    out: dict = {"senders": n}
    enc = encode(distinct_sender_texts(64, seed=78))
    for label, count in (("empty", 0), ("full", n)):
        app_id, names = bench.new_app(f"restart-{label}")
        first = bench.start_worker(app_id, names)  # creates the tables' changelog topics
        first.stop()
        changelog = f"{app_id}-senders_by_pseudonym-changelog"
        if count:
            keys, values = sender_table_records(count, bench.config)
            asyncio.run(produce(bench.kafka, changelog, keys, values, bench.partitions))
            out["bare_records"], out["bare_s"] = asyncio.run(read_all(bench.kafka, changelog))
        waiting = {c.message_id for c in enc.commands}
        t0 = time.perf_counter()
        worker = bench.start_worker(app_id, names, env_extra)
        healthy = time.perf_counter() - t0
        spy = (profile_worker(worker.pid, profile_s, bench.tmp / "restart.pyspy")
               if profile_s and count else None)
        asyncio.run(produce(bench.kafka, names["inbound"], enc.keys, enc.values))
        asyncio.run(wait_screened(bench.kafka, names["journal"], waiting, 600))
        if spy is not None:
            spy.wait()
            out["profile"] = (f"restart on {count:,} senders, profile of the worker "
                              f"({profile_s:.0f} s from /health 200):\n"
                              + top_of_profile(bench.tmp / "restart.pyspy"))
        out[label] = {"healthy_s": healthy, "screened_s": time.perf_counter() - t0,
                      "cpu_s": cpu_s(worker.pid)}
        log(f"restart on {count:,} senders: healthy after {healthy:.1f} s, 64 new texts "
            f"screened after {out[label]['screened_s']:.1f} s, worker CPU "
            f"{out[label]['cpu_s']:.1f} s")
        worker.stop()
    return out


async def wait_screened(kafka: str, topic: str, waiting: set, timeout_s: float) -> None:
    """Until the journal (read from its start) holds a SenderScreened of every id."""
    async with topic_reader(kafka, topic) as (consumer, _):
        await discard_screened(consumer, waiting, time.perf_counter() + timeout_s, "restart")


def stop_all(result: dict) -> None:
    for w in result["all_workers"]:
        w.stop()


def journal_note(r: dict) -> str:
    f = r["facts"]
    return (f"{f.get('ReplySent', 0):,} sent, {f['sent_twice']} twice, "
            f"{f['unscreened']} unscreened")


def reply_stage(bench: Bench, label: str, n: int, baseline: bool = False,
                profile_s: float = 0.0) -> dict:
    """The reply stage in a real worker: ``n`` SendReply commands (distinct senders)
    pre-produced into ``sms-outbound``, timed from the first journal event until every
    reply has its ReplyAttempted and ReplySent; replies/s and the worker's CPU per reply."""
    from infra.privacy import Privacy
    from schemas import codec
    from schemas.commands import SendReply

    privacy = Privacy(SECRET.encode())
    keys, values = [], []
    for i in range(n):
        number = f"336{i % 10**8:08d}"
        pseudonym = privacy.pseudonym(number)
        mid = f"stage-{label}-{i}"
        command = SendReply(message_id=mid, campaign_id="paris", sender=pseudonym,
                            occurred_at=1_700_000_000_000 + i,
                            reply_to=privacy.reseal_for_reply(
                                privacy.seal(number, campaign_id="paris", sender=pseudonym),
                                campaign_id="paris", sender=pseudonym, message_id=mid))
        keys.append(b"paris")
        values.append(codec.encode(command))
    app_id, names = bench.new_app(label)
    asyncio.run(produce(bench.kafka, names["outbound"], keys, values))
    worker = bench.start_worker(app_id, names, baseline=baseline)
    cpu: list = []
    spy: list = []

    def started() -> None:
        cpu.append(cpu_s(worker.pid))
        if profile_s:
            spy.append(profile_worker(worker.pid, profile_s, bench.tmp / f"{label}.pyspy"))

    async def wait() -> tuple[float, float, int]:
        async with TopicCounter(bench.kafka, names["journal"]) as journal:
            return await journal.wait(2 * n, 0, quiet_s=20, timeout_s=1800, on_start=started)

    t0, t1, got = asyncio.run(wait())
    result = {"replies_per_s": n / (t1 - t0), "seconds": t1 - t0, "journal": got,
              "worker_cpu_ms": (cpu_s(worker.pid) - cpu[0]) * 1000 / n}
    worker.stop()
    if spy and spy[0] is not None:
        spy[0].wait()
        path = bench.tmp / f"{label}.pyspy"
        if path.exists():
            result["profile"] = f"{label}: " + top_of_profile(path)
    if got < 2 * n:
        log(f"{label}: WARNING the journal holds {got:,} events, expected {2 * n:,}")
    log(f"{label}: {result['replies_per_s']:,.0f} replies/s over {result['seconds']:.1f} s; "
        f"worker CPU per reply {result['worker_cpu_ms']:.2f} ms")
    return result


GATEWAY_SENDS = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
from infra.messagebird_gateway import gateway_from_env
from streams.simulate import REPLY_2017
endpoint, key, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
gateway = gateway_from_env({"MESSAGEBIRD_ACCESS_KEY": key, "MESSAGEBIRD_ENDPOINT": endpoint})
def one(i):
    gateway.send(originator="AntiRelou", recipient=f"336{i % 10**8:08d}", body=REPLY_2017,
                 reference=f"gw-{i}")
t = time.perf_counter()
with ThreadPoolExecutor(threads) as pool:
    list(pool.map(one, range(n)))
print(n / (time.perf_counter() - t))
"""


def gateway_sends(endpoint: str, n: int, threads: int, root: Path = ROOT) -> float:
    """The reply stage alone: ``MessageBirdGateway.send`` (``root``'s code) from ``threads``
    threads, in a process of its own like a worker's, to a local MessageBird; sends/s."""
    out = subprocess.run([sys.executable, "-c", GATEWAY_SENDS, endpoint, ACCESS_KEY, str(n),
                          str(threads)], cwd=root, env=code_env(root), capture_output=True,
                         text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


async def messagebird_alone(endpoint: str, n: int, connections: int) -> float:
    """The local MessageBird alone: ``n`` POST /messages from an aiohttp client (cheap per
    request) over ``connections`` connections; answers/s. The server's own ceiling."""
    import json

    import aiohttp

    from streams.simulate import REPLY_2017

    body = json.dumps({"originator": "AntiRelou", "body": REPLY_2017, "datacoding": "auto",
                       "recipients": "33612345678", "reference": "alone"})
    headers = {"Authorization": f"AccessKey {ACCESS_KEY}", "Content-Type": "application/json"}
    left = iter(range(n))

    async def client(session: aiohttp.ClientSession) -> None:
        for _ in left:
            async with session.post(endpoint + "messages", data=body, headers=headers) as r:
                await r.read()
                assert r.status == 201, r.status

    t = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
        await asyncio.gather(*(client(s) for _ in range(connections)))
    return n / (time.perf_counter() - t)


RAW_WEBHOOK = """
import asyncio, sys
from aiohttp import web
from aiokafka import AIOKafkaProducer
port, kafka, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3]
async def main():
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    async def post(request):
        body = await request.read()
        fut = await producer.send(topic, body)
        await fut
        return web.json_response({"status": "accepted"})
    app = web.Application()
    app.router.add_post("/webhooks/messagebird/sms", post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def post_load(url: str, texts: list, *, seconds: float, concurrency: int,
                    sign: bool) -> dict:
    """``concurrency`` clients posting signed webhooks back to back for ``seconds``."""
    import aiohttp

    from streams.simulate import sign_webhook, webhook_form

    it = iter(texts)
    counts: dict[str, int] = {}
    full = url + "/webhooks/messagebird/sms"
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            text = next(it, None)
            if text is None:
                return
            body = webhook_form(text, NUMBER)
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if sign:
                headers["MessageBird-Signature-JWT"] = sign_webhook(full, body, SIGNING_KEY)
            try:
                async with session.post(full, data=body, headers=headers) as r:
                    await r.read()
                    key = str(r.status)
            except aiohttp.ClientError:
                key = "error"
            counts[key] = counts.get(key, 0) + 1

    t = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(*(client(s) for _ in range(concurrency)))
    elapsed = time.perf_counter() - t
    return {"ok_per_s": counts.get("200", 0) / elapsed, "counts": counts, "seconds": elapsed}


async def offered_load(url: str, texts: list, rate: float) -> tuple[dict[str, float], dict]:
    """Post ``texts`` at ``rate``/s (open loop); returns {message_id: time of the 200}."""
    import aiohttp

    from streams.simulate import sign_webhook, webhook_form

    full = url + "/webhooks/messagebird/sms"
    accepted: dict[str, float] = {}
    counts: dict[str, int] = {}

    async def one(session: aiohttp.ClientSession, text) -> None:
        body = webhook_form(text, NUMBER)
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "MessageBird-Signature-JWT": sign_webhook(full, body, SIGNING_KEY)}
        try:
            async with session.post(full, data=body, headers=headers) as r:
                await r.read()
                key = str(r.status)
                if r.status == 200:
                    accepted[text.message_id] = time.time()
        except aiohttp.ClientError:
            key = "error"
        counts[key] = counts.get(key, 0) + 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        tasks = []
        start = time.perf_counter()
        i = 0
        while i < len(texts):
            due = min(len(texts), int((time.perf_counter() - start) * rate) + 1)
            while i < due:
                tasks.append(asyncio.create_task(one(session, texts[i])))
                i += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
        counts["offered_s"] = time.perf_counter() - start
    return accepted, counts


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def webhook_load(bench: Bench, args: argparse.Namespace, worker: Worker, texts: list,
                 label: str, beside: Worker | None = None) -> dict:
    """Signed webhooks posted at ``worker`` for ``--webhook-seconds``; its CPU per accepted
    webhook (a full worker: the stages screening them run in the same process; a web-only
    one: the webhooks alone), and that of ``beside`` (the full worker of a web-only one's
    deployment) if any; with ``--profile``, a py-spy of ``worker`` meanwhile."""
    path = bench.tmp / f"{label}.pyspy"
    spy = profile_worker(worker.pid, args.webhook_seconds, path) if args.profile else None
    c0 = cpu_s(worker.pid)
    b0 = cpu_s(beside.pid) if beside is not None else 0.0
    got = asyncio.run(post_load(worker.url, texts, seconds=args.webhook_seconds,
                                concurrency=args.clients, sign=True))
    accepted = max(1, got["counts"].get("200", 0))
    got["cpu_ms"] = (cpu_s(worker.pid) - c0) * 1000 / accepted
    if beside is not None:
        got["beside_cpu_ms"] = (cpu_s(beside.pid) - b0) * 1000 / accepted
    if spy is not None:
        spy.wait()
        if path.exists():
            got["profile"] = f"{label}: " + top_of_profile(path)
    return got


async def journal_quiet(bench: Bench, names: dict) -> dict[int, int]:
    """Once a worker's journal has been still for 3 s (all it took in is decided)."""
    async with TopicCounter(bench.kafka, names["journal"]) as journal:
        await journal.wait(10**12, await journal.count(), quiet_s=3, timeout_s=900,
                           until_quiet=True)
        return await journal.offsets()


def warm_worker(bench: Bench, label: str, texts: list, baseline: bool = False) -> Worker:
    app_id, names = bench.new_app(label)
    worker = bench.start_worker(app_id, names, baseline=baseline)
    # Warm up: the first texts wait for the partition assignment.
    asyncio.run(post_load(worker.url, texts, seconds=30, concurrency=4, sign=True))
    return worker


def start_web_only(bench: Bench, app_id: str, names: dict, tag: str,
                   root: Path = ROOT) -> Worker:
    """``antirelou worker --role web`` of ``root``'s code (this checkout, or one with that
    role given as --web-baseline-root) for ``app_id`` (a deployment with or without full
    workers); its own log and state folder (``tag``)."""
    port = free_port()
    log_path = bench.tmp / f"{app_id}-{tag}.log"
    env = {**code_env(root), "MESSAGEBIRD_SIGNING_KEY": SIGNING_KEY, "ANTIRELOU_SECRET": SECRET,
           "ANTIRELOU_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--role", "web", "--kafka",
         bench.kafka, "--config", str(bench.config), "--app-id", app_id, "--web-port",
         str(port), "--state-dir", str(bench.tmp / f"{app_id}-{tag}"), "--partitions",
         str(bench.partitions)],
        cwd=root, stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True)
    worker = Worker(f"http://127.0.0.1:{port}", app_id, process, log_path, names)
    bench.workers.append(worker)
    return wait_healthy(worker, "web-only process", timeout_s=60, poll_s=0.2)


def run_webhook(bench: Bench, args: argparse.Namespace, worker: Worker, texts: list,
                rows: list, notes: list) -> list:
    """The webhook rows, each load right after a bare-server run of its own (the machine's
    load drifts), in the order a, b, ..., ..., b, a (a drift favours none):

    - web-only: ``worker --role web`` of a deployment with no full worker: nothing screens
      what it stores meanwhile, as nothing consumes the bare server's topic (like for like);
    - full worker: the webhooks and every stage in one process (the default role), which
      screens, decides and sends what it accepts meanwhile;
    - with ``--webhook-beside``: a web-only process beside the full worker of its own
      deployment, which screens, decides and sends meanwhile on the same machine;
    - with ``--web-baseline-root``: that checkout's web-only process, as the first;
    - with ``--baseline-root``: that checkout's full worker.

    Returns the texts not posted."""
    port = free_port()
    raw_topic = f"raw-web-{uuid.uuid4().hex[:6]}"
    from infra.broker import ensure_topics

    ensure_topics(bench.kafka, {raw_topic: bench.partitions})
    raw = subprocess.Popen([sys.executable, "-c", RAW_WEBHOOK, str(port), bench.kafka,
                            raw_topic], cwd=ROOT, start_new_session=True)
    bench.children.append(raw)
    time.sleep(2)
    web_app, web_names = bench.new_app("web-only")
    web = start_web_only(bench, web_app, web_names, "web")
    asyncio.run(post_load(web.url, texts[:50], seconds=30, concurrency=4, sign=True))
    texts = texts[50:]
    # (label, process posted to, the full worker beside it, its journal's names, what)
    runs: list[tuple[str, Worker, Worker | None, dict, str]] = [
        ("web-only", web, None, web_names, "web-only process (--role web), no stage beside it"),
        ("full", worker, None, worker.names, "full worker (webhooks + every stage, one process)"),
    ]
    if args.webhook_beside:
        front = start_web_only(bench, worker.app_id, worker.names, "front")
        asyncio.run(post_load(front.url, texts[:50], seconds=30, concurrency=4, sign=True))
        texts = texts[50:]
        runs.append(("web-beside", front, worker, worker.names,
                     "web-only process beside a full worker screening it, same machine"))
    if args.web_baseline_root:
        root = args.web_baseline_root.resolve()
        other_app, other_names = bench.new_app("web-only-base")
        other = start_web_only(bench, other_app, other_names, "web-base", root)
        asyncio.run(post_load(other.url, texts[:50], seconds=30, concurrency=4, sign=True))
        texts = texts[50:]
        runs.insert(1, ("web-only-base", other, None, other_names,
                        f"web-only process of {root}, no stage beside it"))
    if bench.baseline_root:
        base = warm_worker(bench, "web-base", texts[:50], True)
        texts = texts[50:]
        runs.append(("baseline", base, None, base.names,
                     f"full worker of {bench.baseline_root}"))
    order = runs + runs[::-1]
    for i, (label, w, beside, _, what) in enumerate(order):
        for *_, names, _ in runs:  # every backlog screened first: CPU to this one
            asyncio.run(journal_quiet(bench, names))
        r0 = cpu_s(raw.pid)
        ref = asyncio.run(post_load(f"http://127.0.0.1:{port}", texts,
                                    seconds=args.webhook_seconds, concurrency=args.clients,
                                    sign=True))
        ref_cpu_ms = (cpu_s(raw.pid) - r0) * 1000 / max(1, ref["counts"].get("200", 0))
        got = webhook_load(bench, args, w, texts, f"{label}-{i + 1}", beside)
        texts = texts[sum(got["counts"].values()):]
        log(f"webhook {label}: {got['ok_per_s']:,.0f}/s {got['counts']}; bare server just "
            f"before {ref['ok_per_s']:,.0f}/s {ref['counts']}")
        cpu = (f"CPU per accepted webhook: this process {got['cpu_ms']:.2f} ms, the bare "
               f"server {ref_cpu_ms:.2f} ms")
        if beside is not None:
            cpu += f", the full worker beside it {got['beside_cpu_ms']:.2f} ms"
        rows.append((f"webhook ingest, {what}, {args.clients} clients, "
                     f"{args.webhook_seconds:.0f} s",
                     f"{got['ok_per_s']:,.0f} webhooks/s",
                     f"bare aiohttp+aiokafka (acks=all): {ref['ok_per_s']:,.0f}/s",
                     got["ok_per_s"] / ref["ok_per_s"], cpu))
        if "profile" in got:
            notes.append(got["profile"])
    for _, w, *_ in runs:
        if w is not worker:
            w.stop()
    os.killpg(raw.pid, signal.SIGTERM)
    return texts


def run_webhook_and_latency(bench: Bench, args: argparse.Namespace, rows: list,
                            notes: list) -> None:
    texts = flood_texts(int(args.webhook_seconds * 3000 * (2 + 2 * (
        1 + args.webhook_beside + bool(args.web_baseline_root) + bool(bench.baseline_root))))
                        + int(args.latency_seconds * sum(args.rate)) + 5000, seed=11)
    worker = warm_worker(bench, "web", texts[:50])
    names = worker.names
    texts = texts[50:]
    if "webhook" in args.only:
        texts = run_webhook(bench, args, worker, texts, rows, notes)

    if "latency" in args.only:
        for rate in args.rate:
            start = asyncio.run(journal_quiet(bench, names))  # what came before is all decided
            n = int(args.latency_seconds * rate)
            batch, texts = texts[:n], texts[n:]
            accepted, counts = asyncio.run(offered_load(worker.url, batch, rate))
            asyncio.run(journal_quiet(bench, names))
            stamps = asyncio.run(read_timestamps(bench.kafka, names["journal"], start,
                                                 ("SenderScreened", "ReplyApproved",
                                                  "ReplyAttempted", "ReplySent")))
            # Where a reply's time went: to its decision, to the send stage taking it.
            steps = {kind: [max(0.0, stamps[kind][m] - t) * 1000
                            for m, t in accepted.items() if m in stamps[kind]]
                     for kind in ("ReplyApproved", "ReplyAttempted")}
            log(f"latency at {rate:,.0f}/s, by step: " + "; ".join(
                f"to {kind} p50 {percentile(v, 50):,.0f} ms, p99 {percentile(v, 99):,.0f} ms"
                for kind, v in steps.items()))
            screened = [max(0.0, stamps["SenderScreened"][m] - t) * 1000
                        for m, t in accepted.items() if m in stamps["SenderScreened"]]
            sent = [max(0.0, stamps["ReplySent"][m] - t) * 1000
                    for m, t in accepted.items() if m in stamps["ReplySent"]]
            log(f"latency at {rate:,.0f}/s: {len(accepted):,} accepted of {n:,} offered in "
                f"{counts['offered_s']:.1f} s; {len(sent):,} replies")
            rows.append((f"latency at {rate:,.0f}/s offered, {counts['offered_s']:.0f} s, "
                         f"{len(sent):,} replies",
                         f"to reply sent p50 {percentile(sent, 50):,.0f} ms, p99 "
                         f"{percentile(sent, 99):,.0f} ms",
                         f"to screened p50 {percentile(screened, 50):,.0f} ms, p99 "
                         f"{percentile(screened, 99):,.0f} ms", None,
                         f"achieved {n / counts['offered_s']:,.0f}/s offered, "
                         f"{len(accepted):,} accepted"))
    worker.stop()


def run_beside_decoding(args: argparse.Namespace, rows: list, kind: str, label: str) -> None:
    """Row ``kind`` (audit or verify): ``bench_<kind>.py`` of --audit-events events, its
    rate beside plain decoding's in the same run."""
    out = subprocess.run([sys.executable, str(Path(__file__).with_name(f"bench_{kind}.py")),
                          "--events", str(args.audit_events)], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    log(f"{kind}:\n" + out)
    decode = float(re.search(r"\(a\) decode:\s+([\d,]+)", out).group(1).replace(",", ""))
    rate = float(re.search(rf"\(b\) {kind}:\s+([\d,]+)", out).group(1).replace(",", ""))
    events = re.search(r"^events:\s+([\d,]+)", out, re.M).group(1)
    if kind == "audit":
        note = f"peak RSS {re.search(r'([0-9]+) MiB after audit', out).group(1)} MiB"
    else:
        note = f"{re.search(r'[(]b[)] verify:.*[(]([0-9.]+) s[)]', out).group(1)} s"
    rows.append((f"{label}, {events} events", f"{rate:,.0f} events/s",
                 f"plain decode {decode:,.0f} events/s", rate / decode, note))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="the full run: >= 60 s sustained pipeline, 1M audit events, 100k senders")
    parser.add_argument("--only",
                        default="raw,pipeline,stage,sends,webhook,latency,audit,verify,growth",
                        help="comma-separated rows to run (also: workers2, one worker then "
                             "two sharing the partitions, CPU per text of each)")
    parser.add_argument("--texts", type=int, help="pipeline texts (quick 6k, full 30k)")
    parser.add_argument("--replies", type=int,
                        help="row stage: SendReply commands (quick 3k, full 20k)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--clients", type=int, default=32, help="webhook clients")
    parser.add_argument("--webhook-seconds", type=float, help="quick 5, full 30")
    parser.add_argument("--webhook-beside", action="store_true",
                        help="webhook row: also a web-only process beside a full worker of its "
                             "deployment (both on this machine)")
    parser.add_argument("--web-baseline-root", metavar="DIR", type=Path,
                        help="webhook row: also the web-only process (--role web) of this "
                             "checkout's code, beside this one's")
    parser.add_argument("--rate", default="1000,100",
                        help="latency: texts/s offered, one row each (default 1000,100)")
    parser.add_argument("--latency-seconds", type=float, help="per rate: quick 5, full 30")
    parser.add_argument("--audit-events", type=int, help="quick 100k, full 1M")
    parser.add_argument("--senders", help="growth sizes, e.g. 10000,1000000 (quick 10k; full 10k,100k; "
                                          "1M takes ~40 min here)")
    parser.add_argument("--baseline-env", metavar="NAME=VALUE", action="append", default=[],
                        help="also run the pipeline row with this worker environment "
                             "(e.g. ANTIRELOU_FETCH_FLOOR_MS=0), side by side")
    parser.add_argument("--baseline-root", metavar="DIR", type=Path,
                        help="also run the pipeline, stage, sends and webhook rows with the "
                             "code of this checkout (e.g. a worktree of main), its worker and "
                             "its local MessageBird: before/after a change, side by side")
    parser.add_argument("--profile-seconds", type=float, default=20.0,
                        help="how long to profile, from the first journal event")
    parser.add_argument("--keep", help="keep the run's folder (worker logs, profiles) here")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the worker during the pipeline (and webhook) row and print its top")
    parser.add_argument("--no-surge", action="store_true",
                        help="the campaign with surge mode off: at 100 first texts/s offered the "
                             "default policy defers them (a raid), and the latency row then "
                             "measures that wait, not the pipeline")
    parser.add_argument("--profile-gil", action="store_true",
                        help="with --profile: only the thread holding the GIL (Python CPU; "
                             "the default samples every thread that is not idle, waits too)")
    args = parser.parse_args(argv)
    global PROFILE_GIL, NO_SURGE
    PROFILE_GIL, NO_SURGE = args.profile_gil, args.no_surge
    full = args.full
    args.only = set(args.only.split(","))
    args.rate = [float(r) for r in args.rate.split(",")]
    args.texts = args.texts or (30_000 if full else 6_000)
    args.replies = args.replies or (20_000 if full else 3_000)
    args.webhook_seconds = args.webhook_seconds or (30.0 if full else 5.0)
    args.latency_seconds = args.latency_seconds or (30.0 if full else 5.0)
    args.audit_events = args.audit_events or (1_000_000 if full else 100_000)
    sizes = [int(s) for s in (args.senders or ("10000,100000" if full else "10000")).split(",")]

    rows: list = []
    notes: list[str] = []
    started = time.perf_counter()
    if "audit" in args.only:  # first: a child's peak RSS starts at ours (fork keeps maxrss)
        run_beside_decoding(args, rows, "audit", "audit replay")
    if "verify" in args.only:
        run_beside_decoding(args, rows, "verify", "verify an export")
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(args.keep) if args.keep
          else tempfile.TemporaryDirectory(prefix="antirelou-bench-")) as tmp, \
            Bench(Path(tmp), args.partitions,
                  args.baseline_root.resolve() if args.baseline_root else None) as bench:
        if "pipeline" in args.only or "raw" in args.only:
            texts = flood_texts(args.texts, seed=2017)
            raw_rate = None
            if "raw" in args.only:
                enc = encode(texts)
                raw_rate = asyncio.run(raw_loop(bench.kafka, args.partitions, enc.keys, enc.values))
                log(f"raw loop: {raw_rate:,.0f} records/s")
            if "pipeline" in args.only and (args.baseline_env or args.baseline_root):
                env = dict(kv.split("=", 1) for kv in args.baseline_env)
                b = run_pipeline(bench, "baseline", texts, env_extra=env,
                                 baseline=bool(args.baseline_root))
                stop_all(b)
            if "pipeline" in args.only:
                r = run_pipeline(bench, "pipeline", texts,
                                 profile_s=args.profile_seconds if args.profile else 0)
                stop_all(r)
                mix = (f"{r['texts']:,} texts, {r['senders']:,} senders, "
                       f"{r['forwarded'] / r['texts']:.0%} forwarded, {r['approved']:,} replies")
                rows.append((f"pipeline, flood mix, {args.partitions} partitions, "
                             f"{r['seconds']:.0f} s", f"{r['texts_per_s']:,.0f} texts/s",
                             f"raw aiokafka loop: {raw_rate:,.0f} texts/s" if raw_rate else "",
                             r["texts_per_s"] / raw_rate if raw_rate else None,
                             f"{mix}; journal {r['journal']:,}/{r['events']:,} events "
                             f"({journal_note(r)}); CPU/text worker {r['worker_cpu_ms']:.2f} ms, "
                             f"campaign actors {r['actor_cpu_ms']:.2f} ms, broker "
                             f"{r['broker_cpu_ms']:.2f} ms; records/text "
                             f"{r['records_per_text']:.2f} ({r['records']})"))
                if args.baseline_env or args.baseline_root:
                    what = " ".join([*([str(args.baseline_root)] if args.baseline_root else []),
                                     *args.baseline_env])
                    rows.append((f"pipeline with {what}, "
                                 f"{b['seconds']:.0f} s", f"{b['texts_per_s']:,.0f} texts/s",
                                 f"this checkout: {r['texts_per_s']:,.0f} texts/s",
                                 b["texts_per_s"] / r["texts_per_s"],
                                 f"journal {b['journal']:,}/{b['events']:,} events "
                                 f"({journal_note(b)}); CPU/text worker "
                                 f"{b['worker_cpu_ms']:.2f} ms, campaign actors "
                                 f"{b['actor_cpu_ms']:.2f} ms, broker "
                                 f"{b['broker_cpu_ms']:.2f} ms; records/text "
                                 f"{b['records_per_text']:.2f} ({b['records']})"))
                if "profile" in r:
                    notes.append(r["profile"])
            elif raw_rate:
                rows.append(("raw aiokafka loop", f"{raw_rate:,.0f} texts/s", "", None, ""))
        if "workers2" in args.only:
            # One worker, then two with the same app id, each started (and, for two, sharing
            # the partitions) before the texts are produced: the CPU per text summed over
            # the workers, beside one worker's in the same run.
            # Surge mode off for both: with it on, which replies are deferred, released or
            # expired follows the workers' clock ticks, so two runs would not do the same
            # work (measured: 6,394 and 4,131 replies sent for the same texts).
            from streams.simulate import REPLY_2017

            texts = flood_texts(args.texts, seed=2017)
            shipped = bench.config
            bench.config = bench.tmp / "campaigns-no-surge.toml"
            bench.config.write_text(CONFIG.format(reply=REPLY_2017).replace(*NO_SURGE_POLICY))
            try:
                spy_s = args.profile_seconds if args.profile else 0
                one = run_pipeline(bench, "one-worker", texts, live=True, profile_s=spy_s)
                stop_all(one)
                # The deployment's shape (README, "Run it on a cluster"): one worker
                # follows the journal for the dashboard, the other does not; with
                # --baseline-root, that checkout's two workers too. For each, the takeover
                # when the first worker is stopped.
                twos = []
                for label, baseline in (("two-workers", False),
                                        *((("two-workers-baseline", True),)
                                          if bench.baseline_root else ())):
                    two = run_pipeline(bench, label, texts, workers=2, profile_s=spy_s,
                                       baseline=baseline,
                                       others_env={"ANTIRELOU_NO_DASHBOARD": "1"})
                    two["takeover_s"] = takeover(two, bench.kafka)
                    log(f"{label}: the first worker stopped: 64 new texts screened "
                        f"{two['takeover_s']:.1f} s after the signal")
                    stop_all(two)
                    twos.append((f" ({bench.baseline_root})" if baseline else "", two))
            finally:
                bench.config = shipped
            for label, g in (("1 worker", one),
                             *((f"2 workers (one --no-dashboard){code}", g)
                               for code, g in twos)):
                rows.append((f"pipeline live, surge off, {label}, {g['seconds']:.0f} s",
                             f"{g['texts_per_s']:,.0f} texts/s",
                             "" if g is one else
                             f"CPU/text vs 1 worker: {g['worker_cpu_ms']:.3f} / "
                             f"{one['worker_cpu_ms']:.3f} ms",
                             None if g is one else g["worker_cpu_ms"] / one["worker_cpu_ms"],
                             f"journal {g['journal']:,}/{g['events']:,} events "
                             f"({journal_note(g)}); CPU/text worker(s) "
                             f"{g['worker_cpu_ms']:.3f} ms, campaign actors "
                             f"{g['actor_cpu_ms']:.3f} ms, broker {g['broker_cpu_ms']:.3f} ms; "
                             f"records/text {g['records_per_text']:.2f}"
                             + ("" if g is one else
                                f"; first worker stopped: 64 new texts screened "
                                f"{g['takeover_s']:.1f} s after the signal")))
                notes.append(f"{label}: CPU ms per text by thread: {g['threads_ms']}")
                if "profile" in g:
                    notes.append(f"{label}, the first worker: {g['profile']}")
        if "stage" in args.only:
            runs = [("stage", False)] + ([("stage-baseline", True)] if bench.baseline_root
                                         else [])
            got = {label: reply_stage(bench, label, args.replies, baseline,
                                      args.profile_seconds if args.profile else 0)
                   for label, baseline in runs}
            notes.extend(g["profile"] for g in got.values() if "profile" in g)
            r = got["stage"]
            rows.append((f"reply stage in a worker, {args.replies:,} replies, "
                         f"{r['seconds']:.0f} s", f"{r['replies_per_s']:,.0f} replies/s", "",
                         None, f"journal {r['journal']:,}/{2 * args.replies:,} events; CPU/reply "
                         f"worker {r['worker_cpu_ms']:.2f} ms"))
            if "stage-baseline" in got:
                b = got["stage-baseline"]
                rows.append((f"reply stage of {bench.baseline_root}, {b['seconds']:.0f} s",
                             f"{b['replies_per_s']:,.0f} replies/s",
                             f"this checkout: {r['replies_per_s']:,.0f} replies/s",
                             b["replies_per_s"] / r["replies_per_s"],
                             f"journal {b['journal']:,}/{2 * args.replies:,} events; CPU/reply "
                             f"worker {b['worker_cpu_ms']:.2f} ms"))
        if "sends" in args.only:
            alone = asyncio.run(messagebird_alone(bench.mb_endpoint, 3000, 32))
            log(f"local MessageBird alone: {alone:,.0f}/s")
            for threads in (8, 32):
                rate = gateway_sends(bench.mb_endpoint, 3000, threads)
                log(f"gateway sends, {threads} threads: {rate:,.0f}/s")
                rows.append((f"reply stage alone: MessageBirdGateway.send, {threads} threads",
                             f"{rate:,.0f} sends/s",
                             f"local MessageBird alone (aiohttp client): {alone:,.0f}/s",
                             rate / alone, "to the same local MessageBird server"))
            if bench.baseline_root:
                old_alone = asyncio.run(messagebird_alone(bench.baseline_mb_endpoint, 3000, 32))
                rate = gateway_sends(bench.baseline_mb_endpoint, 3000, 8, bench.baseline_root)
                log(f"baseline: gateway sends {rate:,.0f}/s, its MessageBird alone "
                    f"{old_alone:,.0f}/s")
                rows.append((f"reply stage alone of {bench.baseline_root}, 8 threads",
                             f"{rate:,.0f} sends/s",
                             f"its local MessageBird alone: {old_alone:,.0f}/s",
                             rate / old_alone, "its gateway and its server"))
        if "webhook" in args.only or "latency" in args.only:
            run_webhook_and_latency(bench, args, rows, notes)
        if "growth" in args.only:
            for i, n in enumerate(sizes):
                r = run_pipeline(bench, f"growth{n}", distinct_sender_texts(n, seed=i + 1))
                r["worker"].stop()
                # From the worker as it came up (empty table): at the first journal event it
                # already holds the prefetched texts (757 MiB for 1M pre-produced texts).
                per = (r["rss_end_mib"] - r["rss_ready_mib"]) * 2**20 / n
                rows.append((f"growth: {n:,} distinct senders, 1 text each",
                             f"{r['texts_per_s']:,.0f} texts/s",
                             f"worker RSS {r['rss_ready_mib']:,.0f} MiB empty -> "
                             f"{r['rss_end_mib']:,.0f} MiB (peak {r['hwm_mib']:,.0f})", None,
                             f"{per:,.0f} bytes/sender; journal "
                             f"{r['journal']:,}/{r['events']:,}"))
        if "restart" in args.only:
            env = dict(kv.split("=", 1) for kv in args.baseline_env)
            runs = [("", None)] + ([(" with " + " ".join(args.baseline_env), env)] if env
                                   else [])
            for n, (what, run_env) in itertools.product(sizes, runs):
                r = restart(bench, n, args.profile_seconds if args.profile else 0, run_env)
                if "profile" in r:
                    notes.append(r["profile"])
                recovery_s = r["full"]["screened_s"] - r["empty"]["screened_s"]
                bare_rate = r["bare_records"] / r["bare_s"]
                rows.append((f"restart on {n:,} senders{what}: 64 new texts screened",
                             f"{r['full']['screened_s']:.1f} s after start",
                             f"empty table {r['empty']['screened_s']:.1f} s; bare consumer "
                             f"reads the changelog at {bare_rate:,.0f} records/s",
                             n / recovery_s / bare_rate if recovery_s > 0 else None,
                             f"recovery {n / recovery_s:,.0f} records/s (the difference); "
                             f"healthy after {r['full']['healthy_s']:.1f} s "
                             f"(empty {r['empty']['healthy_s']:.1f} s); worker CPU "
                             f"{r['full']['cpu_s']:.1f} s (empty {r['empty']['cpu_s']:.1f} s)"))
        broker_rss = rss_mib(bench.broker.pid)[0] if bench.broker.pid else 0

    print(f"\nantirelou benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, noida-db broker; "
          f"{'full' if full else 'quick'} run in {time.perf_counter() - started:.0f} s\n")
    header = ("row", "measured", "reference (same run)", "ratio", "notes")
    table = [header] + [(a, b, c, f"{d:.2f}" if d is not None else "", e) for a, b, c, d, e in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4])
    print(f"\nbroker RSS at the end: {broker_rss:,.0f} MiB")
    for note in notes:
        print("\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
