"""The webhook of a real worker under hostile input: fuzzed callbacks (thousands) and every
kind of bad signature. A refused request is a JSON 4xx, never a 5xx, and leaves nothing on
the inbound topic or in the journal (only an unknown recipient is journaled, by design, as
``TextRejected``)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from urllib.parse import urlencode

import jwt
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.journal import end_offsets
from tests.e2e.conftest import NUMBERS, SIGNING_KEY, new_sender, of, sign
from tests.intake.test_messagebird_fuzz import requests_ as fuzzed_requests

pytestmark = pytest.mark.services

PATH = "/webhooks/messagebird/sms"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def offsets(worker, role: str) -> dict[int, int]:
    return asyncio.run(end_offsets(worker.kafka, f"{worker.app_id}.{role}"))


def written(before: dict[int, int], after: dict[int, int]) -> int:
    return sum(after.get(p, 0) - before.get(p, 0) for p in after)


def is_json_error(response: requests.Response) -> bool:
    body = response.json()  # raises if not JSON
    return isinstance(body.get("error"), str) and isinstance(body.get("message"), str)


def callback(sender: str, message_id: str | None = None, body: str = "t'es ou ?") -> bytes:
    return urlencode({"id": message_id or uuid.uuid4().hex, "originator": sender,
                      "recipient": NUMBERS["paris"], "body": body,
                      "createdDatetime": "2026-11-28T21:00:00+00:00"}).encode()


def claims_for(url: str, raw: bytes, **changes) -> dict:
    now = int(time.time())
    claims = {"iss": "MessageBird", "nbf": now, "exp": now + 60, "jti": uuid.uuid4().hex,
              "url_hash": hashlib.sha256(url.encode()).hexdigest(),
              "payload_hash": hashlib.sha256(raw).hexdigest(), **changes}
    return {k: v for k, v in claims.items() if v is not None}


def test_thousands_of_fuzzed_callbacks_get_json_4xx_and_write_nothing_half(worker):
    url = worker.url + PATH
    session = requests.Session()
    seen: dict[int, int] = {}
    accepted: list[str] = []
    unknown_recipient: list[str] = []
    inbound_before = offsets(worker, "sms-received")
    ids_before = {getattr(e, "message_id", None) for e in worker.journal()}

    @settings(max_examples=2000, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(fuzzed_requests(), st.sampled_from(["signed"] * 8 + ["unsigned", "forged"]))
    def post(request, signing):
        ctype, raw = request
        ctype = ctype.strip()
        headers = {"Content-Type": ctype} if ctype.isascii() and ctype.isprintable() else {}
        if signing != "unsigned":
            key = SIGNING_KEY if signing == "signed" else "forged-" + SIGNING_KEY
            headers["MessageBird-Signature-JWT"] = sign(url, raw, key)
        r = session.post(url, data=raw, headers=headers, timeout=30)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, (r.status_code, r.text[:200])
        if r.status_code == 200:
            if r.json()["status"] == "accepted":  # not "duplicate" (a message id drawn twice)
                accepted.append(r.json()["message_id"])
            return
        assert 400 <= r.status_code < 500 and is_json_error(r), (r.status_code, r.text[:200])
        if r.json()["error"] == "unknown_recipient":
            unknown_recipient.append(r.json().get("message_id") or "")
        if signing != "signed":  # the size is checked first, the signature next
            assert r.status_code in (401, 413), r.status_code

    post()
    assert sum(seen.values()) >= 2000 and seen.get(401) and seen.get(422), seen
    # Exactly the accepted texts reached the inbound topic.
    assert written(inbound_before, offsets(worker, "sms-received")) == len(accepted), seen
    # The journal gains the accepted texts' stories and nothing else from the fuzzing.
    events = worker.wait_for(lambda ev: all(of(ev, m, "SenderScreened") for m in accepted),
                             timeout=120)
    new_ids = {getattr(e, "message_id", None) for e in events} - ids_before - {None}
    rejected = [e for e in events if e.TYPE == "TextRejected"
                and e.message_id not in ids_before]
    assert len(rejected) == len(unknown_recipient)
    assert new_ids <= set(accepted) | {e.message_id for e in rejected}
    assert "Traceback" not in worker.log_path.read_text()


def test_bodies_over_the_limit_are_413_json_even_past_aiohttp_s_own_limit(worker):
    url = worker.url + PATH
    before = offsets(worker, "sms-received")
    for size in (64 * 1024 + 1, 2 * 1024 * 1024):
        raw = b"body=" + b"x" * size
        r = requests.post(url, data=raw, headers={**FORM, "MessageBird-Signature-JWT":
                                                  sign(url, raw, SIGNING_KEY)}, timeout=30)
        assert r.status_code == 413 and r.json()["error"] == "too_large", r.text[:200]

    big = b"x" * 65536 * 40

    def chunks():  # chunked: no Content-Length to refuse early
        for i in range(40):
            yield big[i * 65536:(i + 1) * 65536]

    signed = {**FORM, "MessageBird-Signature-JWT": sign(url, big, SIGNING_KEY)}
    r = requests.post(url, data=chunks(), headers=signed, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "too_large", r.text[:200]
    # Unsigned, it is refused before any of it is read (issue 31: the token comes first).
    r = requests.post(url, data=chunks(), headers=FORM, timeout=30)
    assert r.status_code == 401 and r.json()["error"] == "missing_signature", r.text[:200]
    assert written(before, offsets(worker, "sms-received")) == 0


def test_undecodable_signature_header_bytes_are_401_json(worker):
    url = worker.url + PATH
    raw = callback(new_sender())
    r = requests.post(url, data=raw, headers={**FORM,
                                              "MessageBird-Signature-JWT": b"\xff\xfe.\xc3("},
                      timeout=30)
    assert r.status_code == 401 and r.json()["error"] == "invalid_signature", r.text[:200]


def bad_token(kind: str, url: str, raw: bytes) -> str:
    key = SIGNING_KEY
    now = int(time.time())
    if kind == "expired":
        return jwt.encode(claims_for(url, raw, nbf=now - 120, exp=now - 60), key, "HS256")
    if kind == "not_yet_valid":
        return jwt.encode(claims_for(url, raw, nbf=now + 60, exp=now + 120), key, "HS256")
    if kind == "wrong_url_hash":
        return jwt.encode(claims_for(url + "?x=1", raw), key, "HS256")
    if kind == "wrong_payload_hash":
        return jwt.encode(claims_for(url, raw + b"&tampered=1"), key, "HS256")
    if kind == "no_url_hash":  # the SDK raises KeyError on it
        return jwt.encode(claims_for(url, raw, url_hash=None), key, "HS256")
    if kind == "no_jti":
        return jwt.encode(claims_for(url, raw, jti=None), key, "HS256")
    if kind == "alg_none":
        return jwt.encode(claims_for(url, raw), None, "none")
    if kind == "wrong_issuer":
        return jwt.encode(claims_for(url, raw, iss="Mallory"), key, "HS256")
    if kind == "garbage":
        return "eyJhbGciOiJIUzI1NiJ9.garbage.garbage"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["expired", "not_yet_valid", "wrong_url_hash",
                                  "wrong_payload_hash", "no_url_hash", "no_jti", "alg_none",
                                  "wrong_issuer", "garbage"])
def test_each_bad_signature_is_401_json_and_leaves_no_event(worker, kind):
    # (Missing and forged signatures: test_walking_skeleton.)
    url = worker.url + PATH
    message_id = uuid.uuid4().hex
    raw = callback(new_sender(), message_id)
    before = offsets(worker, "sms-received")
    r = requests.post(url, data=raw, headers={**FORM, "MessageBird-Signature-JWT":
                                              bad_token(kind, url, raw)}, timeout=30)
    assert r.status_code == 401 and r.json()["error"] == "invalid_signature", r.text[:200]
    assert written(before, offsets(worker, "sms-received")) == 0
    genuine = worker.post(sender=new_sender())  # processed after the refused one
    events = worker.wait_for(lambda ev: of(ev, genuine.message_id, "SenderScreened"))
    assert of(events, message_id) == []


def test_a_replayed_token_is_refused_even_with_a_new_body(worker):
    url = worker.url + PATH
    sender = new_sender()
    first_raw = callback(sender)
    token = sign(url, first_raw, SIGNING_KEY)
    first = requests.post(url, data=first_raw,
                          headers={**FORM, "MessageBird-Signature-JWT": token}, timeout=30)
    assert first.status_code == 200, first.text
    # The same request again (an eavesdropper's replay), then the jti reused on a new body
    # (a token re-signed by whoever holds the key, or a bug in a proxy).
    replay = requests.post(url, data=first_raw,
                           headers={**FORM, "MessageBird-Signature-JWT": token}, timeout=30)
    second_id = uuid.uuid4().hex
    second_raw = callback(sender, second_id)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    reused = jwt.encode(claims_for(url, second_raw, jti=jti), SIGNING_KEY, "HS256")
    again = requests.post(url, data=second_raw,
                          headers={**FORM, "MessageBird-Signature-JWT": reused}, timeout=30)
    assert (replay.status_code, again.status_code) == (401, 401)
    assert replay.json()["error"] == again.json()["error"] == "replayed_signature"
    genuine = worker.post(sender=new_sender())
    events = worker.wait_for(lambda ev: of(ev, genuine.message_id, "SenderScreened")
                             and of(ev, first.json()["message_id"], "SenderScreened"))
    assert len(of(events, first.json()["message_id"], "TextReceived")) == 1
    assert of(events, second_id) == []


@pytest.mark.parametrize("host", [b"a:b:c", b"\xff\xfe", b"h:99999999"])
def test_a_host_header_no_url_can_be_built_from_is_401_json(worker, host):
    # The signed URL is built from the Host header (without --public-url); yarl refuses
    # these (ValueError, UnicodeError), which was a 500.
    import socket
    from urllib.parse import urlsplit

    raw = callback(new_sender())
    where = urlsplit(worker.url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as s:
        s.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: " + host
                  + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  + b"MessageBird-Signature-JWT: x.y.z\r\nConnection: close\r\n"
                  + b"Content-Length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"401", answer[:300]
    assert b'"error":"invalid_signature"' in rest.replace(b" ", b""), answer[:300]


def test_slow_clients_are_closed_after_the_header_body_and_idle_bounds(worker):
    # Issue 13 item 8: 400 connections with half-sent headers or bodies were all still held
    # after 20 s (aiohttp keeps an idle connection for an hour, and bounds no read). Now a
    # connection without complete headers, or idle, is closed after 15 s; a body not
    # received within 10 s gets a 408 and the connection closed.
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(worker.url)
    address = (where.hostname, where.port)
    path = "/webhooks/messagebird/sms"

    def connect(data: bytes) -> socket.socket:
        s = socket.create_connection(address, timeout=5)
        s.sendall(data)
        return s

    def half_body(signed: bool) -> socket.socket:
        # Signed for a body it never finishes sending (the token is checked before the
        # body is read: an unsigned one is refused at once, issue 31).
        raw = callback(new_sender())
        token = sign(f"http://{where.hostname}:{where.port}{path}", raw, SIGNING_KEY)
        return connect(f"POST {path} HTTP/1.1\r\nHost: {where.hostname}:{where.port}\r\n"
                       f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
                       f"{len(raw)}\r\n".encode()
                       + (f"MessageBird-Signature-JWT: {token}\r\n" if signed else "").encode()
                       + b"\r\n" + raw[:5])

    half_headers = [connect(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-".encode())
                    for _ in range(60)]
    half_bodies = [half_body(signed=True) for _ in range(60)]
    unsigned = [half_body(signed=False) for _ in range(20)]
    idle = [connect(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(20)]
    started = time.monotonic()

    def answer_then_closed(s: socket.socket) -> tuple[bytes, bool]:
        s.setblocking(False)
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except BlockingIOError:
            return received, False  # still open: held
        except ConnectionError:
            pass
        return received, True

    for s in unsigned:  # answered 401 at once, its body never read (issue 31)
        s.settimeout(3)
        assert s.recv(65536).startswith(b"HTTP/1.1 401")
    time.sleep(max(0.0, started + 19 - time.monotonic()))
    try:
        assert requests.get(worker.url + "/health", timeout=10).status_code == 200
        bodies = [answer_then_closed(s) for s in half_bodies]
        assert all(closed for _, closed in bodies), (sum(not c for _, c in bodies), bodies[:2])
        assert all(b" 408 " in answer.split(b"\r\n", 1)[0] for answer, _ in bodies)
        headers = [answer_then_closed(s) for s in half_headers]
        assert all(closed for _, closed in headers), sum(not c for _, c in headers)
        idles = [answer_then_closed(s) for s in idle]
        assert all(closed and answer.startswith(b"HTTP/1.1 200") for answer, closed in idles)
    finally:
        for s in half_headers + half_bodies + idle + unsigned:
            s.close()


def test_a_text_and_a_report_delivered_again_after_a_lost_200_are_stored_once(worker):
    # MessageBird did not get our 200 and delivers the same callback again, newly signed:
    # 200 again, and the journal has one event for it (streams.intake.once).
    url = worker.url + PATH
    sender, mid = new_sender(), uuid.uuid4().hex
    raw = callback(sender, mid)
    texts = [requests.post(url, data=raw, timeout=30, headers={
        **FORM, "MessageBird-Signature-JWT": sign(url, raw, SIGNING_KEY)}) for _ in range(2)]
    assert [(t.status_code, t.json()["status"]) for t in texts] == [
        (200, "accepted"), (200, "duplicate")]
    events = worker.wait_for(lambda ev: of(ev, mid, "ReplySent"))
    assert len(of(events, mid, "TextReceived")) == 1
    (sent,) = of(events, mid, "ReplySent")
    report_url = (f"{worker.url}/webhooks/messagebird/status?campaign=paris"
                  f"&id={sent.provider_message_id}&reference={mid}&recipient={sender}"
                  "&status=delivered&statusDatetime=2026-12-07T20:00:00%2B00:00")
    reports = [requests.get(report_url, timeout=10, headers={
        "MessageBird-Signature-JWT": sign(report_url, b"", SIGNING_KEY)}) for _ in range(2)]
    assert [(r.status_code, r.json()["status"]) for r in reports] == [
        (200, "accepted"), (200, "duplicate")]
    # Both answered after the journal acknowledged what they stored: read it now.
    assert len(of(worker.journal(), mid, "DeliveryReported")) == 1
