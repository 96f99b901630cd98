"""`antirelou up`'s embedded broker, supervised: its pid file, its restarts, a bounded stop.

``antirelou up`` runs noida-db as a child (infra/broker.py). A crash of the broker must not
go unnoticed (the webhook kept answering, ``/health`` said ok), a broker left behind by a
killed ``up`` must not block the next one, and Ctrl-C must end ``up`` whatever is under way.
:class:`BrokerSupervisor` does all three:

* **Watch and restart.** A thread polls the child (every 0.2 s). When it dies the status
  turns down at once (:meth:`BrokerSupervisor.status`, read by the webhook and ``/health``
  through the ``broker_status`` setting: 503 and not ok while it lasts), the death is logged
  with its exit code, and the broker is started again on the same port and data folder. The
  worker's clients reconnect by themselves. More than ``max_restarts`` deaths within
  ``window_s`` seconds, or a restart that fails: the supervisor gives up, says why, and asks
  ``up`` to stop (SIGTERM to itself); ``up`` then exits 1 with the reason.
* **Tied to ``up``.** The child gets SIGTERM from Linux when ``up`` dies, even by kill -9
  (PR_SET_PDEATHSIG; the restarts run on the supervisor's thread, which lives as long as the
  broker, because the signal follows the thread that forked). And ``STATE/broker.pid`` names
  the broker and the ``up`` that owns it: the next ``up`` on that state folder stops a broker
  left running by a dead ``up`` (checked to be noida-db on this data folder, not a reused
  pid) and says so, instead of failing with "port already in use".
* **Bounded stop.** :func:`bound_shutdown` arms a deadline when the worker gets its first
  SIGINT/SIGTERM: past ``grace_s`` (a MessageBird call that hangs in a thread, a reply in
  backoff, Ray's shutdown), the broker is stopped and the process exits at once.

The broker's own limits (what a kill -9 of it loses) are in infra/broker.py and the
README's "Reliability".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from infra.broker import BrokerError, EmbeddedBroker

__all__ = ["BrokerStatus", "BrokerSupervisor", "bound_shutdown", "stop_orphan"]

log = logging.getLogger("antirelou.supervisor")

PID_FILE = "broker.pid"


@dataclass(frozen=True)
class BrokerStatus:
    """What ``/health`` shows of the broker (``reason`` says why it is not up)."""

    up: bool
    reason: str | None
    restarts: int  # times the broker was started again after dying
    down_since: float | None  # wall clock, while down
    last_outage_s: float | None  # how long the last outage lasted
    gave_up: bool = False
    back_at: float | None = None  # wall clock of the last restart (the send stage's check)
    # The end offset of each (topic, partition) the restarted broker came back with, read
    # from the snapshot it restarts from: a worker that had read past one lost records.
    ends_at_restart: dict[tuple[str, int], int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"up": self.up, "reason": self.reason, "restarts": self.restarts,
                "down_since": self.down_since, "last_outage_s": self.last_outage_s,
                "gave_up": self.gave_up, "back_at": self.back_at}


# ------------------------------------------------------------------------- pid file


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    """Is ``pid`` a noida-db process on ``data_dir`` (not a pid reused by anything else)?"""
    cmd = _cmdline(pid)
    if not cmd:
        return False
    return "noida-db" in os.path.basename(cmd[0]) and str(data_dir) in cmd


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not reaped) is gone for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def stop_orphan(state_dir: Path, data_dir: Path, grace_s: float = 5.0) -> str | None:
    """Stop the broker a previous ``up`` on ``state_dir`` left running; say what was done
    (None: nothing was left)."""
    path = state_dir / PID_FILE
    try:
        info = json.loads(path.read_text())
        pid, owner = int(info["pid"]), int(info.get("up_pid", 0))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        path.unlink(missing_ok=True)
        return f"ignored an unreadable {path} ({type(exc).__name__})"
    if owner and owner != os.getpid() and alive(owner) and _is_up(owner):
        raise BrokerError(
            f"another `antirelou up` (pid {owner}) runs on {state_dir} with its broker "
            f"(pid {pid}); stop it first, or use another --state-dir")
    if not (alive(pid) and _is_our_broker(pid, data_dir)):
        path.unlink(missing_ok=True)
        return (f"the previous `antirelou up` (pid {owner}) did not stop cleanly; its broker "
                f"(pid {pid}) is already gone")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)  # its own process group (infra/broker.py)
    deadline = time.monotonic() + grace_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    how = "stopped it (SIGTERM)"
    if alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        how = f"killed it (no exit {grace_s:g} s after SIGTERM)"
        deadline = time.monotonic() + 5.0
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    path.unlink(missing_ok=True)
    return (f"found the broker (pid {pid}) of a previous `antirelou up` (pid {owner}, gone) "
            f"still running on {data_dir}: {how}")


def _is_up(pid: int) -> bool:
    cmd = _cmdline(pid) or []
    return any(part.endswith(("streams.cli", "antirelou")) for part in cmd) and "up" in cmd


def _write_pid_file(state_dir: Path, broker: EmbeddedBroker) -> None:
    path = state_dir / PID_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": broker.pid, "up_pid": os.getpid(),
                               "port": broker.port, "data_dir": str(broker.data_dir),
                               "started_at": time.time()}))
    os.replace(tmp, path)


# ----------------------------------------------------------------------- supervisor


class BrokerSupervisor:
    """Runs ``broker`` for ``up``: see the module docstring."""

    def __init__(self, broker: EmbeddedBroker, state_dir: Path, *, max_restarts: int = 5,
                 window_s: float = 60.0, poll_s: float = 0.2, restart_delay_s: float = 0.5,
                 on_give_up: Callable[[str], None] | None = None) -> None:
        self.broker = broker
        self.state_dir = Path(state_dir)
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.poll_s = poll_s
        # Before the n-th restart within the window: restart_delay_s * 2**(n-1), at most
        # 10 s (a broker that dies at once again is not restarted in a tight loop).
        self.restart_delay_s = restart_delay_s
        self._on_give_up = on_give_up if on_give_up is not None else _stop_this_process
        self._lock = threading.Lock()
        self._status = BrokerStatus(False, "not started", 0, None, None)
        self._deaths: list[float] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # ------------------------------------------------------------------- reading

    def status(self) -> BrokerStatus:
        return self._status

    @property
    def gave_up(self) -> str | None:
        """Why the supervisor gave up, or None."""
        status = self._status
        return status.reason if status.gave_up else None

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> BrokerSupervisor:
        """Stop an orphan (said in the log and returned by :attr:`orphan_note`), start the
        broker on the supervisor's thread, and watch it."""
        self.orphan_note = stop_orphan(self.state_dir, self.broker.data_dir)
        if self.orphan_note:
            log.warning("%s", self.orphan_note)
        self._thread = threading.Thread(target=self._run, args=(timeout,),
                                        name="broker-supervisor", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching, then stop the broker (SIGTERM; SIGKILL after ``timeout``)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout + 10.0)
        self._stop_broker(timeout)

    def wait_persisted(self, timeout: float = 5.0) -> bool:
        """Block until noida-db has written a snapshot begun after this call (its
        ``kafka.json`` replaced twice: the first may have been under way), so that what was
        created before it (topics) survives a kill -9. False if none came in time."""
        path = self.broker.data_dir / "kafka.json"

        def stamp() -> tuple[int, int] | None:
            try:
                st = path.stat()
            except OSError:
                return None
            return st.st_ino, st.st_mtime_ns

        # A snapshot replaced after this call may have been taken just before it: one
        # that ends 0.2 s or more after it cannot (it takes milliseconds on this state),
        # else the next one, if any comes (noida-db writes only while there are changes).
        t0 = time.time_ns()
        seen = stamp()
        deadline = time.monotonic() + timeout
        first_at: float | None = None
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = stamp()
            if now == seen:
                if first_at is not None and time.monotonic() - first_at > 2.0:
                    return True  # no later change to write: the first one had it all
                continue
            seen = now
            if now is not None and now[1] - t0 >= 200_000_000:
                return True
            if first_at is not None:
                return True
            first_at = time.monotonic()
        return first_at is not None

    def _stop_broker(self, timeout: float) -> None:
        with self._lock:
            self.broker.stop(timeout=timeout)
            (self.state_dir / PID_FILE).unlink(missing_ok=True)

    def _run(self, timeout: float) -> None:
        # The broker is started and restarted from this thread, which lives as long as it
        # does: PR_SET_PDEATHSIG fires when the thread that forked the child ends.
        try:
            self._start_broker(timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            self._watch(timeout)
        finally:
            # Whatever ends this thread, the broker must not outlive it without a watcher.
            if self._stopping.is_set():
                self._stop_broker(5.0)

    def _start_broker(self, timeout: float) -> None:
        with self._lock:
            self.broker.start(timeout=timeout)
            _write_pid_file(self.state_dir, self.broker)
        self._set(up=True, reason=None)

    def _set(self, **changes: Any) -> None:
        status = self._status
        fields = {**status.__dict__, **changes}
        self._status = BrokerStatus(**fields)

    def _watch(self, timeout: float) -> None:
        proc = self.broker._proc
        while not self._stopping.wait(self.poll_s):
            proc = self.broker._proc
            code = proc.poll() if proc is not None else None
            if proc is None or code is None:
                continue
            died_at = time.time()
            pid = proc.pid
            self.broker._proc = None
            reason = (f"the embedded broker (noida-db, pid {pid}) died "
                      f"({_describe_exit(code)}) at {time.strftime('%H:%M:%S')}")
            self._deaths = [t for t in self._deaths if died_at - t < self.window_s]
            self._deaths.append(died_at)
            if len(self._deaths) > self.max_restarts:
                self._give_up(f"{reason}; it died {len(self._deaths)} times within "
                              f"{self.window_s:g} s: giving up")
                return
            self._set(up=False, reason=f"{reason}; restarting it", down_since=died_at)
            delay = min(10.0, self.restart_delay_s * 2 ** (len(self._deaths) - 1))
            log.error("%s; restarting it on %s in %.1f s (writes acknowledged in its last "
                      "second may be lost)", reason, self.broker.bootstrap_servers, delay)
            if self._stopping.wait(delay):
                return
            ends = snapshot_ends(self.broker.data_dir)
            try:
                self._start_broker(timeout)
            except BrokerError as exc:
                self._give_up(f"{reason}; the restart failed: {exc}")
                return
            outage = time.time() - died_at
            self._set(restarts=self._status.restarts + 1, down_since=None,
                      last_outage_s=round(outage, 3), back_at=time.time(),
                      ends_at_restart=ends)
            log.warning("embedded broker back on %s after %.1f s (pid %s, restart %d)",
                        self.broker.bootstrap_servers, outage, self.broker.pid,
                        self._status.restarts)

    def _give_up(self, reason: str) -> None:
        self._set(up=False, reason=reason, gave_up=True,
                  down_since=self._status.down_since or time.time())
        log.critical("%s; `antirelou up` stops", reason)
        (self.state_dir / PID_FILE).unlink(missing_ok=True)
        self._on_give_up(reason)


def snapshot_ends(data_dir: Path) -> dict[tuple[str, int], int] | None:
    """Each partition's end offset in noida-db's snapshot (``kafka.json``: what a restart
    comes back with); None if it cannot be read (its format is noida-db 0.2.3's)."""
    try:
        state = json.loads((Path(data_dir) / "kafka.json").read_bytes())
        ends: dict[tuple[str, int], int] = {}
        for name, topic in state["topics"]:
            for number, partition in topic["partitions"]:
                ends[(name, int(number))] = int(partition["high_watermark"])
        return ends
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot read the broker's snapshot for its end offsets (%s)",
                    type(exc).__name__)
        return None


def persist_topology(app: Any, supervisor: BrokerSupervisor | None, kafka: str) -> None:
    """Create the Faust app's table changelogs now, with their partition count, and wait
    for the embedded broker to persist them. Faust creates them as it starts; noida-db
    killed within a second after that forgets them, and then creates them again with one
    partition when they are next named (the worker crashes: "Unrecognized partition", and
    the next start with PartitionsMismatch)."""
    from infra.broker import ensure_topics

    topics = {t.changelog_topic.get_topic_name(): t.changelog_topic.partitions or t.partitions
              for t in app.tables.values()}
    topics = {name: int(n) for name, n in topics.items() if n}
    if topics:
        ensure_topics(kafka, topics, config={n: {"cleanup.policy": "compact"} for n in topics})
    if supervisor is not None and not supervisor.wait_persisted():
        log.warning("the embedded broker wrote no snapshot within 5 s")


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _stop_this_process(reason: str) -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the worker's own clean stop, bounded


# ---------------------------------------------------------------------- bounded stop


# Held by whichever ends the process first: the stop deadline, or the main thread's
# exit_now. The other then never ends it with its own exit code.
_EXITING = threading.Lock()


def exit_now(code: int) -> NoReturn:
    """End the process now with ``code`` (``up``, once its broker and Ray are stopped).
    Python's own exit joins the non-daemon threads (the send pool's, Ray's, aiokafka's) and
    runs their exit hooks; the stop deadline's thread cannot run by then, so that part was
    unbounded: 4-10 s after a flood on 2 cores. If the deadline is ending the process
    already, this waits for it (its exit code, 1, stands)."""
    _EXITING.acquire()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        logging.shutdown()
    os._exit(code)


def bound_shutdown(worker: Any, grace_s: float, cleanup: Callable[[], None],
                   exit_code: int = 1) -> None:
    """Once ``worker`` (a mode/Faust Worker) gets its first stop signal, the process has
    ``grace_s`` seconds to end; past that, ``cleanup`` runs (stop the broker) and the process
    exits at once with ``exit_code``. Without it a thread stuck in a MessageBird call, the
    interpreter joining the send pool's threads at exit, or Ray's shutdown could hold ``up``
    for ever, and a second signal would leave the broker behind."""
    original = worker._schedule_shutdown
    armed = threading.Event()

    def deadline() -> None:
        armed.wait()
        time.sleep(grace_s)  # a daemon thread: a process that ends in time ends it too
        if not _EXITING.acquire(blocking=False):
            return  # exit_now is ending the process with its own code
        log.error("the stop did not finish within %g s; stopping the broker and exiting now "
                  "(a reply still being sent ends uncertain on the next start)", grace_s)
        try:
            cleanup()
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
            os._exit(exit_code)

    threading.Thread(target=deadline, name="stop-deadline", daemon=True).start()

    def schedule_shutdown(sig: signal.Signals) -> None:
        armed.set()
        original(sig)

    worker._schedule_shutdown = schedule_shutdown
    # A worker that stops by itself (a service crashed) is bounded the same way.
    original_stop = worker.stop

    async def stop() -> None:
        armed.set()
        await original_stop()

    worker.stop = stop
