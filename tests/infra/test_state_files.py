"""State files are private (issue 31): the embedded broker's data, the state folder, an
operator's key written where the README sends it.

Before: ``kafka.json`` (every topic, bodies included) 0644 in a 0755 folder under ``up``;
``antirelou operator new alice > alice.txt`` left the private key 0644.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from infra.broker import EmbeddedBroker, ensure_topics
from infra.statedir import make_private

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_embedded_brokers_data_and_log_are_private(tmp_path):
    # given a broker folder left by an older version, readable by everyone
    data = tmp_path / "state" / "kafka"
    data.mkdir(parents=True)
    (data / "broker.log").write_text("an older run\n")
    os.chmod(data / "broker.log", 0o644)
    os.chmod(data, 0o755)
    # when the broker runs and writes a topic
    snapshot = data / "kafka.json"
    with EmbeddedBroker(data) as broker:
        ensure_topics(broker.bootstrap_servers, {"t": 1})
        deadline = time.monotonic() + 5
        while not snapshot.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # noida-db saves about once a second
    # then the folder is 0700 and every file in it 0600 (the snapshot written since too)
    assert mode(data) == 0o700
    files = [p for p in data.rglob("*") if p.is_file()]
    assert snapshot in files and (data / "broker.log") in files
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_a_state_folder_is_made_private_but_what_it_holds_is_not_walked(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / "notes.txt").write_text("x")
    os.chmod(state / "notes.txt", 0o644)
    make_private(state)
    # the folder named by the user is closed; what it holds is left as it is
    assert mode(state) == 0o700 and mode(state / "notes.txt") == 0o644
    make_private(state, tree=True)
    assert mode(state / "notes.txt") == 0o600


def test_operator_new_redirected_to_a_file_leaves_the_key_readable_by_its_owner_only(tmp_path):
    # as the README does it: antirelou operator new alice --may policy,budget > alice.txt
    out = tmp_path / "alice.txt"
    subprocess.run(f"{sys.executable} -m streams.cli operator new alice --may policy,budget "
                   f"> {out}", shell=True, check=True, cwd=ROOT)
    assert "ANTIRELOU_OPERATOR_KEY=" in out.read_text()
    assert mode(out) == 0o600
