"""The worker freezes what start-up loaded out of the garbage collector's reach."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
import faust, ray  # what a worker has loaded before it serves
from streams.cli.run import freeze_what_was_loaded
assert gc.get_freeze_count() == 0
frozen = freeze_what_was_loaded()
assert frozen == gc.get_freeze_count(), (frozen, gc.get_freeze_count())
gc.collect()  # a full collection now walks what was created after the freeze only
print(frozen)
"""


def test_start_up_objects_are_frozen_so_a_full_collection_skips_them():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 20_000  # Faust and Ray imported: about 60,000
