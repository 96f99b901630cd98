"""End-to-end fixtures: the real ``antirelou worker`` process, wired to the run's broker,
the run's Ray session and a local MessageBird-compatible server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infra.journal import read_journal
from infra.messagebird_local import LocalMessageBird
from infra.numbers import classify
from streams.simulate import sign_webhook

SIGNING_KEY = "e2e-signing-key-0123456789abcdef0123456789"
SECRET = "e2e-secret-5f0c3a9e7d1b4c2a8e6f0d3b9a7c5e1f"  # ANTIRELOU_SECRET: 32+ random bytes
ACCESS_KEY = "e2e_access_key"
REPLY_PARIS = "Non, c'est non. Vous avez fait peur a une femme. Ce numero est un numero anti-relou."
REPLY_LYON = "Ce numero est un numero anti-relou de Lyon. Une femme vous l'a donne pour etre tranquille."
PRICE = "0.08"
ADMIN_TOKEN = "e2e-admin-token-0123456789"  # /campaigns, /dashboard, /metrics, /health details
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

CONFIG = f"""
[[campaign]]
id = "paris"
number = "+33644630001"
reply_text = "{REPLY_PARIS}"
language = "fr"
budget_eur = "100.00"
price_per_segment_eur = "{PRICE}"
start = 2017-01-01
end = 2099-12-31
pacing = false
# These tests flood a campaign for other reasons: no surge mode (test_flood_live sets it),
# and requests decided as they come (no safety delay), so that replies go out at once.
policy = {{ surge_multiple = "off", reply_delay_minutes = "0" }}
originator = "AntiRelou"

[[campaign]]
id = "lyon"
number = "+33644630002"
reply_text = "{REPLY_LYON}"
language = "fr"
budget_eur = "50.00"
price_per_segment_eur = "{PRICE}"
start = 2017-01-01
end = 2099-12-31
pacing = false
# These tests flood a campaign for other reasons: no surge mode (test_flood_live sets it),
# and requests decided as they come (no safety delay), so that replies go out at once.
policy = {{ surge_multiple = "off", reply_delay_minutes = "0" }}

[[campaign]]
id = "tiny"
number = "+33644630003"
reply_text = "Non c'est non."
language = "fr"
budget_eur = "0.08"
price_per_segment_eur = "{PRICE}"
start = 2017-01-01
end = 2099-12-31
pacing = false
# These tests flood a campaign for other reasons: no surge mode (test_flood_live sets it),
# and requests decided as they come (no safety delay), so that replies go out at once.
policy = {{ surge_multiple = "off", reply_delay_minutes = "0" }}
"""
NUMBERS = {"paris": "33644630001", "lyon": "33644630002", "tiny": "33644630003"}

# Operators of the test deployment: alice may do everything, carol may change paris's policy
# only. Private keys stay here (the CLI gets them through ANTIRELOU_OPERATOR_KEY).
OPERATOR_KEYS: dict[str, str] = {}
_operator_tables = []
for _name, _may, _campaigns in (("alice", ["policy", "budget"], None),
                                ("carol", ["policy"], ["paris"])):
    # Fixed keys: pytest may import this module twice (as a conftest and as a module).
    _seed = hashlib.sha256(b"e2e-operator-" + _name.encode()).digest()
    OPERATOR_KEYS[_name] = base64.urlsafe_b64encode(_seed).decode()
    _public = base64.urlsafe_b64encode(
        Ed25519PrivateKey.from_private_bytes(_seed).public_key().public_bytes_raw()).decode()
    _operator_tables.append(
        f'[[operator]]\nname = "{_name}"\npublic_key = "{_public}"\nmay = {json.dumps(_may)}\n'
        + (f"campaigns = {json.dumps(_campaigns)}\n" if _campaigns else ""))
CONFIG += "\n" + "\n".join(_operator_tables)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_sender() -> str:
    """A fresh French mobile number, valid per phonenumbers, never reused across tests."""
    while True:
        number = "336" + str(uuid.uuid4().int % 10**8).zfill(8)
        if classify(number).kind == "mobile":  # about 1 in 10 of these ranges is not
            return number


@dataclass
class Worker:
    url: str
    kafka: str
    app_id: str
    log_path: Path
    process: subprocess.Popen
    config: Path | None = None

    @property
    def journal_topic(self) -> str:
        return f"{self.app_id}.journal"

    def post(self, *, sender: str, campaign: str = "paris", body: str = "t'es ou ?",
             message_id: str | None = None, sign_with: str | None = SIGNING_KEY,
             recipient: str | None = None) -> requests.Response:
        message_id = message_id or uuid.uuid4().hex
        fields = {"id": message_id, "originator": sender,
                  "recipient": recipient or NUMBERS[campaign], "body": body,
                  "createdDatetime": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
        raw = urlencode(fields).encode()
        url = self.url + "/webhooks/messagebird/sms"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if sign_with is not None:
            headers["MessageBird-Signature-JWT"] = sign(url, raw, sign_with)
        response = requests.post(url, data=raw, headers=headers, timeout=30)
        response.message_id = message_id  # type: ignore[attr-defined]
        return response

    def journal(self) -> list:
        return read_journal(self.kafka, self.journal_topic)

    def wait_for(self, predicate, timeout: float = 60.0) -> list:
        """Poll the journal until predicate(events) is true; returns the events."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.journal()
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                lines = [line for line in self.log_path.read_text().splitlines()
                         if not line.startswith(("|", "+"))]
                tail = "\n".join(lines[-40:])
                recent = [(e.TYPE, getattr(e, "message_id", "")[:8], getattr(e, "reason", ""))
                          for e in events[-12:]]
                raise AssertionError(f"journal condition not met in {timeout}s; last events "
                                     f"{recent}; worker log:\n{tail}")
            time.sleep(0.3)

    def cli(self, *args: str, operator: str | None = None,
            key: str | None = None) -> subprocess.CompletedProcess:
        """Run a command of the `antirelou` CLI against this deployment; ``operator`` signs
        it as that operator of the test config (or with ``key``, when given)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("ANTIRELOU_OPERATOR_KEY", "ANTIRELOU_OPERATOR",
                            "ANTIRELOU_INSECURE_DEV")}
        if operator is not None:
            env["ANTIRELOU_OPERATOR"] = operator
            env["ANTIRELOU_OPERATOR_KEY"] = key or OPERATOR_KEYS[operator]
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", *args, "--kafka", self.kafka,
             "--app-id", self.app_id, "--config", str(self.config)],
            capture_output=True, text=True, timeout=60, env=env,
        )

    def status(self) -> dict:
        return self.admin_get("/campaigns").json()

    def admin_get(self, path: str) -> requests.Response:
        """GET an admin page with the deployment's admin token."""
        return requests.get(self.url + path, headers=ADMIN, timeout=10)


def sign(url: str, body: bytes, key: str) -> str:
    """Sign as MessageBird does (the simulator's signer, so both stay one)."""
    return sign_webhook(url, body, key)


def of(events, message_id, type_name=None):
    return [e for e in events if getattr(e, "message_id", None) == message_id
            and (type_name is None or e.TYPE == type_name)]


@pytest.fixture(scope="module")
def messagebird():
    with LocalMessageBird(access_key=ACCESS_KEY, price_per_part=PRICE) as server:
        yield server


def start_worker(tmp: Path, kafka: str, ray_address: str, env_extra: dict,
                 app_id: str | None = None, config_text: str = CONFIG,
                 probe: bool = True, args: tuple[str, ...] = (),
                 module: str = "streams.cli") -> Worker:
    """``env_extra`` values of None remove the variable; ``probe=False`` skips the classic
    webhook probe (the caller waits for its own first text); ``args`` are added to the
    worker's command line (e.g. ``("--role", "web")``); ``module`` runs the command (e.g.
    ``tests.e2e.faulty_worker``, the worker with faults made)."""
    config = tmp / "campaigns.toml"
    config.write_text(config_text)
    port = free_port()
    app_id = app_id or "e2e-" + uuid.uuid4().hex[:8]
    log_path = tmp / f"worker-{port}.log"
    env = {**os.environ, "MESSAGEBIRD_SIGNING_KEY": SIGNING_KEY,
           "ANTIRELOU_SECRET": SECRET, "ANTIRELOU_ADMIN_TOKEN": ADMIN_TOKEN,
           **env_extra}
    env = {k: v for k, v in env.items() if v is not None}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", module, "worker", "--kafka", kafka,
         "--ray-address", ray_address, "--config", str(config), "--app-id", app_id,
         "--web-port", str(port), "--state-dir", str(tmp / "state"), "--partitions", "2",
         "--snapshot-interval", "1", "--public-url", f"http://127.0.0.1:{port}", *args],
        stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True,
    )
    worker = Worker(f"http://127.0.0.1:{port}", kafka, app_id, log_path, process, config)
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited {process.returncode}:\n{log_path.read_text()}")
        try:
            if requests.get(worker.url + "/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"worker did not come up:\n{log_path.read_text()}")
        time.sleep(0.5)
    # The web server answers before partitions are assigned; wait until a text flows.
    if probe:
        answer = worker.post(sender=new_sender(), recipient="33600000000")
        assert answer.status_code == 404, answer.text
    return worker


def stop_worker(worker: Worker) -> None:
    if worker.process.poll() is None:
        os.killpg(worker.process.pid, signal.SIGINT)
        try:
            worker.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(10)


@pytest.fixture(scope="module")
def worker(tmp_path_factory, kafka, ray_address, messagebird):
    w = start_worker(tmp_path_factory.mktemp("worker"), kafka, ray_address, {
        "MESSAGEBIRD_ACCESS_KEY": ACCESS_KEY, "MESSAGEBIRD_ENDPOINT": messagebird.endpoint})
    yield w
    stop_worker(w)


class Workers:
    """Workers a test starts; each is stopped at the test's end, whatever it did."""

    def __init__(self) -> None:
        self.started: list[Worker] = []

    def start(self, *args, **kwargs) -> Worker:
        """``start_worker(...)``, remembered for the teardown."""
        worker = start_worker(*args, **kwargs)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        while self.started:
            stop_worker(self.started.pop())  # a killed one is already gone: nothing to do


@pytest.fixture
def workers():
    started = Workers()
    yield started
    started.stop_all()


@pytest.fixture
def own_broker(tmp_path, workers):
    """A broker of the test's own (its data in tmp_path/kafka), for tests that stop, kill or
    restart it; stopped at the end, after the test's workers."""
    from infra.broker import EmbeddedBroker

    broker = EmbeddedBroker(tmp_path / "kafka").start()
    yield broker
    workers.stop_all()
    broker.stop()


def send_ticks(w, campaign_id: str, times: list[int]) -> None:
    """The clock at these event times for one campaign, as ``Tick`` records on reply-requests
    (what the leader's timer sends): a test brings the campaign's time on without waiting."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    from schemas import codec
    from schemas.commands import Tick

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=w.kafka, acks="all")
        await producer.start()
        try:
            for at in times:
                await producer.send_and_wait(f"{w.app_id}.reply-requests", codec.encode(
                    Tick(campaign_id=campaign_id, occurred_at=at)), key=campaign_id.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
