"""A local HTTP server that speaks Bird's Channels API, and sends Bird's webhook events.

For tests and trials without a Bird account: point antirelou at it with
``BIRD_ENDPOINT=http://127.0.0.1:8090`` and the access key it was started with::

    antirelou fake-bird --events-url http://127.0.0.1:6066/webhooks/bird \\
        --signing-key <BIRD_SIGNING_KEY>        # or python -m infra.bird_local

What it implements (stdlib HTTP server in a daemon thread, like ``infra.messagebird_local``):

* ``POST /workspaces/{workspaceId}/channels/{channelId}/messages`` authenticated with
  ``Authorization: AccessKey <key>``: checks the body as Bird documents it
  (``receiver.contacts[].identifierValue``, ``body.type`` ``text``) and answers ``202`` with
  the message (``id``, ``status`` ``accepted``, ``reference``). 401 for a wrong key, 404 for
  another workspace, 422 for a malformed body, Bird's error JSON (``code``, ``message``).
* ``Idempotency-Key`` as Bird documents it (bird.com/docs, "Idempotency"; see
  ``infra.bird_gateway``): any non-empty string up to 255 characters (else 400
  ``InvalidRequest``); the same key with the same request (method, path, body) replays the
  original status and body with ``Idempotency-Replay: true``; the same key with another
  request is ``409`` ``IdempotencyKeyReuse``; while the first is still being processed,
  ``409`` ``RequestInProgress``; 2xx and 4xx answers are kept ``idempotency_ttl_s`` (3 hours),
  a 5xx is not. ``sends`` lists every send request: its key, its reference and what
  became of it (``accepted``, ``replayed``, ``in_progress``, ``key_reused``, ``refused``...).
* Status events: with ``events_url`` and ``status_delay_s`` set, each accepted message gets
  ``sms.outbound`` events ``sent`` then ``delivered`` that long after, signed like Bird's,
  the second with a ``price`` (parts x ``status_price``, default ``price_per_part``).
* ``send_inbound(sender, text, channel=...)``: an ``sms.inbound`` event as Bird would POST
  it, signed with ``signing_key`` (or forged / stale / replayed on request, for tests).

Failure injection (``infra.local_server``, the same as the classic server's): ``fail_next``
(nothing accepted), ``delay_next`` (accepted *before* the wait: a client that times out has
had its SMS sent), ``reset_next`` (accepted, then reset), ``accept_then_fail_next`` (accepted,
then a 5xx such as a proxy's 504), ``close_next`` (closed, nothing accepted). A fault on the
way back does not undo what Bird stored: the key's answer is the one Bird gave.
It never logs a phone number.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from infra.bird_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_bird
from infra.local_server import JsonHandler, LocalServer, serve_in_foreground

if TYPE_CHECKING:  # requests only where events are sent: `antirelou` builds its parser
    import requests  # from this module, and every command would pay for the import

__all__ = ["LocalBird", "main"]


def _iso(at: float | None = None) -> str:
    stamp = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotency-Replay"
MAX_KEY_CHARS = 255


class _Handler(JsonHandler):
    server_version = "LocalBird/1.0"

    def do_POST(self) -> None:  # noqa: N802
        raw = self.read_body()
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) != 5 or parts[0] != "workspaces" or parts[2] != "channels" \
                or parts[4] != "messages":
            self.send_json(404, _error("NotFound", "resource not found"))
            return
        owner = self.server.owner
        key = self.headers.get(IDEMPOTENCY_HEADER)
        fault = owner._take_answer_fault()
        if fault == "close":  # nothing accepted
            owner._attempt(key, None, "closed")
            self.drop_connection(reset=False)
            return
        delay, fail = owner._take_faults()
        if fail is not None:
            owner._sleep(delay)
            owner._attempt(key, None, f"refused {fail}")
            self.answer_injected(fail)
            return
        if not self.authorized():
            self.send_json(401, _error("Unauthorized", "invalid access key"))
            return
        if parts[1] != owner.workspace_id:
            self.send_json(404, _error("NotFound", "workspace not found"))
            return
        if key is not None and not 0 < len(key) <= MAX_KEY_CHARS:
            owner._attempt(key, None, "bad_key")
            self.send_json(400, _error("InvalidRequest", "Idempotency-Key must be 1 to "
                                       f"{MAX_KEY_CHARS} characters"))
            return
        fingerprint = ("POST", self.path, raw)
        verdict, kept = owner._key_begin(key, fingerprint)
        if verdict == "in_progress":
            owner._attempt(key, None, "in_progress")
            self.send_json(409, _error("RequestInProgress", "a request with this "
                                       "Idempotency-Key is still being processed"))
            return
        if verdict == "reused":
            owner._attempt(key, None, "key_reused")
            self.send_json(409, _error("IdempotencyKeyReuse", "this Idempotency-Key was "
                                       "used with another request"))
            return
        if verdict == "replay":
            status, answer = kept
            owner._attempt(key, answer.get("reference"), "replayed")
            self.answer_accepted(fault, status, answer, {REPLAY_HEADER: "true"})
            return
        try:
            body = json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError):
            status, answer = 400, _error("InvalidPayload", "body is not valid JSON")
        else:
            status, answer = owner._accept(parts[3], body, key)
        owner._sleep(delay)  # still in flight meanwhile: the same key answers 409
        owner._key_end(key, status, answer)
        owner._attempt(key, answer.get("reference"), "accepted" if status == 202
                       else f"answered {status}")
        self.answer_accepted(fault, status, answer)

    def do_GET(self) -> None:  # noqa: N802
        self.send_json(405, _error("MethodNotAllowed", "method not allowed"))


class LocalBird(LocalServer):
    """A Bird Channels API look-alike on a local port (context manager or start/stop)."""

    handler = _Handler
    label = "LocalBird"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, access_key: str = "bird_key",
                 workspace_id: str = "ws-local", signing_key: str | None = None,
                 events_url: str | None = None, status_delay_s: float | None = None,
                 price_per_part: str = "0.08", status_price: str | None = None,
                 currency: str = "EUR", idempotency_ttl_s: float = 3 * 3600.0) -> None:
        super().__init__(host, port, access_key)
        self.workspace_id = workspace_id
        self.signing_key = signing_key
        self.events_url = events_url
        self.status_delay_s = status_delay_s
        self.price_per_part = Decimal(price_per_part)
        self.status_price = Decimal(status_price) if status_price is not None else None
        self.currency = currency
        self.events: list[tuple[str, int | str]] = []  # (event id, HTTP status) sent
        self.idempotency_ttl_s = idempotency_ttl_s
        # Idempotency-Key -> (request fingerprint, None while in flight else (status,
        # answer), when it was stored)
        self._keys: dict[str, tuple[Any, tuple[int, Any] | None, float]] = {}
        self.sends: list[dict[str, Any]] = []  # every send request and what became of it

    # -- inspection (messages, fail_next, delay_next, wait_for_messages: LocalServer) ----

    def wait_for_events(self, count: int, timeout: float = 10.0) -> list[tuple[str, int | str]]:
        self._wait_until(lambda: len(self.events) >= count, timeout,
                         lambda: f"expected {count} event(s), got {len(self.events)}")
        with self._lock:
            return list(self.events)

    def accepted_per_reference(self) -> dict[str | None, int]:
        """How many messages were accepted for each reference (each reply's)."""
        counts: dict[str | None, int] = {}
        for m in self.messages:
            counts[m["reference"]] = counts.get(m["reference"], 0) + 1
        return counts

    def reset(self) -> None:
        self.clear_faults()
        with self._cond:
            self._messages.clear()
            self.events.clear()
            self._keys.clear()
            self.sends.clear()

    def error_body(self, status: int) -> dict[str, Any]:
        return _error("Injected", f"injected HTTP {status}")

    # -- webhook events (Bird -> antirelou) -----------------------------------------------

    def post_event(self, event: str, payload: dict[str, Any], *, url: str | None = None,
                   key: str | None = None, timestamp: int | None = None,
                   signature: str | None = None) -> requests.Response:
        """POST one event envelope, signed with ``key`` (default ``signing_key``; "" sends
        it unsigned), at ``timestamp`` (default now); ``signature`` overrides the header."""
        target = url or self.events_url
        if target is None:
            raise ValueError("no events_url to send the event to")
        raw = json.dumps({"service": "channels", "event": event, "payload": payload},
                         separators=(",", ":")).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp}
        key = self.signing_key if key is None else key
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        elif key:
            headers[SIGNATURE_HEADER] = sign_bird(key, stamp, target, raw)
        import requests

        response = requests.post(target, data=raw, headers=headers, timeout=30)
        response.raw_body = raw  # type: ignore[attr-defined]
        response.sent_headers = headers  # type: ignore[attr-defined]
        return response

    def inbound_payload(self, sender: str, text: str, channel_id: str,
                        message_id: str | None = None) -> dict[str, Any]:
        """An incoming SMS as Bird shows it ("Receiving messages")."""
        now = _iso()
        return {
            "id": message_id or str(uuid.uuid4()), "channelId": channel_id,
            "sender": {"contact": {"id": str(uuid.uuid4()), "identifierKey": "phonenumber",
                                   "identifierValue": "+" + sender.lstrip("+")}},
            "receiver": {"connector": {"id": str(uuid.uuid4())}},
            "body": {"type": "text", "text": {"text": text}},
            "parts": [{"platformReference": secrets.token_hex(16)}],
            "status": "delivered", "direction": "incoming",
            "lastStatusAt": now, "createdAt": now, "updatedAt": now,
        }

    def send_inbound(self, sender: str, text: str, channel_id: str, *,
                     message_id: str | None = None, **sign: Any) -> requests.Response:
        """An ``sms.inbound`` event to ``events_url`` (see ``post_event`` for ``sign``)."""
        payload = self.inbound_payload(sender, text, channel_id, message_id)
        response = self.post_event("sms.inbound", payload, **sign)
        response.message_id = payload["id"]  # type: ignore[attr-defined]
        return response

    def status_payload(self, message: dict[str, Any], status: str,
                       price: Decimal | None = None) -> dict[str, Any]:
        payload = {
            "id": message["id"], "channelId": message["channel_id"],
            "receiver": {"contacts": [{"identifierKey": "phonenumber",
                                       "identifierValue": "+" + message["recipient"]}]},
            "reference": message["reference"], "status": status, "direction": "outgoing",
            "lastStatusAt": _iso(), "createdAt": message["created_at"],
        }
        if price is not None:
            payload["price"] = {"amount": float(price), "currency": self.currency}
        return payload

    # -- used by the handler --------------------------------------------------------------

    def _attempt(self, key: str | None, reference: str | None, result: str) -> None:
        with self._cond:
            self.sends.append({"idempotency_key": key, "reference": reference,
                                  "result": result})
            self._cond.notify_all()

    def _key_begin(self, key: str | None, fingerprint: Any) -> tuple[str, Any]:
        """``("new", None)`` (now in flight), ``("replay", (status, answer))``,
        ``("in_progress", None)`` or ``("reused", None)`` for a request with ``key``."""
        if key is None:
            return "new", None
        now = time.monotonic()
        with self._lock:
            for old in [k for k, (_, done, at) in self._keys.items()
                        if done is not None and now - at > self.idempotency_ttl_s]:
                del self._keys[old]
            kept = self._keys.get(key)
            if kept is None:
                self._keys[key] = (fingerprint, None, now)
                return "new", None
            if kept[0] != fingerprint:
                return "reused", None
            if kept[1] is None:
                return "in_progress", None
            return "replay", kept[1]

    def _key_end(self, key: str | None, status: int, answer: Any) -> None:
        if key is None:
            return
        with self._lock:
            if status >= 500:  # not cached: the key is free again
                self._keys.pop(key, None)
            else:
                fingerprint = self._keys[key][0]
                self._keys[key] = (fingerprint, (status, answer), time.monotonic())

    def _accept(self, channel_id: str, body: Any,
                key: str | None = None) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            return 422, _error("InvalidPayload", "body must be an object")
        contacts = (body.get("receiver") or {}).get("contacts") if isinstance(
            body.get("receiver"), dict) else None
        number = contacts[0].get("identifierValue") if isinstance(contacts, list) and contacts \
            and isinstance(contacts[0], dict) else None
        if not isinstance(number, str) or not number.startswith("+") \
                or not number[1:].isdigit() or not 6 <= len(number) - 1 <= 15:
            return 422, _error("InvalidPayload", "receiver.contacts[0].identifierValue must be "
                               "an E.164 number")
        content = body.get("body")
        text = content.get("text", {}).get("text") if isinstance(content, dict) \
            and content.get("type") == "text" and isinstance(content.get("text"), dict) else None
        if not isinstance(text, str) or not text:
            return 422, _error("InvalidPayload", "body.text.text is required")
        reference = body.get("reference")
        if reference is not None and not isinstance(reference, str):
            return 422, _error("InvalidPayload", "reference must be a string")
        from infra.messagebird_local import message_parts

        parts, _ = message_parts(text, "auto")
        message = {"id": str(uuid.uuid4()), "channel_id": channel_id,
                   "recipient": number[1:], "text": text, "reference": reference,
                   "parts": parts, "created_at": _iso(), "body": body,
                   "idempotency_key": key}
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()
        if self.events_url and self.status_delay_s is not None and reference:
            threading.Thread(target=self._statuses, args=(message,), daemon=True).start()
        return 202, {"id": message["id"], "channelId": channel_id, "status": "accepted",
                     "reference": reference, "receiver": body["receiver"],
                     "body": content, "direction": "outgoing",
                     "createdAt": message["created_at"], "updatedAt": message["created_at"]}

    def _statuses(self, message: dict[str, Any]) -> None:
        per_part = self.status_price if self.status_price is not None else self.price_per_part
        for status, price in (("sent", None), ("delivered", per_part * message["parts"])):
            self._sleep(self.status_delay_s or 0.0)
            if self._stopping.is_set():
                return
            payload = self.status_payload(message, status, price)
            try:
                result: int | str = self.post_event("sms.outbound", payload).status_code
            except OSError as exc:  # requests' errors are OSErrors
                result = type(exc).__name__
            with self._cond:
                self.events.append((f"sms.outbound:{message['id']}:{status}", result))
                self._cond.notify_all()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m infra.bird_local`` and ``antirelou fake-bird``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on")
    parser.add_argument("--access-key", default="bird_key",
                        help="the access key it accepts (BIRD_ACCESS_KEY)")
    parser.add_argument("--workspace", default="your-bird-workspace-id",
                        help="the workspace id it serves (the campaign file's [bird] "
                        "workspace_id)")
    parser.add_argument("--signing-key", default=None,
                        help="signs the status events it sends (BIRD_SIGNING_KEY); unsigned "
                        "without it")
    parser.add_argument("--events-url", default=None,
                        help="where to POST status events (antirelou's /webhooks/bird)")
    parser.add_argument("--status-delay", type=float, default=1.0,
                        help="seconds from a send to its 'sent' event, and to 'delivered'")


def serve(args: argparse.Namespace) -> None:
    """Run a LocalBird in the foreground until Ctrl-C."""
    server = LocalBird(host=args.host, port=args.port, access_key=args.access_key,
                       workspace_id=args.workspace, signing_key=args.signing_key,
                       events_url=args.events_url,
                       status_delay_s=args.status_delay if args.events_url else None).start()
    serve_in_foreground(server, (
        f"LocalBird listening on {server.endpoint}; point antirelou at it with "
        f"BIRD_ENDPOINT={server.endpoint} BIRD_ACCESS_KEY={args.access_key} "
        f"(workspace {args.workspace}; Ctrl-C to stop)"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.bird_local",
                                     description="Local Bird Channels API look-alike.")
    add_arguments(parser)
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
