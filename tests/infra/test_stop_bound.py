"""`up`'s bounded stop (infra/supervisor.py ``bound_shutdown``, ``exit_now``), in child
processes with a stand-in for the Faust worker: the process ends when it should and with the
exit code that says what happened, whatever non-daemon thread is still running."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from tests.factories import ROOT

PRELUDE = textwrap.dedent("""
    import signal, threading, time
    from infra.supervisor import bound_shutdown, exit_now

    class Worker:  # what bound_shutdown wraps on a mode/Faust Worker
        def _schedule_shutdown(self, sig):
            pass
        async def stop(self):
            pass

    # A non-daemon thread that outlives everything (a send stuck in a call, Ray's threads):
    # Python's own exit would wait for it.
    threading.Thread(target=time.sleep, args=(60,)).start()
    worker = Worker()
""")


def run_child(body: str) -> tuple[int, float, str]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    return done.returncode, time.monotonic() - start, done.stderr


def test_exit_now_ends_the_process_with_its_code_without_waiting_for_threads():
    code, took, _ = run_child("""
        bound_shutdown(worker, 5.0, cleanup=lambda: None)
        worker._schedule_shutdown(signal.SIGINT)   # Ctrl-C: the deadline is armed
        exit_now(0)                                # the stop finished in time
    """)
    assert code == 0 and took < 5


def test_a_stop_past_the_deadline_exits_1_even_if_the_main_thread_then_ends():
    # The deadline passes while the main thread is still stopping (Ray, the broker); its
    # cleanup is slow; the main thread then finishes and asks to exit 0: the exit is 1.
    code, took, err = run_child("""
        bound_shutdown(worker, 0.5, cleanup=lambda: time.sleep(1.0))
        worker._schedule_shutdown(signal.SIGINT)
        time.sleep(0.8)                            # past the deadline, its cleanup under way
        exit_now(0)
    """)
    assert code == 1, err
    assert took < 5 and "did not finish within 0.5 s" in err
