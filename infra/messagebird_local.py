"""A local HTTP server that speaks the MessageBird REST format.

For tests, benchmarks and anyone who wants to try antirelou offline: point the gateway at
it with ``MESSAGEBIRD_ENDPOINT=http://127.0.0.1:8089/`` and any access key it was started
with, and the real ``messagebird`` client talks to it as it would to
``https://rest.messagebird.com/``.

What it implements (stdlib only, ``http.server.ThreadingHTTPServer`` in a daemon thread):

* ``POST /messages`` (JSON, or form-encoded like the real API accepts), authenticated with
  ``Authorization: AccessKey <key>``. Answers 201 with a message object in MessageBird's
  shape, including ``recipients.items[*].price`` and ``messagePartCount`` computed from the
  body (GSM-7 160/153 septets per part, extension characters count 2; UCS-2 70/67 code
  units per part). ``datacoding`` follows the real API: ``plain`` (the default when
  absent), ``unicode`` or ``auto`` (UCS-2 only if a character is outside GSM-7). With
  ``plain`` a non-GSM character is counted as one septet (MessageBird substitutes it).
* ``GET /messages/<id>``: a message accepted earlier.
* ``GET /balance``.
* Anything else: a MessageBird error JSON (404 for unknown paths, 405 for a known path with
  the wrong method).

Fault injection (``infra.local_server``, the same on both local servers): ``fail_next``,
``delay_next``, ``reset_next``, ``accept_then_fail_next``, ``close_next``. A delayed,
reset or failed-after-accepting message is accepted (recorded) *before* the fault, as
happens with a slow provider or a proxy in front of it: a client that gives up has
nonetheless had its SMS sent.

The server is quiet: it logs nothing and prints no tracebacks for clients that hang up.
It never logs or raises with a phone number in the text.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from infra.local_server import JsonHandler, LocalServer, serve_in_foreground
from schemas.segments import GSM7, GSM7_BASIC, GSM7_EXTENSION, UCS2, segment_info, segments_as

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "LocalMessageBird",
    "is_gsm7",
    "main",
    "message_parts",
]


def is_gsm7(text: str) -> bool:
    """True if every character of ``text`` is in the GSM-7 basic or extension table."""
    return not segment_info(text).offending


def message_parts(body: str, datacoding: str = "auto") -> tuple[int, str]:
    """Return ``(parts, effective_datacoding)`` for an SMS body, as MessageBird counts them.

    ``datacoding`` is MessageBird's parameter: ``plain``, ``unicode`` or ``auto``.
    The effective one is ``"plain"`` (GSM-7) or ``"unicode"`` (UCS-2). The counting is the
    decision core's (``schemas.segments``), so what we charge and what the server bills agree.
    """
    if datacoding == "unicode" or (datacoding != "plain" and not is_gsm7(body)):
        return max(1, segments_as(body, UCS2)), "unicode"
    return max(1, segments_as(body, GSM7)), "plain"


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _error_body(code: int, description: str, parameter: str | None = None) -> dict[str, Any]:
    return {"errors": [{"code": code, "description": description, "parameter": parameter}]}


_UNAUTHORIZED = _error_body(2, "Request not allowed (incorrect access_key)", "access_key")


class _Handler(JsonHandler):
    server_version = "LocalMessageBird/1.0"
    content_type = "application/json; charset=utf-8"

    def _path(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    # -- routing ------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        body = self.read_body()  # always drain, so keep-alive stays in sync
        if self._path() == "/messages":
            self._post_messages(body)
        elif self._path() == "/balance" or self._path().startswith("/messages/"):
            self.send_json(405, _error_body(3, "method not allowed"))
        else:
            self.send_json(404, _error_body(20, "resource not found"))

    def do_GET(self) -> None:  # noqa: N802
        path = self._path()
        if path == "/balance":
            if not self.authorized():
                self.send_json(401, _UNAUTHORIZED)
                return
            self.send_json(200, {"payment": "prepaid", "type": "euros", "amount": 100.0})
        elif path.startswith("/messages/") and path.count("/") == 2:
            if not self.authorized():
                self.send_json(401, _UNAUTHORIZED)
                return
            found = self.server.owner._response_for(path.rsplit("/", 1)[1])
            if found is None:
                self.send_json(404, _error_body(20, "message not found", "id"))
            else:
                self.send_json(200, found)
        elif path == "/messages":
            self.send_json(405, _error_body(3, "method not allowed"))
        else:
            self.send_json(404, _error_body(20, "resource not found"))

    def _other(self) -> None:
        self.read_body()
        self.send_json(404, _error_body(20, "resource not found"))

    do_PUT = do_PATCH = do_DELETE = _other  # noqa: N815

    # -- POST /messages -----------------------------------------------------------------

    def _post_messages(self, raw: bytes) -> None:
        owner = self.server.owner
        fault = owner._take_answer_fault()
        if fault == "close":  # nothing accepted
            self.drop_connection(reset=False)
            return
        delay, fail_status = owner._take_faults()
        if fail_status is not None:
            owner._sleep(delay)
            self.answer_injected(fail_status)
            return
        if not self.authorized():
            owner._sleep(delay)
            self.send_json(401, _UNAUTHORIZED)
            return
        try:
            params = self._decode_params(raw)
        except ValueError:
            owner._sleep(delay)
            self.send_json(400, _error_body(2, "request body is not valid JSON"))
            return
        status, payload = owner._accept(params)
        owner._sleep(delay)
        self.answer_accepted(fault, status, payload)

    def _decode_params(self, raw: bytes) -> dict[str, Any]:
        ctype = self.headers.get("Content-Type", "")
        text = raw.decode("utf-8")
        if "application/x-www-form-urlencoded" in ctype:
            return {k: v[0] if len(v) == 1 else v for k, v in parse_qs(text).items()}
        if not text.strip():
            return {}
        params = json.loads(text)
        if not isinstance(params, dict):
            raise ValueError("JSON body is not an object")
        return params


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _parse_recipients(value: Any) -> list[str] | None:
    """Recipients as MessageBird accepts them: a comma-joined string, a list or a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        items = [str(value)]
    elif isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = [str(v) for v in value]
    else:
        return None
    cleaned = [item.strip().lstrip("+") for item in items if item.strip()]
    if not cleaned or not all(item.isdigit() and item.isascii() for item in cleaned):
        return None
    return cleaned


def _originator_ok(originator: str) -> bool:
    # MessageBird: a phone number (up to 17 digits, optional +) or up to 11 alphanumerics.
    digits = originator.lstrip("+")
    if digits.isdigit() and digits.isascii():
        return len(digits) <= 17
    return len(originator) <= 11 and all(
        c.isascii() and (c.isalnum() or c == " ") for c in originator
    )


def _problems(params: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str] | None]:
    """What MessageBird would refuse in a ``POST /messages`` (description, parameter), and
    the recipients parsed."""
    errors = []
    originator = params.get("originator")
    body = params.get("body")
    if not isinstance(originator, str) or not originator.strip():
        errors.append(("originator is required", "originator"))
    elif not _originator_ok(originator):
        errors.append(("originator is invalid", "originator"))
    if not isinstance(body, str) or body == "":
        errors.append(("body is required", "body"))
    if params.get("recipients") in (None, "", []):
        errors.append(("no (correct) recipients found", "recipient"))
        recipients = None
    else:
        recipients = _parse_recipients(params.get("recipients"))
        if recipients is None:
            errors.append(("no (correct) recipients found", "recipient"))
    reference = params.get("reference")
    if reference is not None and (not isinstance(reference, str) or len(reference) > 128):
        errors.append(("reference is invalid (at most 128 characters)", "reference"))
    datacoding = params.get("datacoding") or "plain"
    if datacoding not in ("plain", "unicode", "auto"):
        errors.append(("datacoding must be plain, unicode or auto", "datacoding"))
    return errors, recipients


class LocalMessageBird(LocalServer):
    """A MessageBird REST look-alike on a local port. Use as a context manager or
    ``start()``/``stop()``."""

    handler = _Handler
    label = "LocalMessageBird"
    endpoint_suffix = "/"  # urljoin(endpoint, "messages") works

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str = "test_key",
        price_per_part: str = "0.08",
        currency: str = "EUR",
        report_delay_s: float | None = None,
        signing_key: str | None = None,
        report_price: str | None = None,
    ) -> None:
        """``report_delay_s``: when set, each accepted message that carries a ``reportUrl``
        gets a delivery report (GET, status ``delivered``) that long after it was accepted,
        signed with ``signing_key`` when given; its price is ``report_price`` per part
        (default ``price_per_part``). ``reports`` lists the HTTP status of each report."""
        super().__init__(host, port, access_key)
        self.price_per_part = Decimal(str(price_per_part))
        self.currency = currency
        self._responses: dict[str, dict[str, Any]] = {}
        self.report_delay_s = report_delay_s
        self.signing_key = signing_key
        self.report_price = Decimal(report_price) if report_price is not None else None
        self.reports: list[int | str] = []  # HTTP status of each delivery report we sent

    # -- fault injection: LocalServer's ---------------------------------------------------

    def error_body(self, status: int) -> dict[str, Any]:
        return _error_body(99, _status_phrase(status))

    def reset(self) -> None:
        """Forget accepted messages and pending faults."""
        with self._lock:
            self._messages.clear()
            self._responses.clear()
        self.clear_faults()

    # -- used by the handler ------------------------------------------------------------

    def _response_for(self, message_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._responses.get(message_id)

    def _accept(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        errors, recipients = _problems(params)
        if errors:
            return 422, {
                "errors": [{"code": 9, "description": d, "parameter": p} for d, p in errors]
            }
        originator, body, reference = params["originator"], params["body"], params.get("reference")
        assert isinstance(body, str) and isinstance(originator, str) and recipients
        parts, effective = message_parts(body, params.get("datacoding") or "plain")
        message_id = secrets.token_hex(16)
        response = self._message_json(message_id, params, recipients, parts, effective)
        record = {
            "id": message_id,
            "originator": originator,
            "recipients": recipients,
            "body": body,
            "reference": reference,
            "params": params,
            "parts": parts,
            "datacoding": effective,
        }
        with self._cond:
            self._messages.append(record)
            self._responses[message_id] = response
            self._cond.notify_all()
        report_url = params.get("reportUrl")
        if self.report_delay_s is not None and isinstance(report_url, str) and reference:
            per_part = self.report_price if self.report_price is not None else self.price_per_part
            for r in recipients:
                threading.Thread(target=self._report, daemon=True, args=(report_url, {
                    "id": message_id, "reference": reference, "recipient": r,
                    "status": "delivered", "statusDatetime": _now_iso(),
                    "messagePartCount": parts, "price[amount]": str(per_part * parts),
                    "price[currency]": self.currency,
                })).start()
        return 201, response

    def _message_json(self, message_id: str, params: dict[str, Any], recipients: list[str],
                      parts: int, effective: str) -> dict[str, Any]:
        """The message object MessageBird answers with (price per recipient included)."""
        originator, body, reference = params["originator"], params["body"], params.get("reference")
        price = float(self.price_per_part * parts)
        now = _now_iso()
        return {
            "id": message_id,
            "href": f"{self._endpoint}messages/{message_id}",
            "direction": "mt",
            "type": "sms",
            "originator": originator,
            "body": body,
            "reference": reference,
            "validity": params.get("validity"),
            "gateway": 10,
            "typeDetails": params.get("typeDetails") or {},
            "datacoding": effective,
            "mclass": params.get("mclass", 1),
            "scheduledDatetime": params.get("scheduledDatetime"),
            "createdDatetime": now,
            "recipients": {
                "totalCount": len(recipients),
                "totalSentCount": len(recipients),
                "totalDeliveredCount": 0,
                "totalDeliveryFailedCount": 0,
                "items": [
                    {
                        "recipient": int(r),
                        # A scheduled message waits at MessageBird until its time.
                        "status": "scheduled" if params.get("scheduledDatetime") else "sent",
                        "statusDatetime": now,
                        "messagePartCount": parts,
                        "price": {"amount": price, "currency": self.currency},
                    }
                    for r in recipients
                ],
            },
        }

    def _report(self, report_url: str, fields: dict[str, Any]) -> None:
        self._sleep(self.report_delay_s or 0.0)
        if self._stopping.is_set():
            return
        url = report_url + ("&" if urlsplit(report_url).query else "?") + urlencode(fields)
        headers = {}
        if self.signing_key:
            from infra.mb_signature import sign_webhook

            headers["MessageBird-Signature-JWT"] = sign_webhook(url, b"", self.signing_key)
        try:
            status: int | str = requests.get(url, headers=headers, timeout=10).status_code
        except requests.RequestException as exc:
            status = type(exc).__name__
        with self._cond:
            self.reports.append(status)
            self._cond.notify_all()


def main(argv: list[str] | None = None) -> None:
    """Run a LocalMessageBird in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.messagebird_local",
        description="Local MessageBird REST look-alike (nothing is really sent).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--access-key", default="test_key")
    args = parser.parse_args(argv)
    server = LocalMessageBird(host=args.host, port=args.port, access_key=args.access_key).start()
    serve_in_foreground(server, (
        f"LocalMessageBird listening on {server.endpoint} ; point antirelou at it with "
        f"MESSAGEBIRD_ENDPOINT={server.endpoint} MESSAGEBIRD_ACCESS_KEY={args.access_key}"
        " (Ctrl-C to stop)"))


if __name__ == "__main__":
    main()
