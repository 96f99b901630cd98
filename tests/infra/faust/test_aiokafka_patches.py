"""infra/faust/aiokafka_patches.py against the real embedded broker."""

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


# -- the fetch floor after empty fetches (infra/faust/aiokafka_patches.py floor_after, floored) --------

from infra.faust.aiokafka_patches import IDLE_AFTER, floor_after, floored  # noqa: E402


def test_the_floor_grows_only_after_a_lull_and_stops_at_its_bound() -> None:
    floors = [floor_after(n, 0.010, 0.100) for n in range(1, 120)]
    assert set(floors[:IDLE_AFTER - 1]) == {0.010}
    assert floors[IDLE_AFTER - 1:IDLE_AFTER + 9] == [0.020] * 10
    assert floors == sorted(floors)
    assert max(floors) == 0.100 and floors[-1] == 0.100
    assert floor_after(500, 0.010, 0.010) == 0.010  # no growth asked for


def test_a_record_brings_the_floor_back(monkeypatch) -> None:
    import asyncio

    class FakeFetcher:
        _fetch_max_wait_ms = 500

    answers: list[bool] = [False] * 60 + [True] + [False]
    asked: list[float] = []  # what each empty fetch was made to wait (no real sleep)

    async def original(self, assignment, node_id, request):  # type: ignore[no-untyped-def]
        return answers.pop(0)

    async def sleep(seconds: float) -> None:
        asked.append(seconds)

    async def main() -> None:
        proc = floored(original, 0.010, 0.080)
        fetcher = FakeFetcher()
        monkeypatch.setattr(asyncio, "sleep", sleep)
        while answers:
            await proc(fetcher, None, 1, None)

    asyncio.run(main())
    want = [floor_after(n, 0.010, 0.080) for n in range(1, 61)] + [0.010]
    assert len(asked) == len(want)  # no wait after the fetch that brought a record
    assert all(abs(a - w) < 0.005 for a, w in zip(asked, want, strict=True)), asked
    assert asked[-1] < 0.011 and max(asked) > 0.075
