"""How every Kafka client of a process connects: in plaintext (the embedded broker, a compose
network on one host), or over TLS with SASL/SCRAM, as the Strimzi listener of
``infra/deploy/k8s/kafka.yaml`` asks, each process as the Kafka user of its role (whose
ACLs say what it may read and write: README, "Security").

Read from the environment of the process that makes the client, never handed from one
process to another: a campaign shard (a Ray actor) reads the journal with its Ray node's
credentials, not with those of the worker that created it.

    KAFKA_SECURITY_PROTOCOL  PLAINTEXT (default) | SSL | SASL_SSL | SASL_PLAINTEXT
    KAFKA_SASL_MECHANISM     SCRAM-SHA-512 (default with SASL) | SCRAM-SHA-256 | PLAIN
    KAFKA_SASL_USERNAME      the Kafka user (Strimzi: the KafkaUser's name)
    KAFKA_SASL_PASSWORD      its password (Strimzi: the Secret of the same name, key password)
    KAFKA_SSL_CAFILE         the CA the brokers' certificates chain to (Strimzi: the Secret
                             <cluster>-cluster-ca-cert, key ca.crt); default: the system's

``client_options()`` is what every aiokafka client of the code is built with (consumer,
producer, admin); ``faust_credentials()`` the same for Faust's own clients.

Errors::

    KafkaAuthError (ValueError)   a setting that does not parse or does not fit (one line)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class KafkaAuthError(ValueError):
    pass


@dataclass(frozen=True)
class KafkaAuth:
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaAuth:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        protocol = (get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        if protocol not in PROTOCOLS:
            raise KafkaAuthError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                                 f"not {protocol!r}")
        sasl = protocol.startswith("SASL_")
        mechanism = (get("KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper() if sasl else None
        if mechanism is not None and mechanism not in MECHANISMS:
            raise KafkaAuthError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, "
                                 f"not {mechanism!r}")
        if mechanism == "PLAIN" and protocol != "SASL_SSL":
            raise KafkaAuthError("KAFKA_SASL_MECHANISM=PLAIN sends the password as it is: only "
                                 "with KAFKA_SECURITY_PROTOCOL=SASL_SSL")
        username, password = get("KAFKA_SASL_USERNAME"), env.get("KAFKA_SASL_PASSWORD") or None
        if sasl and (username is None or password is None):
            raise KafkaAuthError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME "
                                 "and KAFKA_SASL_PASSWORD (the Kafka user of this role)")
        cafile = get("KAFKA_SSL_CAFILE")
        if cafile is not None and protocol not in ("SSL", "SASL_SSL"):
            raise KafkaAuthError("KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL is "
                                 f"{protocol}: set SSL or SASL_SSL")
        if cafile is not None and not Path(cafile).is_file():
            raise KafkaAuthError(f"KAFKA_SSL_CAFILE: no such file: {cafile}")
        return cls(protocol, mechanism, username if sasl else None,
                   password if sasl else None, cafile)

    def ssl_context(self) -> Any:
        if not self.tls:
            return None
        from aiokafka.helpers import create_ssl_context

        return create_ssl_context(cafile=self.cafile)  # verifies the brokers' names too

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka consumer, producer or admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` for the same settings (None: plaintext)."""
        if self.protocol == "PLAINTEXT":
            return None
        import faust
        from faust.types.auth import SASLMechanism

        if not self.sasl:
            return faust.SSLCredentials(self.ssl_context())
        return faust.SASLCredentials(username=self.username, password=self.password,
                                     ssl_context=self.ssl_context(),
                                     mechanism=SASLMechanism(self.mechanism))


def client_options() -> dict[str, Any]:
    """aiokafka keyword arguments from this process's environment (KafkaAuthError)."""
    return KafkaAuth.from_env().client_options()
