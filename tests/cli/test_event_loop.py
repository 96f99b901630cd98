"""The worker's event loop: uvloop's by default, asyncio's on request, a clear error else.
Each case in a child process: the policy is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import asyncio, sys
from streams.cli.run import install_event_loop
print(install_event_loop())
async def main():
    return type(asyncio.get_running_loop()).__module__
print(asyncio.run(main()))
"""


def probe(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ANTIRELOU_EVENT_LOOP"}
    if value is not None:
        env["ANTIRELOU_EVENT_LOOP"] = value
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=60)


def test_uvloop_by_default() -> None:
    out = probe(None)
    assert out.returncode == 0, out.stderr
    installed, module = out.stdout.split()
    assert installed == "uvloop"
    assert module.startswith("uvloop")


def test_asyncio_on_request() -> None:
    out = probe("asyncio")
    assert out.returncode == 0, out.stderr
    installed, module = out.stdout.split()
    assert installed == "asyncio"
    assert module.startswith("asyncio")


@pytest.mark.parametrize("value", ["tokio", "UVLOOP"])
def test_unknown_loop_is_a_one_line_error(value: str) -> None:
    out = probe(value)
    assert out.returncode != 0
    assert f"ANTIRELOU_EVENT_LOOP must be one of uvloop, asyncio, not '{value}'" in out.stderr
    assert "Traceback" not in out.stderr
