"""Embedded Kafka-protocol broker for tests and local runs, plus topic helpers.

There is no Apache Kafka in this environment. The ``noida-db`` PyPI package ships a
small single-node broker that speaks the Kafka wire protocol; :class:`EmbeddedBroker`
runs it as a child process (``noida-db start --only kafka --kafka-port PORT
--data-dir DIR``, in its own process group, output going to a log file) and blocks
until a real Kafka metadata request succeeds::

    with EmbeddedBroker(tmp_path / "kafka") as broker:        # port 0 = pick a free one
        ensure_topics(broker.bootstrap_servers, {"sms.in": 4})
        ...                                                     # aiokafka / Faust clients
        broker.stop(); broker.start()                           # same port, same data

Reaching Kafka and creating topics (:func:`ensure_topics`, :func:`wait_for_kafka`,
:func:`broker_count`) live in infra/kafka_admin.py, re-exported here; the supervision of
``up``'s broker (restarts, pid file, bounded stop) in infra/supervisor.py.

What was checked against noida-db 0.2.3 (aiokafka 0.14.0):

* Data survives a clean stop: 100 keyed messages produced with ``acks="all"`` over 4
  partitions are all read back after SIGTERM + start on the same data dir (also on the
  same port right away): SIGTERM writes a final snapshot (usually < 0.1 s, up to ~2 s
  with clients connected) and removes ``noida.control.json``.
* Persistence is a whole-state JSON snapshot (``DATA_DIR/kafka.json``, replaced
  atomically) written about once a second while there are changes. A SIGKILL
  (:meth:`EmbeddedBroker.kill`) therefore loses the writes acknowledged since the last
  snapshot (up to ~1 s; a message produced just before SIGKILL was lost 5 times out of
  5) -- ``acks="all"`` means "in memory" here, not "on disk". Fault tests that kill the
  broker must allow for that (or wait > 1 s before killing). A stale control file left
  by SIGKILL does not block the next start.
* A second instance on the same data dir refuses to start ("already running for
  DIR"); a busy port makes it exit at once with "port N is already in use". Both are
  reported as :class:`BrokerError`. The binary prints a harmless ``GLIBC_2.39``
  warning on stderr, which is left out of error messages.
* The ``.venv/bin/noida-db`` entry point is a Python wrapper that runs the real binary
  with ``subprocess.call`` and does not forward signals, so this module starts the
  real binary from the ``noida_db`` package directly when it can, and signals the
  whole process group in any case.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Reaching Kafka and creating topics: re-exported, the rest of the code imports them here.
from infra.kafka_admin import (
    BrokerError,
    broker_count,
    broker_count_async,
    default_replication,
    ensure_topics,
    ensure_topics_async,
    wait_for_kafka,
    wait_for_kafka_async,
)
from infra.statedir import PRIVATE_FILE, PRIVATE_UMASK, make_private

__all__ = [
    "BrokerError",
    "EmbeddedBroker",
    "broker_count",
    "broker_count_async",
    "default_replication",
    "ensure_topics",
    "ensure_topics_async",
    "find_noida_binary",
    "wait_for_kafka",
    "wait_for_kafka_async",
]

_BINARY_NAME = "noida-db.exe" if os.name == "nt" else "noida-db"
_HARMLESS_LOG_LINES = ("weak version `GLIBC_",)
_LOG_TAIL_LINES = 15


# --------------------------------------------------------------------------- helpers


def find_noida_binary() -> Path:
    """Return the noida-db executable to run.

    Prefers the real binary inside the installed ``noida_db`` package (the console
    script is a Python wrapper that does not forward signals to it), then
    ``noida-db`` on ``PATH``, then the one next to ``sys.executable``.
    """
    candidates: list[Path] = []
    with contextlib.suppress(Exception):
        from importlib.resources import files

        candidates.append(Path(str(files("noida_db").joinpath(_BINARY_NAME))))
    found = shutil.which("noida-db")
    if found:
        candidates.append(Path(found))
    candidates.append(Path(sys.executable).parent / _BINARY_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BrokerError(
        "noida-db binary not found (looked in the noida_db package, on PATH and next to "
        f"{sys.executable}); install it with `pip install noida-db`"
    )


def _pick_free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_in_use(host: str, port: int) -> bool:
    """True if something is listening on host:port (SO_REUSEADDR ignores TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
        return False


def _tcp_open(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------ EmbeddedBroker

_live_brokers: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


@atexit.register
def _stop_live_brokers() -> None:  # pragma: no cover - interpreter shutdown
    for broker in list(_live_brokers):
        with contextlib.suppress(Exception):
            broker.stop(timeout=5.0)


class EmbeddedBroker:
    """Starts noida-db's Kafka broker as a child process; data in data_dir survives restarts.

    ``port=0`` picks a free port on the first :meth:`start`; later restarts reuse it so
    ``bootstrap_servers`` stays valid. The process runs in its own process group with
    stdout and stderr appended to ``log_path`` (default ``data_dir / "broker.log"``).
    Brokers still running when the interpreter exits are stopped by an atexit hook.
    """

    def __init__(
        self,
        data_dir: str | Path,
        port: int = 0,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        *,
        binary: str | Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        if not 0 <= int(port) <= 65535:
            raise BrokerError(f"invalid port {port!r}")
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.log_path = Path(log_path) if log_path is not None else self.data_dir / "broker.log"
        self._binary = Path(binary) if binary is not None else None
        # Linux: the broker gets SIGTERM when the thread that started it dies (kill -9 of
        # the process included), so it never outlives its owner (infra/supervisor.py).
        self._preexec = _parent_death_signal(signal.SIGTERM) if die_with_parent else None
        self._auto_port = int(port) == 0
        self._port: int | None = None if self._auto_port else int(port)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._ever_started = False

    # ---------------------------------------------------------------- properties

    @property
    def port(self) -> int:
        """The Kafka port (picked on first start when constructed with ``port=0``)."""
        if self._port is None:
            self._port = _pick_free_port(self.host)
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running broker process, or None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<EmbeddedBroker {self.host}:{self._port or '?'} {self.data_dir} {state}>"

    # --------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        """Start the broker and wait until it answers Kafka metadata requests."""
        if self.running:
            return self
        self._proc = None
        binary = self._resolve_binary()
        # Its data holds every topic (bodies, sealed numbers): private, and the broker
        # started with umask 077 so the files it writes later are too (infra/statedir.py).
        make_private(self.data_dir, tree=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        # An auto-picked port can be grabbed by someone else between picking and
        # binding; retry with a new one, but only before the first successful start
        # (afterwards clients hold bootstrap_servers and the port must stay the same).
        attempts = 3 if (self._auto_port and not self._ever_started) else 1
        for attempt in range(attempts):
            try:
                self._start_once(binary, deadline, timeout)
            except _PortBusy as exc:
                if attempt + 1 < attempts:
                    self._port = _pick_free_port(self.host)
                    continue
                raise BrokerError(str(exc)) from None
            self._ever_started = True
            _live_brokers.add(self)
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _resolve_binary(self) -> Path:
        if self._binary is None:
            return find_noida_binary()
        if not self._binary.is_file():
            raise BrokerError(f"noida-db binary not found at {self._binary}")
        if not os.access(self._binary, os.X_OK):
            raise BrokerError(f"noida-db binary at {self._binary} is not executable")
        return self._binary

    def _start_once(self, binary: Path, deadline: float, timeout: float) -> None:
        port = self.port
        if _port_in_use(self.host, port):
            raise _PortBusy(
                f"cannot start noida-db: port {port} on {self.host} is already in use "
                "(another broker or service is listening there)"
            )
        cmd = [
            str(binary), "start", "--only", "kafka",
            "--host", self.host, "--kafka-port", str(port),
            "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
        with open(fd, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: signal it as a whole
                    close_fds=True,
                    preexec_fn=self._preexec,
                    umask=PRIVATE_UMASK,
                )
            except OSError as exc:
                raise BrokerError(f"cannot run noida-db binary {binary}: {exc}") from exc

        while True:
            rc = self._proc.poll()
            if rc is not None:
                self._proc = None
                tail = self._log_tail()
                if "already in use" in tail:
                    raise _PortBusy(
                        f"cannot start noida-db: port {port} on {self.host} is already in "
                        f"use. Log {self.log_path}:\n{tail}"
                    )
                if "already running" in tail:
                    raise BrokerError(
                        f"noida-db is already running for data dir {self.data_dir} (another "
                        f"EmbeddedBroker or `noida-db up` uses it). Log {self.log_path}:\n{tail}"
                    )
                raise BrokerError(
                    f"noida-db exited with code {rc} during startup. Log {self.log_path}:\n{tail}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._terminate_group(grace=2.0)
                raise BrokerError(
                    f"noida-db did not come up on {self.bootstrap_servers} within "
                    f"{timeout:g} s. Log {self.log_path}:\n{self._log_tail()}"
                )
            if _tcp_open(self.host, port, timeout=min(0.5, remaining)):
                try:
                    wait_for_kafka(self.bootstrap_servers, timeout=min(5.0, remaining))
                except BrokerError:
                    pass
                else:
                    if self._proc.poll() is None:
                        return
                    continue  # it exited meanwhile: report via the branch above
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM, lets it write its data), SIGKILL after ``timeout``."""
        if self._proc is None:
            return
        self._terminate_group(grace=timeout)

    def kill(self) -> None:
        """SIGKILL the broker at once (no final snapshot: ~1 s of writes may be lost)."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._proc.wait()
        self._wait_group_gone(5.0, escalate=True)
        self._proc = None
        _live_brokers.discard(self)

    def restart(self, timeout: float = 30.0) -> EmbeddedBroker:
        """Graceful stop followed by start on the same port and data dir."""
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -------------------------------------------------------------- internals

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)  # pgid == pid (start_new_session)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def _terminate_group(self, grace: float) -> None:
        proc = self._proc
        assert proc is not None
        if proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait()
        self._wait_group_gone(grace, escalate=True)
        self._proc = None
        _live_brokers.discard(self)

    def _wait_group_gone(self, timeout: float, *, escalate: bool) -> None:
        """Wait for other members of the group (e.g. the real binary behind a wrapper)."""
        assert self._proc is not None
        pgid = self._proc.pid
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            if time.monotonic() >= deadline:
                if escalate:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pgid, signal.SIGKILL)
                return
            time.sleep(0.05)

    def _log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                text = fh.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"  (log unreadable: {exc})"
        kept = [
            line
            for line in text.splitlines()
            if line.strip() and not any(h in line for h in _HARMLESS_LOG_LINES)
        ]
        return "\n".join(f"  {line}" for line in kept[-lines:]) or "  (log is empty)"


class _PortBusy(BrokerError):
    pass


_PR_SET_PDEATHSIG = 1


def _parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec function that asks Linux to send ``sig`` to the child when the thread that
    forked it dies; None where prctl is unavailable. The libc function is looked up here, in
    the parent: between fork and exec the child only calls it (no import, no allocation)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    getppid, kill, signum, pid_of = os.getppid, os.kill, int(sig), os.getpid

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if getppid() != parent:  # the parent died before prctl took effect
            kill(pid_of(), signum)

    return preexec
