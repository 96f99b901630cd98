"""infra/kafka_compat.py against the real embedded broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WEDGE = Path(__file__).with_name("noida_group_wedge.py")


def test_a_commit_refused_mid_rebalance_no_longer_wedges_the_group_on_noida_db():
    # The reproduction (aiokafka alone, its own broker): A commits while B joins; noida-db
    # refuses with ILLEGAL_GENERATION. Without the fix A rejoins as a new member, noida-db
    # names A's old id as the leader and the group never completes (35 s, then exit 1):
    # run `noida_group_wedge.py` without --keep-member to see it.
    done = subprocess.run([sys.executable, str(WEDGE), "--keep-member"], capture_output=True,
                          text=True, timeout=120)
    assert "A's commit refused" in done.stdout, done.stdout[-2000:]  # the refusal happened
    assert done.returncode == 0, done.stdout[-2000:]
    assert "the two members share the partitions" in done.stdout
    leaders = [line for line in done.stdout.splitlines() if "JoinGroup answer" in line]
    generation_2 = [line.split("leader ")[1].split(",")[0] for line in leaders
                    if "generation 2" in line]
    members = [line.split("this member ")[1] for line in leaders if "generation 2" in line]
    assert generation_2 and generation_2[0] in members  # a live member leads generation 2
