"""Which worker serves the dashboard: --no-dashboard's default from the environment."""

from __future__ import annotations

import socket

import pytest

from streams.cli import build_parser
from streams.cli.run import no_dashboard_default


@pytest.mark.parametrize("env, host, off", [
    ({}, "antirelou-worker-1", False),  # nothing said: every worker serves it
    ({"ANTIRELOU_NO_DASHBOARD": "1"}, "antirelou-worker-0", True),
    ({"ANTIRELOU_NO_DASHBOARD": "0"}, "antirelou-worker-0", False),
    ({"ANTIRELOU_DASHBOARD_HOST": "antirelou-worker-0"}, "antirelou-worker-0", False),
    ({"ANTIRELOU_DASHBOARD_HOST": "antirelou-worker-0"}, "antirelou-worker-1", True),
    ({"ANTIRELOU_DASHBOARD_HOST": "antirelou-worker-0"}, "antirelou-worker-00", True),
    ({"ANTIRELOU_DASHBOARD_HOST": ""}, "antirelou-worker-1", False),
    ({"ANTIRELOU_DASHBOARD_HOST": "antirelou-worker-0", "ANTIRELOU_NO_DASHBOARD": "1"},
     "antirelou-worker-0", True),
])
def test_the_dashboard_host_alone_follows_the_journal(monkeypatch, env, host, off):
    for name in ("ANTIRELOU_NO_DASHBOARD", "ANTIRELOU_DASHBOARD_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert no_dashboard_default(lambda: host) is off


def test_the_worker_flag_takes_this_host_s_name(monkeypatch):
    monkeypatch.delenv("ANTIRELOU_NO_DASHBOARD", raising=False)
    monkeypatch.setenv("ANTIRELOU_DASHBOARD_HOST", socket.gethostname())
    assert build_parser().parse_args(["worker"]).no_dashboard is False
    monkeypatch.setenv("ANTIRELOU_DASHBOARD_HOST", socket.gethostname() + "-not-this-one")
    assert build_parser().parse_args(["worker"]).no_dashboard is True
    assert build_parser().parse_args(["worker", "--no-dashboard"]).no_dashboard is True
