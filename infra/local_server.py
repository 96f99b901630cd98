"""What the local provider look-alikes share (``infra.messagebird_local``,
``infra.bird_local``): a quiet threaded HTTP server in a daemon thread, a JSON handler that
answers in one write, start/stop, the messages accepted, injected failures and delays, and
the foreground ``main`` loop.

Injected faults, the same on both servers (each on the next ``n`` sends):

* ``fail_next(n, status)``: answered ``status``, nothing accepted;
* ``delay_next(n, s)``: accepted, then answered ``s`` seconds late (a client that timed out
  has had its SMS sent);
* ``reset_next(n)``: accepted, then the connection reset without an answer (a provider that
  accepts and resets);
* ``accept_then_fail_next(n, status)``: accepted, then answered ``status`` (a proxy's 504
  after the provider took the message);
* ``close_next(n)``: the connection closed as the request arrives, nothing accepted (a
  server closing an idle keep-alive connection).

A subclass of ``LocalServer`` names its ``handler`` and ``label``, says how its
``endpoint`` is written, and accepts messages into ``_messages`` under ``_cond``. It never
logs a phone number.
"""

from __future__ import annotations

import copy
import json
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog (5) resets connections when many clients connect at
    # once (a worker's pool of sending threads opening their connections together).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: Any,
                 handler: type[BaseHTTPRequestHandler]) -> None:
        self.owner = owner
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002
        # Quiet: clients that time out and hang up are part of the tests.
        return

    def close_open_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.open_connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients with a Session reuse connections
    timeout = 30  # idle keep-alive connections do not hold a thread forever
    content_type = "application/json"
    server: QuietServer

    def setup(self) -> None:
        super().setup()
        # Answers go out in one write (send_json); no Nagle wait on what follows either.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.open_connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return  # quiet

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        # Status line, headers and body in ONE write. Written apart (end_headers, then the
        # body), the body waited for the client's delayed ACK of the headers (Nagle): 40 ms
        # per request, which made the server, not the client, the ceiling of the sends
        # benchmark (about 22 sends/s per connection).
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(data)
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []

    def drop_connection(self, reset: bool) -> None:
        """Close the connection without an answer: a TCP reset (``reset``) or a clean
        close."""
        self.close_connection = True
        if reset:  # SO_LINGER 0: close() sends RST, not FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        else:
            self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()

    def answer_injected(self, status: int) -> None:
        """An injected failure (``fail_next``): the provider's error JSON, with
        ``Retry-After: 1`` for a 429 or a 503 as a rate limiter or an overloaded server
        says it."""
        headers = {"Retry-After": "1"} if status in (429, 503) else None
        self.send_json(status, self.server.owner.error_body(status), headers)

    def answer_accepted(self, fault: str | int | None, status: int, payload: Any,
                        headers: dict[str, str] | None = None) -> None:
        """Send what the provider answered for a request it took, unless ``fault`` (from
        ``LocalServer._take_answer_fault``) says otherwise: ``"reset"`` drops the
        connection, a status answers that status instead (the message stays accepted)."""
        if fault == "reset":
            self.drop_connection(reset=True)
        elif isinstance(fault, int):
            self.send_json(fault, self.server.owner.error_body(fault))
        else:
            self.send_json(status, payload, headers)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def authorized(self) -> bool:
        """``Authorization: AccessKey <the server's key>``, compared in constant time."""
        expected = "AccessKey " + self.server.owner.access_key
        given = self.headers.get("Authorization", "")
        return secrets.compare_digest(given.encode(), expected.encode())


class LocalServer:
    """A provider look-alike on a local port. Use as a context manager or
    ``start()``/``stop()``."""

    handler: ClassVar[type[JsonHandler]]
    label: ClassVar[str]  # the class's name in errors, e.g. "LocalBird"
    endpoint_suffix: ClassVar[str] = ""  # after http://host:port

    def __init__(self, host: str, port: int, access_key: str) -> None:
        self.host = host
        self.port = port
        self.access_key = access_key
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._endpoint: str | None = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._messages: list[dict[str, Any]] = []
        self._fail: list[int] = []  # one status per failing request to come
        self._delay: list[float] = []
        # One per request to come: "reset", "close", or a status answered after accepting.
        self._answer_faults: list[str | int] = []
        self._stopping = threading.Event()

    def _endpoint_for(self, host: str, port: int) -> str:
        shown = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):  # listening everywhere: reached on the loopback
            shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        return f"http://{shown}:{port}{self.endpoint_suffix}"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{self.label} is already running")
        self._stopping.clear()
        server = QuietServer((self.host, self.port), self, self.handler)
        host, port = server.server_address[:2]
        self._endpoint = self._endpoint_for(str(host), int(port))
        self._server = server
        name = "local-" + self.label.removeprefix("Local").lower()
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"{name}-{port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes delayed handlers
        server.shutdown()
        server.close_open_connections()  # keep-alive clients must see the server gone
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The base URL; still answers after ``stop()`` (the last address), so tests can aim
        at a dead port."""
        if self._endpoint is None:
            raise RuntimeError(f"{self.label} has not been started")
        return self._endpoint

    # -- inspection and fault injection -------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Copy of the accepted messages, in order."""
        with self._lock:
            return copy.deepcopy(self._messages)

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` sends answer ``status`` with the provider's error JSON."""
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (4xx or 5xx)")
        with self._lock:
            self._fail.extend([status] * n)

    def delay_next(self, n: int, seconds: float) -> None:
        """The next ``n`` sends wait ``seconds`` before answering (accepted first)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            self._delay.extend([float(seconds)] * n)

    def reset_next(self, n: int) -> None:
        """The next ``n`` sends are accepted, then the connection is reset (no answer)."""
        with self._lock:
            self._answer_faults.extend(["reset"] * n)

    def close_next(self, n: int) -> None:
        """The next ``n`` sends are not accepted: the connection is closed at once."""
        with self._lock:
            self._answer_faults.extend(["close"] * n)

    def accept_then_fail_next(self, n: int, status: int = 504) -> None:
        """The next ``n`` sends are accepted, then answered ``status`` (e.g. a proxy's 504
        after the provider took the message)."""
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (4xx or 5xx)")
        with self._lock:
            self._answer_faults.extend([status] * n)

    def clear_faults(self) -> None:
        """Forget pending faults (keep the accepted messages)."""
        with self._lock:
            self._fail.clear()
            self._delay.clear()
            self._answer_faults.clear()

    def error_body(self, status: int) -> Any:
        """The provider's error JSON for an injected ``status`` (each server its own)."""
        return {"error": f"HTTP {status}"}

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` messages were accepted; return them all."""
        self._wait_until(lambda: len(self._messages) >= count, timeout, lambda: (
            f"expected {count} message(s), got {len(self._messages)} within {timeout:g} s"))
        return self.messages

    def _wait_until(self, done: Any, timeout: float, failure: Any) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(failure())
                self._cond.wait(remaining)

    # -- used by the handler ------------------------------------------------------------

    def _take_faults(self) -> tuple[float, int | None]:
        with self._lock:
            delay = self._delay.pop(0) if self._delay else 0.0
            fail = self._fail.pop(0) if self._fail else None
        return delay, fail

    def _take_answer_fault(self) -> str | int | None:
        with self._lock:
            return self._answer_faults.pop(0) if self._answer_faults else None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_in_foreground(server: LocalServer, started: str) -> None:
    """Say ``started``, then serve until Ctrl-C or SIGTERM; stop the server."""
    print(started, flush=True)
    try:
        signal.signal(signal.SIGTERM, _interrupt)  # stop cleanly under `kill` too
    except ValueError:  # not the main thread
        pass
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"{server.label} stopped", file=sys.stderr, flush=True)
