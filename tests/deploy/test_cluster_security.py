"""The cluster closed by default (issue 31), checked offline in the deployment files: Ray's
token authentication everywhere Ray runs, NetworkPolicies that let only the deciding workers
reach Ray and only our roles reach Kafka, Kafka over TLS with SCRAM and an ACL per role,
each secret only in the pods that use it (the provider keys never on a Ray node), pods that
run as nobody with nothing to write to, host ports on 127.0.0.1, images and dependencies
pinned (hashes for the image build). What these files say is evaluated here as Kubernetes,
Strimzi and compose would read it; none of them has been run (README, "What was tried")."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import tomllib
from importlib.metadata import version as installed_version

import pytest
from packaging.requirements import Requirement

from streams.cli import build_parser
from tests.deploy.test_deploy_files import (
    DEPLOY,
    ROOT,
    by_kind,
    compose,
    container_args,
    container_env,
    dockerfile_lines,
    env_names_read_by_the_code,
    named,
    probed_port,
)

APP = "antirelou"
# Pod labels of each role (what NetworkPolicies and Strimzi's networkPolicyPeers select).
WORKER = {"app.kubernetes.io/name": "antirelou-worker"}
SENDER = {"app.kubernetes.io/name": "antirelou-sender"}
WEBHOOK = {"app.kubernetes.io/name": "antirelou-webhook"}
OPERATOR = {"app.kubernetes.io/name": "antirelou-operator"}
RAY = {"ray.io/cluster": "antirelou-ray"}
KAFKA = {"strimzi.io/cluster": "antirelou-kafka", "strimzi.io/kind": "Kafka"}
STRANGER = {"app.kubernetes.io/name": "something-else"}  # any other pod of the cluster
DNS = {"k8s-app": "kube-dns"}
PROVIDER_KEYS = ("MESSAGEBIRD_ACCESS_KEY", "BIRD_ACCESS_KEY")


def pod_specs() -> dict[str, tuple[dict, dict]]:
    """Every pod template of ours: name -> (its labels, its pod spec)."""
    out = {}
    for kind in ("StatefulSet", "Deployment"):
        for d in by_kind(kind):
            template = d["spec"]["template"]
            out[d["metadata"]["name"]] = (template["metadata"]["labels"], template["spec"])
    (cluster,) = by_kind("RayCluster")
    groups = [("ray-head", cluster["spec"]["headGroupSpec"])] + [
        (f"ray-{g['groupName']}", g) for g in cluster["spec"]["workerGroupSpecs"]]
    for name, group in groups:
        out[name] = ({**RAY}, group["template"]["spec"])  # KubeRay labels its pods so
    return out


def env_of(spec: dict) -> dict:
    (container,) = spec["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# ------------------------------------------------------------------ Ray: token authentication


def test_ray_runs_with_token_authentication_and_only_its_nodes_hold_the_token():
    # Issue 31: nothing set RAY_AUTH_MODE or a token; Ray 2.60's `ray start` turns token
    # authentication on only when a token file already exists, so the cluster was open.
    (cluster,) = by_kind("RayCluster")
    auth = cluster["spec"]["authOptions"]
    assert auth["mode"] == "token"
    token = named("Secret", auth["secretName"])  # the example Secret KubeRay reads
    assert set(token["stringData"]) == {"auth_token"}  # KubeRay's key for it
    # The deciding workers join that cluster (join-ray-and-run.sh): the same token.
    workers = env_of(pod_specs()["antirelou-worker"][1])
    assert workers["RAY_AUTH_MODE"] == "token"
    assert workers["RAY_AUTH_TOKEN"] == {"secretKeyRef": {"name": auth["secretName"],
                                                          "key": "auth_token"}}
    # Nobody else holds it, nor a Ray address: the webhook front and the senders are no
    # part of the Ray cluster.
    for name in ("antirelou-webhook", "antirelou-sender"):
        assert not any(k.startswith("RAY_") for k in env_of(pod_specs()[name][1])), name
    assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} <= env_names_read_by_the_code()


@pytest.mark.parametrize("name", ["compose.yaml", "compose.kafka3.yaml"])
def test_compose_ray_nodes_and_the_workers_that_join_them_use_the_token(name):
    services = compose(name)["services"]
    for svc in ("ray-head", "ray-worker", "worker", "worker-stages"):
        env = {k: str(v) for k, v in services[svc]["environment"].items()}
        assert env["RAY_AUTH_MODE"] == "token", svc
        # From .env, never in the file: compose refuses to start without it.
        assert re.fullmatch(r"\$\{RAY_AUTH_TOKEN:\?.+\}", env["RAY_AUTH_TOKEN"]), svc
    for svc in ("webhook", "sender"):
        assert not any(k.startswith("RAY_") for k in services[svc]["environment"]), svc
        assert "entrypoint" not in services[svc]  # not join-ray-and-run.sh
    assert "RAY_AUTH_TOKEN=" in (DEPLOY / ".env.example").read_text()


def test_the_join_script_refuses_an_open_cluster_unless_told(tmp_path):
    script = DEPLOY / "join-ray-and-run.sh"
    for env, says in (({}, "set RAY_AUTH_MODE=token"),
                      ({"RAY_AUTH_MODE": "token"}, "needs RAY_AUTH_TOKEN")):
        done = subprocess.run(["sh", str(script), "worker"], capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "RAY_ADDRESS": "ray-head:6379", **env},
                              cwd=tmp_path, timeout=30)
        assert done.returncode == 2 and says in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1  # one line


# ------------------------------------------------------------------ secrets where used


def test_the_provider_keys_are_only_in_pods_that_are_no_ray_node():
    # Issue 31: every worker joined Ray holding the provider keys, and a Ray node runs the
    # tasks anyone with access to the cluster submits. Now the senders alone hold them.
    specs = pod_specs()
    holders = {name for name, (_, spec) in specs.items()
               if set(PROVIDER_KEYS) & set(env_of(spec))}
    assert holders == {"antirelou-sender"}
    ray_nodes = {name for name, (labels, spec) in specs.items()
                 if labels == RAY or spec["containers"][0].get("command") == [
                     "join-ray-and-run.sh"]}
    assert ray_nodes == {"ray-head", "ray-shards", "antirelou-worker"}
    assert not holders & ray_nodes
    # Each role's own secrets, each by reference.
    secrets = {name: {k for k, v in env_of(spec).items() if isinstance(v, dict)}
               for name, (_, spec) in specs.items()}
    assert secrets["antirelou-worker"] == {"ANTIRELOU_SECRET", "MESSAGEBIRD_SIGNING_KEY",
                                          "RAY_AUTH_TOKEN", "KAFKA_SASL_PASSWORD"}
    assert secrets["antirelou-sender"] == {"ANTIRELOU_SECRET", "MESSAGEBIRD_ACCESS_KEY",
                                          "KAFKA_SASL_PASSWORD"}
    assert secrets["antirelou-webhook"] == {"ANTIRELOU_SECRET", "MESSAGEBIRD_SIGNING_KEY",
                                           "KAFKA_SASL_PASSWORD"}
    assert secrets["ray-shards"] == {"KAFKA_SASL_PASSWORD"} and secrets["ray-head"] == set()


@pytest.mark.parametrize("name", ["compose.yaml", "compose.kafka3.yaml"])
def test_compose_gives_the_provider_key_to_the_sender_alone(name):
    services = compose(name)["services"]
    holders = {svc for svc, spec in services.items()
               if set(PROVIDER_KEYS) & set(spec.get("environment") or {})}
    assert holders == {"sender"}
    sender = services["sender"]
    assert sender["command"] == ["worker", "--role", "send"]
    assert not any(k.startswith("RAY_") for k in sender["environment"])
    assert set(sender["environment"]) <= env_names_read_by_the_code()
    worker = services["worker"]
    assert build_parser().parse_args(worker["command"]).role == "decide"
    assert build_parser().parse_args(sender["command"]).role == "send"
    assert sender["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == worker["environment"][
        "KAFKA_BOOTSTRAP_SERVERS"]
    assert "/health" in " ".join(sender["healthcheck"]["test"]) and "ports" not in sender


def test_the_sender_deployment_runs_the_send_role_with_its_probes(monkeypatch):
    sender, workers = named("Deployment", "antirelou-sender"), named("StatefulSet",
                                                                     "antirelou-worker")
    (container,) = sender["spec"]["template"]["spec"]["containers"]
    env, worker_env = container_env(sender), container_env(workers)
    assert "command" not in container and container["args"] == ["worker", "--role", "send"]
    assert set(env) <= env_names_read_by_the_code()
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "ANTIRELOU_APP_ID", "ANTIRELOU_SECRET",
                 "ANTIRELOU_PARTITIONS", "ANTIRELOU_REPLICATION_FACTOR",
                 "ANTIRELOU_MIN_INSYNC_REPLICAS", "ANTIRELOU_PUBLIC_URL"):
        assert env[name] == worker_env[name], name
    args = container_args(container, monkeypatch)
    assert args.role == "send" and args.partitions == 12
    assert probed_port(container)["containerPort"] == args.web_port == 6066


# ------------------------------------------------------------------ NetworkPolicies


def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(peer: dict, labels: dict, ip: str | None) -> bool:
    if "ipBlock" in peer:
        if ip is None:
            return False
        block = peer["ipBlock"]
        address = ipaddress.ip_address(ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", ()))
    if ip is not None:
        return False  # a pod selector selects pods, not outside addresses
    if "namespaceSelector" in peer and not peer["namespaceSelector"]:
        return _matches(peer.get("podSelector") or {}, labels)  # any namespace
    if "namespaceSelector" in peer:
        return False
    return _matches(peer["podSelector"], labels)


def _rules_allow(rules: list, labels: dict, ip: str | None, port: int, key: str) -> bool:
    for rule in rules:
        peers = rule.get(key)
        if peers is not None and not any(_peer_matches(p, labels, ip) for p in peers):
            continue
        ports = rule.get("ports")
        if ports is not None and not any(p["port"] == port for p in ports):
            continue
        return True
    return False


def allowed(source: dict | None, target: dict | None, port: int, ip: str | None = None) -> bool:
    """Whether a connection from a pod labelled ``source`` (None: outside the cluster) to a
    pod labelled ``target`` (None: the address ``ip``) passes both sides' NetworkPolicies
    (a pod no policy selects is open in that direction)."""
    policies = by_kind("NetworkPolicy")
    if source is not None:
        mine = [p for p in policies if _matches(p["spec"]["podSelector"], source)
                and "Egress" in p["spec"]["policyTypes"]]
        if mine and not any(_rules_allow(p["spec"].get("egress") or [], target or {}, ip,
                                         port, "to") for p in mine):
            return False
    if target is not None:
        theirs = [p for p in policies if _matches(p["spec"]["podSelector"], target)
                  and "Ingress" in p["spec"]["policyTypes"]]
        if theirs and not any(_rules_allow(p["spec"].get("ingress") or [], source or {},
                                           None if source is not None else "203.0.113.7",
                                           port, "from") for p in theirs):
            return False
    return True


def kafka_listener_admits(source: dict) -> bool:
    """Strimzi's NetworkPolicy for the listener: its networkPolicyPeers."""
    (kafka,) = by_kind("Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    return any(_peer_matches(p, source, None) for p in listener["networkPolicyPeers"])


def test_every_pod_of_ours_is_closed_in_both_directions_by_a_policy():
    policies = by_kind("NetworkPolicy")
    for name, (labels, _) in pod_specs().items():
        mine = [p for p in policies if _matches(p["spec"]["podSelector"], labels)]
        assert mine, f"{name}: no NetworkPolicy selects it (open to all)"
        assert {t for p in mine for t in p["spec"]["policyTypes"]} == {"Ingress", "Egress"}


def test_only_the_deciding_workers_and_ray_itself_reach_ray():
    gcs = 6379
    assert allowed(WORKER, RAY, gcs) and allowed(RAY, RAY, gcs) and allowed(RAY, WORKER, 40000)
    for who in (WEBHOOK, SENDER, OPERATOR, STRANGER, None):
        assert not allowed(who, RAY, gcs), who
        assert not allowed(who, WORKER, 40000), who  # a worker is a Ray node too


def test_only_our_roles_reach_kafka_and_the_webhook_front_nothing_else():
    for who in (WORKER, SENDER, WEBHOOK, OPERATOR, RAY):
        assert allowed(who, KAFKA, 9093) and kafka_listener_admits(who), who
    assert not kafka_listener_admits(STRANGER)
    # The webhook front: MessageBird (through your ingress) in; Kafka and DNS out.
    assert allowed(None, WEBHOOK, 6066) and allowed(STRANGER, WEBHOOK, 6066)
    assert not allowed(None, WEBHOOK, 8080)
    assert allowed(WEBHOOK, DNS, 53) and not allowed(WEBHOOK, RAY, 6379)
    assert not allowed(WEBHOOK, WORKER, 6066) and not allowed(WEBHOOK, SENDER, 6066)
    assert not allowed(WEBHOOK, None, 443, ip="52.0.0.1")  # no Internet


def test_only_the_senders_reach_the_internet_and_not_the_cloud_metadata_address():
    assert allowed(SENDER, None, 443, ip="52.0.0.1")  # rest.messagebird.com, anywhere public
    assert not allowed(SENDER, None, 443, ip="169.254.169.254")
    assert not allowed(SENDER, None, 443, ip="10.3.0.1")
    assert not allowed(SENDER, None, 80, ip="52.0.0.1")
    for who in (WORKER, RAY, WEBHOOK, OPERATOR):
        assert not allowed(who, None, 443, ip="52.0.0.1"), who
    assert not allowed(None, SENDER, 6066) and not allowed(STRANGER, SENDER, 6066)
    assert not allowed(SENDER, RAY, 6379) and not allowed(SENDER, WORKER, 6066)


# ------------------------------------------------------------------ Kafka: TLS, SCRAM, ACLs


def users() -> dict[str, dict]:
    return {u["metadata"]["name"]: u for u in by_kind("KafkaUser")}


def may(user: str, operation: str, resource_type: str, name: str) -> bool:
    """Kafka's simple authorizer (allow rules only, as written here)."""
    for acl in users()[user]["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        if resource["type"] != resource_type or operation not in acl["operations"]:
            continue
        if acl.get("type", "allow") != "allow":
            continue
        pattern = resource.get("patternType", "literal")
        if (pattern == "literal" and resource["name"] in (name, "*")) or (
                pattern == "prefix" and name.startswith(resource["name"])):
            return True
    return False


def topic(role: str) -> str:
    return f"{APP}.{role}"


def test_kafka_speaks_only_tls_with_scram_and_authorizes_every_client():
    # Issue 31: one PLAINTEXT listener, no authentication, no ACL.
    (kafka,) = by_kind("Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True and listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert "userOperator" in kafka["spec"]["entityOperator"]
    for user in users().values():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert user["apiVersion"] == kafka["apiVersion"]


def test_each_pod_connects_over_tls_as_the_kafka_user_of_its_role():
    (kafka,) = by_kind("Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    ca_secret = f"{kafka['metadata']['name']}-cluster-ca-cert"  # Strimzi's name for it
    expected = {"antirelou-worker": "antirelou-decide", "antirelou-sender": "antirelou-send",
                "antirelou-webhook": "antirelou-web", "ray-shards": "antirelou-shard"}
    for name, (_, spec) in pod_specs().items():
        env = env_of(spec)
        if name not in expected:
            assert not any(k.startswith("KAFKA_") for k in env), name  # the Ray head
            continue
        user = expected[name]
        assert user in users()
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["KAFKA_SASL_USERNAME"] == user, name
        # Strimzi writes the user's password to a Secret of the user's name, key password.
        assert env["KAFKA_SASL_PASSWORD"] == {"secretKeyRef": {"name": user, "key": "password"}}
        if "KAFKA_BOOTSTRAP_SERVERS" in env:
            assert env["KAFKA_BOOTSTRAP_SERVERS"].endswith(f":{listener['port']}")
        (container,) = spec["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["kafka-ca"]["secret"]["secretName"] == ca_secret, name
        (item,) = volumes["kafka-ca"]["secret"]["items"]
        assert env["KAFKA_SSL_CAFILE"] == f"{mounts['kafka-ca']}/{item['path']}", name


def test_the_acls_give_each_role_what_its_code_needs_and_no_more():
    every = ("sms-received", "reply-requests", "sms-outbound", "journal", "control", "policies",
             "campaign-snapshots", "keycheck", "bodies", "notary", "checkpoints")
    writes = {role: {t for t in every if may(role, "Write", "topic", topic(t))}
              for role in users()}
    reads = {role: {t for t in every if may(role, "Read", "topic", topic(t))} for role in users()}
    # The webhook front only produces: texts, rejections, delivery reports and their
    # settlement; it reads nothing but the key check, and joins no group.
    assert writes["antirelou-web"] == {"sms-received", "journal", "reply-requests", "keycheck",
                                       "bodies"}
    assert reads["antirelou-web"] == {"keycheck"}
    assert not may("antirelou-web", "Read", "group", APP)
    assert not may("antirelou-web", "Create", "topic", topic("sms-received"))
    # Operator commands: written by the operators' CLI alone (and signed: the shards check).
    assert {r for r, w in writes.items() if "control" in w} == {"antirelou-operator"}
    # A SendReply is written by the deciding workers alone, read by the senders alone.
    assert {r for r, w in writes.items() if "sms-outbound" in w} == {"antirelou-decide"}
    assert {r for r, rd in reads.items() if "sms-outbound" in rd} == {"antirelou-send"}
    # The shards (Ray nodes) only read what they recover from.
    assert writes["antirelou-shard"] == set()
    assert reads["antirelou-shard"] == {"journal", "campaign-snapshots"}
    assert writes["antirelou-send"] == {"journal", "reply-requests", "keycheck"}
    assert writes["antirelou-operator"] == {"control"}
    # The operators' CLI reads the journal, the bodies still kept and the checkpoints (journal,
    # export), and the policies topic (policy set's "in force").
    assert reads["antirelou-operator"] == {"journal", "bodies", "notary", "policies"}
    # What the deciding workers' stages read and write (streams/stages).
    assert reads["antirelou-decide"] == set(every) - {"sms-outbound", "bodies"}
    assert writes["antirelou-decide"] == set(every) - {"control"}
    # Consumer groups: each consuming role its own; Faust's topics by prefix.
    assert may("antirelou-decide", "Read", "group", APP)
    assert may("antirelou-send", "Read", "group", f"{APP}-send")
    assert not may("antirelou-send", "Read", "group", APP)
    assert may("antirelou-decide", "Create", "topic", f"{APP}-senders_by_pseudonym-changelog")
    assert may("antirelou-send", "Create", "topic", f"{APP}-send-replies_by_message-changelog")
    assert not may("antirelou-send", "Write", "topic", f"{APP}-senders_by_pseudonym-changelog")
    # Every process checks its topics exist (it sees only those it may describe).
    for role in ("antirelou-web", "antirelou-decide", "antirelou-send", "antirelou-operator"):
        assert all(may(role, "Describe", "topic", topic(t)) for t in every), role


def test_the_topics_exist_before_any_process_with_the_layout_the_workers_would_make():
    from infra.keycheck import KEYCHECK_CONFIG, keycheck_topic
    from streams.cli.deployment import topic_configs, topic_layout
    from streams.settings import topic_names

    env = container_env(named("StatefulSet", "antirelou-worker"))
    names = topic_names(env["ANTIRELOU_APP_ID"])
    layout = topic_layout(names, int(env["ANTIRELOU_PARTITIONS"]))
    configs = topic_configs(names, int(env["ANTIRELOU_MIN_INSYNC_REPLICAS"]))
    layout[keycheck_topic(APP)], configs[keycheck_topic(APP)] = 1, dict(KEYCHECK_CONFIG)
    declared = {t["spec"]["topicName"]: t for t in by_kind("KafkaTopic")}
    assert set(declared) == set(layout)
    for name, spec in declared.items():
        assert spec["spec"]["partitions"] == layout[name], name
        assert spec["spec"]["replicas"] == int(env["ANTIRELOU_REPLICATION_FACTOR"]), name
        assert {k: str(v) for k, v in (spec["spec"].get("config") or {}).items()} == (
            configs.get(name, {})), name


# ------------------------------------------------------------------ pods and compose services


def test_every_pod_runs_as_nobody_with_a_read_only_root_and_no_capability_or_token():
    for name, (_, spec) in pod_specs().items():
        assert spec["automountServiceAccountToken"] is False, name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            # What it writes lives on volumes: Ray's /tmp, the worker's state folder.
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, name
            if name.startswith("antirelou-"):
                assert "/home/antirelou/state" in mounts, name
    # The image's user is the one the pods run as.
    (user,) = [line.split()[1] for line in dockerfile_lines() if line.startswith("USER ")]
    assert user == "1000:1000"
    labels = named("Namespace", APP)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


@pytest.mark.parametrize("name", ["compose.yaml", "compose.kafka3.yaml"])
def test_compose_publishes_on_127_0_0_1_unless_asked_and_hardens_every_container(name):
    services = compose(name)["services"]
    for svc, spec in services.items():
        assert spec.get("cap_drop") == ["ALL"], svc
        assert "no-new-privileges:true" in spec.get("security_opt", []), svc
        for port in spec.get("ports") or []:
            # "${ANTIRELOU_PUBLISH_IP:-127.0.0.1}:6066-6075:6066": loopback by default.
            assert re.fullmatch(r"\$\{ANTIRELOU_PUBLISH_IP:-127\.0\.0\.1\}:[0-9-]+:6066",
                                port), (svc, port)
        if svc.startswith("kafka"):
            assert "ports" not in spec, svc  # the broker: the compose network only
            continue
        assert spec["user"] == "1000:1000" and spec["read_only"] is True, svc
        assert {"/tmp", "/home/antirelou/state"} <= set(spec["tmpfs"]), svc
    assert any(services[s].get("ports") for s in services)


# ------------------------------------------------------------------ pinned


def lock() -> dict[str, tuple[str, list[str]]]:
    """The image's requirements lock: name -> (version, hashes)."""
    text = (DEPLOY / "requirements.lock").read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split(" --hash=")
        name, version = spec.strip().split("==")
        out[name.lower()] = (version, [o.strip() for o in options])
    return out


def test_every_image_and_every_python_package_of_the_image_is_pinned():
    images = [s["image"] for f in ("compose.yaml", "compose.kafka3.yaml")
              for s in compose(f)["services"].values() if "build" not in s]
    images += [c["image"] for _, spec in pod_specs().values() for c in spec["containers"]]
    for image in images:
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), image
    # The base image: an exact Python release, the one the tests run on.
    (arg,) = [line for line in dockerfile_lines() if line.startswith("ARG PYTHON_IMAGE=")]
    base = arg.split("=", 1)[1]
    assert re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-\w+", base), base
    import platform

    assert base.split(":")[1].startswith(platform.python_version() + "-")
    assert "FROM ${PYTHON_IMAGE}" in dockerfile_lines()
    # Every package: one version, sha256 hashes; installed with --require-hashes, the
    # project itself without reaching an index.
    pinned = lock()
    for name, (version, hashes) in pinned.items():
        assert version and hashes and all(h.startswith("sha256:") for h in hashes), name
    runs = " ".join(line for line in dockerfile_lines() if line.startswith("RUN "))
    assert "--require-hashes --no-deps -r /tmp/requirements.lock" in runs
    assert "--no-deps --no-build-isolation --no-index ." in runs


def test_the_lock_holds_what_pyproject_asks_and_what_the_tests_ran():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pinned = lock()
    wanted = [Requirement(r) for r in (project["project"]["dependencies"]
                                       + project["project"]["optional-dependencies"]["cluster"]
                                       + project["build-system"]["requires"])]
    for req in wanted:
        name = req.name.lower()
        assert name in pinned, name
        assert req.specifier.contains(pinned[name][0], prereleases=True), (req, pinned[name][0])
    # The exact pins are the versions these tests run against.
    for req in wanted:
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            assert pinned[req.name.lower()][0] == exact[0] == installed_version(req.name)


def test_the_deploy_readme_lists_every_file():
    readme = (DEPLOY / "README.md").read_text()
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and path.name != "README.md":
            rel = str(path.relative_to(DEPLOY))
            assert f"`{rel}`" in readme, rel
