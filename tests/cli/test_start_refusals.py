"""``up`` and ``worker`` refuse to start on settings that open the deployment (issue 31,
item 4), with one clear line and exit 2, before they reach anything:

- a placeholder (``CHANGE-ME``, the example secret file's) for any key, or a weak
  ``ANTIRELOU_SECRET`` (16 bytes of anything passed; its key check value is on the broker,
  open to offline guessing);
- no ``--public-url`` outside ``--insecure-dev`` (the request's Host header chose the URL a
  signature was checked against: a token signed for another endpoint of the account
  passed);
- an admin token too short to stand guessing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from infra.keycheck import SecretError, deployment_secret, secret_weakness
from streams import cli
from streams.cli.deployment import start_refusal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STRONG = "4f1c0e9a7b3d2c5e8f6a1b0d9c7e3f2a"  # 32 random hex digits
KEYS = ("ANTIRELOU_SECRET", "ANTIRELOU_SECRET_FILE", "MESSAGEBIRD_SIGNING_KEY",
        "BIRD_SIGNING_KEY", "MESSAGEBIRD_ACCESS_KEY", "BIRD_ACCESS_KEY", "ANTIRELOU_ADMIN_TOKEN",
        "ANTIRELOU_PUBLIC_URL", "ANTIRELOU_INSECURE_DEV")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("secret", [
    "CHANGE-ME", "change_me_please_0123456789abcdefghij", "<your-secret>" + "x" * 30,
    "0123456789abcdef",  # 16 bytes of anything: what was enough
    "e2e-secret-0123456789abcdef",  # 27
    "a" * 64, "ab" * 32,  # long, not random
])
def test_a_placeholder_or_weak_secret_is_refused_in_one_line_without_it(tmp_path, secret):
    with pytest.raises(SecretError) as refused:
        deployment_secret(tmp_path / "state", development=False,
                          environ={"ANTIRELOU_SECRET": secret})
    message = str(refused.value)
    assert "ANTIRELOU_SECRET" in message and secret not in message and "\n" not in message
    # and from a file too
    path = tmp_path / "secret.txt"
    path.write_text(secret + "\n")
    with pytest.raises(SecretError, match="ANTIRELOU_SECRET_FILE"):
        deployment_secret(tmp_path / "state", development=False,
                          environ={"ANTIRELOU_SECRET_FILE": str(path)})


def test_a_random_secret_is_taken():
    assert secret_weakness(STRONG.encode()) is None
    assert secret_weakness(os.urandom(32)) is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def args_for(*argv: str):
    return cli.build_parser().parse_args(["worker", "--kafka", "127.0.0.1:1", *argv])


@pytest.mark.parametrize("name", ["MESSAGEBIRD_SIGNING_KEY", "BIRD_SIGNING_KEY",
                                  "MESSAGEBIRD_ACCESS_KEY", "BIRD_ACCESS_KEY",
                                  "ANTIRELOU_ADMIN_TOKEN"])
def test_a_placeholder_key_is_refused(monkeypatch, name):
    monkeypatch.setenv(name, "CHANGE-ME")
    why = start_refusal(args_for("--public-url", "https://sms.example.org"))
    assert why is not None and why.startswith(f"{name} is a placeholder")
    assert "CHANGE-ME" not in why


def test_a_short_admin_token_is_refused(monkeypatch):
    monkeypatch.setenv("ANTIRELOU_ADMIN_TOKEN", "hunter2")
    why = start_refusal(args_for("--public-url", "https://sms.example.org"))
    assert why is not None and "ANTIRELOU_ADMIN_TOKEN has 7 characters" in why
    assert "hunter2" not in why


def test_a_webhook_concurrency_below_one_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:  # by the parser, in one line
        args_for("--insecure-dev", "--webhook-concurrency", "0")
    assert exited.value.code == 2
    assert "--webhook-concurrency: 0 must be at least 1" in capsys.readouterr().err


def test_the_public_url_is_required_outside_insecure_dev(monkeypatch):
    assert "--public-url" in start_refusal(args_for())
    assert start_refusal(args_for("--public-url", "https://sms.example.org")) is None
    assert start_refusal(args_for("--public-url", "http://127.0.0.1:6066/")) is None
    assert start_refusal(args_for("--insecure-dev")) is None  # development: the Host header
    monkeypatch.setenv("ANTIRELOU_PUBLIC_URL", "https://sms.example.org/antirelou")
    assert start_refusal(args_for()) is None


@pytest.mark.parametrize("url", ["sms.example.org", "ftp://sms.example.org",
                                 "https://sms.example.org/?x=1", "https://", "https://h:0"])
def test_a_public_url_that_is_not_one_is_refused(url):
    assert "is not a base URL" in start_refusal(args_for("--public-url", url))


@pytest.mark.parametrize("env, said", [
    ({"ANTIRELOU_SECRET": "CHANGE-ME"}, "ANTIRELOU_SECRET is a placeholder"),
    ({"ANTIRELOU_SECRET": STRONG, "BIRD_SIGNING_KEY": "CHANGE-ME"},
     "BIRD_SIGNING_KEY is a placeholder"),
    ({"ANTIRELOU_SECRET": STRONG, "MESSAGEBIRD_SIGNING_KEY": "CHANGE-ME"},
     "MESSAGEBIRD_SIGNING_KEY is a placeholder"),
    ({"ANTIRELOU_SECRET": STRONG, "BIRD_SIGNING_KEY": "k" * 40}, "--public-url"),
])
def test_the_worker_says_it_in_one_line_and_exits_2(tmp_path, env, said):
    # The real command, as a process: nothing is reached (the broker's address is dead).
    clean = {k: v for k, v in os.environ.items() if k not in KEYS}
    extra = [] if "--public-url" in said else ["--public-url", "https://sms.example.org"]
    extra += ["--web-port", str(free_port())]  # not 6066, which a running `up` may hold
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker", "--kafka", "127.0.0.1:1",
         "--config", os.path.join(ROOT, "infra", "campaigns.example.toml"),
         "--state-dir", str(tmp_path / "state"), *extra],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**clean, "MESSAGEBIRD_SIGNING_KEY": "k" * 40, "BIRD_SIGNING_KEY": "b" * 40, **env})
    lines = [line for line in done.stderr.splitlines() if line.startswith("antirelou:")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and len(lines) == 1 and said in lines[0], done.stderr
    for value in env.values():
        assert value == "CHANGE-ME" or value not in done.stderr + done.stdout
