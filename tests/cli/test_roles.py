"""What each role of ``antirelou worker --role`` runs, and what a process that joins Ray may
hold (issue 31: no process that holds the provider keys runs Ray tasks for others; a Ray
cluster is joined with token authentication or not at all). Built offline: no broker."""

from __future__ import annotations

import pytest

from streams.app import create_app
from streams.cli.run import ray_exposure
from streams.settings import Settings

KEYS = {"MESSAGEBIRD_ACCESS_KEY": "live_key"}
TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "a" * 32}


def app_of(role: str):
    settings = Settings(kafka="127.0.0.1:1", campaigns=(), secret=b"k" * 32, allow_unsigned=True,
                        role=role, app_id="antirelou")
    return create_app(settings, deciders=None, gateway=None)


def agents(app) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name in app.agents}


def test_the_send_role_runs_the_send_stage_alone_in_a_group_of_its_own():
    app = app_of("send")
    assert agents(app) == {"send_replies"}
    assert app.conf.id == "antirelou-send"
    assert {t.name for t in app.tables.values()} == {"replies_by_message"}
    assert not app.producer_only  # a consumer: it takes sms-outbound's partitions


def test_the_decide_role_runs_every_stage_but_the_send():
    decide, every = agents(app_of("decide")), agents(app_of("all"))
    assert every - decide == {"send_replies"}
    assert {"screen_senders", "decide_replies", "apply_controls"} <= decide
    assert app_of("decide").conf.id == "antirelou"  # the deployment's group, as "all"


@pytest.mark.parametrize("role, address, env, refused", [
    # The deciding role is a Ray node: it refuses the provider keys, even in a local session.
    ("decide", None, KEYS, "unset it here"),
    ("decide", "ray-head:6379", {**KEYS, **TOKEN}, "unset it here"),
    ("decide", "ray-head:6379", {"BIRD_ACCESS_KEY": "k", **TOKEN}, "BIRD_ACCESS_KEY"),
    # A cluster is joined with its token, or knowingly open, never by default.
    ("decide", "ray-head:6379", {}, "needs token authentication"),
    ("all", "10.0.0.5:6379", {}, "needs token authentication"),
    ("decide", "ray-head:6379", {"RAY_AUTH_MODE": "token"}, "no token"),
])
def test_a_process_that_would_expose_itself_on_the_ray_cluster_does_not_start(
        role, address, env, refused, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of this machine
    refusal, _ = ray_exposure(role, address, env)
    assert refusal is not None and refused in refusal and "\n" not in refusal
    assert "live_key" not in refusal


@pytest.mark.parametrize("role, address, env, warned", [
    ("decide", "ray-head:6379", TOKEN, None),
    ("decide", "ray-head:6379", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/t"}, None),
    ("all", None, KEYS, None),  # one machine: a local Ray session of its own
    ("all", "local", KEYS, None),
    ("send", "ray-head:6379", KEYS, None),  # never joins Ray
    ("web", "ray-head:6379", KEYS, None),
    ("decide", "ray-head:6379", {"RAY_AUTH_MODE": "disabled"}, "without authentication"),
    ("all", "ray-head:6379", {**KEYS, **TOKEN}, "--role decide and --role send apart"),
])
def test_what_may_start_and_what_is_said(role, address, env, warned):
    refusal, warning = ray_exposure(role, address, env)
    assert refusal is None
    assert (warning is None) if warned is None else (warned in warning)
