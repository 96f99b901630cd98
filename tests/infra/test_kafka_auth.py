"""How the processes connect to Kafka (infra/kafka_auth.py): plaintext by default, TLS with
SASL/SCRAM as the Strimzi listener of the manifests asks, the same settings for every client
the code builds (no broker here speaks SASL: checked offline)."""

from __future__ import annotations

import ast
import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.kafka_auth import KafkaAuth, KafkaAuthError
from tests.factories import ROOT

CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}


@pytest.fixture
def cafile(tmp_path) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def strimzi_env(cafile: str) -> dict[str, str]:
    # What infra/deploy/k8s gives a worker: the TLS listener, its KafkaUser, the cluster CA.
    return {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "antirelou-decide",
            "KAFKA_SASL_PASSWORD": "pw-from-the-kafkauser-secret", "KAFKA_SSL_CAFILE": cafile}


def test_by_default_a_client_connects_in_plaintext_as_before():
    assert KafkaAuth.from_env({}).client_options() == {"security_protocol": "PLAINTEXT"}
    assert KafkaAuth.from_env({}).faust_credentials() is None


def test_with_the_strimzi_settings_every_client_speaks_tls_and_scram(cafile):
    auth = KafkaAuth.from_env(strimzi_env(cafile))
    options = auth.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"  # Strimzi's scram-sha-512
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "antirelou-decide", "pw-from-the-kafkauser-secret")
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "pw-from" not in repr(auth)  # the password is not in a log line of the settings
    credentials = auth.faust_credentials()
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"


def test_faust_gets_the_same_credentials(cafile, monkeypatch):
    from streams.app import create_app
    from streams.settings import Settings

    for name, value in strimzi_env(cafile).items():
        monkeypatch.setenv(name, value)
    app = create_app(Settings(kafka="kafka:9093", campaigns=(), secret=b"k" * 32,
                              allow_unsigned=True, role="web"), None, None)
    assert app.conf.broker_credentials.protocol.value == "SASL_SSL"
    assert app.conf.broker_credentials.username == "antirelou-decide"


@pytest.mark.parametrize("env, says", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
      "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "only with"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "MD5",
      "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM must be"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nowhere/ca.crt"}, "no such file"),
    ({"KAFKA_SSL_CAFILE": "/etc/hostname"}, "set SSL or SASL_SSL"),
])
def test_a_setting_that_does_not_fit_is_one_clear_line(env, says):
    with pytest.raises(KafkaAuthError) as caught:
        KafkaAuth.from_env(env)
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert "p" != message  # (never the password itself)


def test_every_kafka_client_the_code_builds_connects_with_these_settings():
    # A client built without them would connect in plaintext to a TLS listener (and fail),
    # or as nobody: every aiokafka constructor in the code takes client_options(), Faust's
    # own clients take faust_credentials() (streams/app.py) and the bulk-recovery consumer
    # Faust's credentials (infra/faust/patches.py).
    calls = 0
    for path in [*ROOT.glob("streams/**/*.py"), *ROOT.glob("infra/**/*.py"),
                 *ROOT.glob("actors/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") in CLIENTS):
                continue
            calls += 1
            spread = [getattr(k.value.func, "id", "") for k in node.keywords
                      if k.arg is None and isinstance(k.value, ast.Call)]
            assert {"client_options", "credentials_to_aiokafka_auth"} & set(spread), (
                f"{path.relative_to(ROOT)}:{node.lineno}: a Kafka client without the "
                "deployment's connection settings")
    assert calls >= 10
    assert "faust_credentials()" in (ROOT / "streams" / "app.py").read_text()


def test_a_worker_with_settings_that_do_not_fit_stops_with_one_line(monkeypatch, capsys):
    from streams.cli import main

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("KAFKA_SASL_USERNAME", raising=False)
    assert main(["worker", "--kafka", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("antirelou: KAFKA_SECURITY_PROTOCOL=SASL_SSL needs") and "\n" not in err
