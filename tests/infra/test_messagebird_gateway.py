"""The MessageBird gateway, with the real ``messagebird`` client against LocalMessageBird."""

from __future__ import annotations

import asyncio
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import messagebird
import pytest
import requests

from infra.gateway import (
    DryRunGateway,
    GatewayConnectionLost,
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    SendResult,
)
from infra.messagebird_gateway import BoundedHttpClient, MessageBirdGateway, gateway_from_env
from infra.messagebird_local import LocalMessageBird, message_parts

RECIPIENT = "31612345678"  # clearly fake
ORIGINATOR = "Antirelou"
KEY = "test_key"

# 229 GSM-7 characters (é, è, à are in GSM-7): two parts (153 + 76).
GSM_229 = (
    "Ce numéro n'accepte plus vos messages. Merci de ne plus écrire ici, "
    "la conversation est terminée et archivée. "
) * 3
GSM_229 = GSM_229[:229]
# 100 characters with a curly apostrophe: UCS-2, two parts (67 + 33).
UCS_100 = ("Ce numéro n’accepte plus vos messages. " * 3)[:100]


def _assert_no_number(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    for shown in (str(exc), repr(exc), text):
        assert RECIPIENT not in shown
        assert RECIPIENT[2:] not in shown  # nor the national part


@pytest.fixture
def mb():
    with LocalMessageBird(access_key=KEY) as server:
        yield server


@pytest.fixture
def make_gateway(mb):
    made = []

    def make(access_key=KEY, timeout=2.0):
        gw = MessageBirdGateway(access_key, endpoint=mb.endpoint, timeout=timeout)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.close()


@pytest.fixture
def gateway(make_gateway):
    return make_gateway()


def _send(gw, body=GSM_229, reference="ref-1", **kwargs):
    return gw.send(
        originator=ORIGINATOR, recipient=RECIPIENT, body=body, reference=reference, **kwargs
    )


# -- segment counting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "parts", "coding"),
    [
        ("a" * 160, 1, "plain"),
        ("a" * 161, 2, "plain"),
        ("a" * 306, 2, "plain"),
        ("a" * 307, 3, "plain"),
        ("€" * 80, 1, "plain"),  # extension characters count two septets
        ("€" * 81, 2, "plain"),
        ("a" * 152 + "€" + "a" * 8, 2, "plain"),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\n\r", 1, "plain"),
        ("ç", 1, "unicode"),  # lower-case c cedilla is not in the table
        ("’" * 70, 1, "unicode"),
        ("’" * 71, 2, "unicode"),
        ("😀" * 35, 1, "unicode"),  # a surrogate pair takes two UCS-2 units
        ("😀" * 36, 2, "unicode"),
        (GSM_229, 2, "plain"),
        (UCS_100, 2, "unicode"),
        (GSM_229[:100] + "’" + GSM_229[101:], 4, "unicode"),
    ],
)
def test_message_parts(body, parts, coding):
    assert message_parts(body) == (parts, coding)


# -- sending ------------------------------------------------------------------------------


def test_send_reaches_server_and_returns_id_and_price(mb, gateway):
    assert len(GSM_229) == 229
    result = _send(gateway, report_url="https://antirelou.example/dlr")

    (msg,) = mb.messages
    assert msg["originator"] == ORIGINATOR
    assert msg["recipients"] == [RECIPIENT]
    assert msg["body"] == GSM_229
    assert msg["reference"] == "ref-1"
    assert msg["params"]["datacoding"] == "auto"
    assert msg["params"]["reportUrl"] == "https://antirelou.example/dlr"
    assert msg["parts"] == 2
    assert msg["datacoding"] == "plain"
    assert result == SendResult(
        provider_message_id=msg["id"],
        price_micros=160_000,
        currency="EUR",
        parts=2,
        dry_run=False,
    )
    assert len(result.provider_message_id) == 32


def test_ucs2_body_of_100_chars_costs_two_parts(mb, gateway):
    result = _send(gateway, body=UCS_100)
    assert result.parts == 2
    assert result.price_micros == 160_000
    assert mb.messages[0]["datacoding"] == "unicode"


def test_concurrent_sends_from_threads(mb, gateway):
    async def many():
        return await asyncio.gather(
            *(asyncio.to_thread(_send, gateway, "hi", f"ref-{i}") for i in range(8))
        )

    results = asyncio.run(many())
    assert len({r.provider_message_id for r in results}) == 8
    assert sorted(m["reference"] for m in mb.wait_for_messages(8)) == sorted(
        f"ref-{i}" for i in range(8)
    )


# -- errors -------------------------------------------------------------------------------


def test_wrong_access_key_is_rejected(mb, make_gateway):
    with pytest.raises(GatewayRejected) as info:
        _send(make_gateway("wrong_key"))
    assert info.value.code == 2
    assert "access_key" in info.value.description
    assert mb.messages == []
    _assert_no_number(info.value)


def test_bad_recipient_is_rejected_with_code_9(mb, gateway):
    with pytest.raises(GatewayRejected) as info:
        gateway.send(originator=ORIGINATOR, recipient="", body="hi", reference="r")
    assert info.value.code == 9
    assert info.value.parameter == "recipient"


@pytest.mark.parametrize("status", [503, 429, 500, 502])
def test_5xx_and_429_are_unavailable_then_next_call_succeeds(mb, gateway, status):
    mb.fail_next(1, status)
    with pytest.raises(GatewayUnavailable) as info:
        _send(gateway)
    assert info.value.status == status
    _assert_no_number(info.value)
    assert mb.messages == []

    assert _send(gateway).provider_message_id == mb.messages[0]["id"]


def test_other_4xx_status_is_rejected(mb, gateway):
    mb.fail_next(1, 400)
    with pytest.raises(GatewayRejected) as info:
        _send(gateway)
    assert info.value.status == 400
    _assert_no_number(info.value)


def test_slow_provider_times_out(mb, make_gateway):
    gw = make_gateway(timeout=0.5)
    mb.delay_next(1, 2.0)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout) as info:
        _send(gw)
    assert time.monotonic() - started < 1.9
    _assert_no_number(info.value)
    # The provider had accepted it before answering late: a timeout is not "not sent".
    assert len(mb.messages) == 1


def test_connection_refused_is_unavailable(mb, gateway):
    _send(gateway)  # leaves a pooled keep-alive connection
    mb.stop()
    with pytest.raises(GatewayUnavailable) as info:
        _send(gateway)
    _assert_no_number(info.value)


def test_send_without_limit_a_reset_after_the_request_is_uncertain_and_not_retried(mb, gateway):
    # Issue 13 item 1: the provider read and accepted the request, then reset the
    # connection. That was "unavailable" (retried): the same SMS went out again and again.
    _send(gateway)  # a kept-alive connection, reused by the next send
    mb.reset_next(1)
    with pytest.raises(GatewayConnectionLost) as info:
        _send(gateway, reference="ref-2")
    _assert_no_number(info.value)
    assert [m["reference"] for m in mb.messages] == ["ref-1", "ref-2"]  # accepted once
    mb.reset_next(1)
    with pytest.raises(GatewayConnectionLost):  # a fresh connection: the same
        _send(gateway, reference="ref-3")
    assert [m["reference"] for m in mb.messages] == ["ref-1", "ref-2", "ref-3"]


def test_send_without_limit_a_reused_connection_closed_with_no_byte_back_is_retried_once(
        mb, gateway):
    # The keep-alive race: the provider closes the idle connection as our request goes
    # out, and accepts nothing. Tried once more, on another connection.
    _send(gateway)
    mb.close_next(1)
    assert _send(gateway, reference="ref-2").provider_message_id == mb.messages[1]["id"]
    assert [m["reference"] for m in mb.messages] == ["ref-1", "ref-2"]
    mb.close_next(2)  # closed again on the retry: not tried a third time
    with pytest.raises(GatewayConnectionLost):
        _send(gateway, reference="ref-3")
    assert len(mb.messages) == 2


def test_send_without_limit_a_fresh_connection_closed_with_no_byte_back_is_not_retried(
        mb, gateway):
    mb.close_next(1)  # nothing was reused: the provider may have taken it
    with pytest.raises(GatewayConnectionLost):
        _send(gateway)
    assert _send(gateway, reference="ref-2").provider_message_id == mb.messages[0]["id"]


def test_errors_hierarchy():
    for cls in (GatewayTimeout, GatewayUnavailable, GatewayRejected, GatewayConnectionLost):
        assert issubclass(cls, GatewayError)


def test_rejection_description_never_echoes_the_number():
    # Should a provider description quote the number, it is scrubbed from our error.
    error = messagebird.error.Error().load(
        {"code": 9, "description": f"recipient +{RECIPIENT} is blocked", "parameter": "recipient"}
    )
    exc = MessageBirdGateway._rejected(
        messagebird.client.ErrorException([error]), "r", RECIPIENT, "x"
    )
    assert exc.code == 9
    assert "is blocked" in exc.description
    _assert_no_number(exc)


# -- configuration and dry run --------------------------------------------------------------


def test_gateway_from_env_without_key_is_dry_run(mb):
    gw = gateway_from_env({"MESSAGEBIRD_ENDPOINT": mb.endpoint})
    assert isinstance(gw, DryRunGateway)
    result = _send(gw)
    assert result == SendResult(None, None, None, None, dry_run=True)
    assert gw.sent == [{"originator": ORIGINATOR, "reference": "ref-1", "body": GSM_229}]
    assert RECIPIENT not in repr(gw.sent)
    assert mb.messages == []
    assert isinstance(gateway_from_env({"MESSAGEBIRD_ACCESS_KEY": "  "}), DryRunGateway)


def test_gateway_from_env_with_key_sends(mb):
    gw = gateway_from_env(
        {
            "MESSAGEBIRD_ACCESS_KEY": KEY,
            "MESSAGEBIRD_ENDPOINT": mb.endpoint,
            "MESSAGEBIRD_TIMEOUT_S": "1.5",
        }
    )
    assert isinstance(gw, MessageBirdGateway)
    assert gw.timeout == 1.5
    assert KEY not in repr(gw)
    assert _send(gw).provider_message_id == mb.messages[0]["id"]
    gw.close()
    with pytest.raises(ValueError, match="MESSAGEBIRD_TIMEOUT_S"):
        gateway_from_env({"MESSAGEBIRD_ACCESS_KEY": KEY, "MESSAGEBIRD_TIMEOUT_S": "soon"})


def test_default_endpoint():
    gw = gateway_from_env({"MESSAGEBIRD_ACCESS_KEY": KEY})
    assert gw.endpoint == "https://rest.messagebird.com/"
    assert gw.timeout == 10.0


# -- the local server with messagebird's own client -------------------------------------------


def test_sdk_message_create_parses_local_answer(mb):
    http = BoundedHttpClient(mb.endpoint, KEY, messagebird.client.USER_AGENT, timeout=2.0)
    client = messagebird.Client(KEY, http_client=http)
    msg = client.message_create(ORIGINATOR, [RECIPIENT], "hello", {"reference": "sdk"})
    assert isinstance(msg, messagebird.message.Message)
    assert msg.id == mb.messages[0]["id"]
    assert msg.reference == "sdk"
    assert msg.recipients["totalCount"] == 1
    assert msg.recipients["items"][0].status == "sent"
    assert msg.createdDatetime.tzinfo is not None
    assert client.message(msg.id).id == msg.id
    assert client.balance().amount == 100.0
    http.close()


def test_sdk_default_http_client_works_too(mb):
    client = messagebird.Client(
        KEY,
        http_client=messagebird.http_client.HttpClient(
            mb.endpoint, KEY, messagebird.client.USER_AGENT
        ),
    )
    msg = client.message_create(ORIGINATOR, RECIPIENT, "hello")
    assert msg.id == mb.messages[0]["id"]


def test_unknown_path_and_missing_fields(mb):
    headers = {"Authorization": f"AccessKey {KEY}"}
    not_found = requests.get(mb.endpoint + "nope", headers=headers, timeout=2)
    assert not_found.status_code == 404
    assert "errors" in not_found.json()
    missing = requests.post(mb.endpoint + "messages", json={}, headers=headers, timeout=2)
    assert missing.status_code == 422
    params = {e["parameter"] for e in missing.json()["errors"]}
    assert params == {"originator", "body", "recipient"}
    assert {e["code"] for e in missing.json()["errors"]} == {9}
    unauthorized = requests.get(mb.endpoint + "balance", timeout=2)
    assert unauthorized.status_code == 401
    assert unauthorized.json()["errors"][0]["code"] == 2


def test_wait_for_messages_times_out(mb):
    with pytest.raises(TimeoutError):
        mb.wait_for_messages(1, timeout=0.1)


# -- scheduled replies (the policy's reply delay) -----------------------------------------


def test_a_scheduled_reply_carries_scheduled_datetime_and_is_held(mb, gateway):
    # 2017-10-16 23:00:00 UTC, an hour after a 22:00 text
    _send(gateway, reference="late-1", scheduled_at=1_508_194_800_000)
    (msg,) = mb.messages
    assert msg["params"]["scheduledDatetime"] == "2017-10-16T23:00:00+00:00"
    answer = requests.get(f"{mb.endpoint}messages/{msg['id']}",
                          headers={"Authorization": f"AccessKey {KEY}"}, timeout=5).json()
    assert answer["scheduledDatetime"] == "2017-10-16T23:00:00+00:00"
    assert answer["recipients"]["items"][0]["status"] == "scheduled"


def test_an_unscheduled_reply_has_no_scheduled_datetime(mb, gateway):
    _send(gateway)
    assert "scheduledDatetime" not in mb.messages[0]["params"]


def test_dry_run_records_the_schedule():
    dry = DryRunGateway()
    dry.send(originator="AR", recipient=RECIPIENT, body="b", reference="r",
             scheduled_at=1_508_194_800_000)
    assert dry.sent == [{"originator": "AR", "reference": "r", "body": "b",
                         "scheduledDatetime": "2017-10-16T23:00:00+00:00"}]


def test_the_proxy_from_the_environment_is_used(mb, monkeypatch, stop_at_end):
    # The local server answers a forward proxy's absolute-URI request like a direct one:
    # a send to an unresolvable host succeeds only if it went through the proxy.
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", mb.endpoint)
    monkeypatch.setenv("http_proxy", mb.endpoint)
    gw = MessageBirdGateway(KEY, endpoint="http://rest.messagebird.invalid/", timeout=2.0)
    stop_at_end(gw, gw.close)
    result = _send(gw, reference="via-proxy")
    assert result.provider_message_id
    assert [m["reference"] for m in mb.messages] == ["via-proxy"]


def test_one_pool_of_connections_serves_many_threads(mb, gateway):
    # 64 sends from 16 threads over kept-alive connections: every one accepted once.
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: _send(gateway, reference=f"pool-{i}"), range(64)))
    assert len({r.provider_message_id for r in results}) == 64
    assert sorted(m["reference"] for m in mb.messages) == sorted(f"pool-{i}" for i in range(64))
