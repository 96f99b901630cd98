"""The deployment files (infra/deploy) checked offline: no container runtime or Kubernetes
cluster here. YAML parses; the Kubernetes core kinds validate against their schemas
(kubernetes-validate); the custom resources (Strimzi, KubeRay) and the compose files are
checked for the structure and the names that must agree with each other and with the code:
the CLI the images run, the settings the workers read, the Ray flags, the KRaft quorum."""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
import sys
import tomllib

import kubernetes_validate
import pytest
import ray
import yaml

from streams.cli import build_parser
from streams.cli.run import no_dashboard_default
from tests.factories import ROOT

DEPLOY = ROOT / "infra" / "deploy"
K8S = DEPLOY / "k8s"
CORE_KINDS = {"Namespace", "ConfigMap", "Secret", "Deployment", "StatefulSet", "Service"}
SECRETS = ("ANTIRELOU_SECRET", "MESSAGEBIRD_ACCESS_KEY", "MESSAGEBIRD_SIGNING_KEY")


def manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")) + [DEPLOY / "k8s-secret.example.yaml"]:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in manifests() if d["kind"] == kind]


def named(kind: str, name: str) -> dict:
    (doc,) = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    return doc


def compose(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def env_names_read_by_the_code() -> set[str]:
    text = "".join(p.read_text() for d in ("streams", "infra", "actors")
                   for p in (ROOT / d).rglob("*.py"))
    return set(re.findall(r"""["']((?:ANTIRELOU|MESSAGEBIRD|KAFKA|RAY)_[A-Z_]+)["']""", text))


def parsed_worker_args(env: dict[str, str], monkeypatch) -> object:
    """What `antirelou worker` makes of this environment (values must parse)."""
    for name in env:
        monkeypatch.setenv(name, env[name])
    return build_parser().parse_args(["worker"])


def ray_start_flags() -> set[str]:
    out = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "start", "--help"],
                         capture_output=True, text=True, timeout=60).stdout
    flags = set(re.findall(r"(--[a-z][a-z0-9-]+)", out))
    assert "--address" in flags and "--resources" in flags, out[:500]
    return flags


def ray_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d.split("==")[1] for d in deps if d.startswith("ray==")]
    return pin


# ------------------------------------------------------------------ Kubernetes


def test_every_manifest_parses_and_names_its_namespace():
    docs = manifests()
    assert {d["kind"] for d in docs} == CORE_KINDS | {"Kafka", "KafkaNodePool", "RayCluster"}
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "antirelou", d["metadata"]


@pytest.mark.parametrize("doc", [d for d in manifests() if d["kind"] in CORE_KINDS],
                         ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_core_kinds_validate_against_the_kubernetes_schema(doc):
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(doc, version, strict=True)  # raises on any error


def test_a_broken_manifest_is_caught_by_the_validator():
    # The check above can fail: a Deployment with a typo in a field is refused.
    deployment = named("Deployment", "antirelou-webhook")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_strimzi_kafka_is_kraft_with_three_dual_role_nodes_and_replication_3():
    (kafka,), (pool,) = by_kind("Kafka"), by_kind("KafkaNodePool")
    assert kafka["apiVersion"] == pool["apiVersion"] == "kafka.strimzi.io/v1"
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert pool["spec"]["storage"]["volumes"][0]["type"] == "persistent-claim"
    config = kafka["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    assert "zookeeper" not in kafka["spec"]


def test_the_ray_cluster_runs_our_image_and_our_ray_version_and_offers_the_shard_resource():
    (cluster,), deployment = by_kind("RayCluster"), named("StatefulSet", "antirelou-worker")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["rayVersion"] == ray_pin() == ray.__version__
    worker_image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    groups = [cluster["spec"]["headGroupSpec"]] + cluster["spec"]["workerGroupSpecs"]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            assert container["image"] == worker_image  # Ray runs our actor classes
    flags = ray_start_flags()
    for group in groups:
        for key in group["rayStartParams"]:
            assert f"--{key}" in flags, key
    env = container_env(deployment)
    (shards,) = cluster["spec"]["workerGroupSpecs"]
    offered = yaml.safe_load(yaml.safe_load(shards["rayStartParams"]["resources"]))
    assert env["ANTIRELOU_SHARD_RESOURCE"] in offered
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def container_env(deployment: dict) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_workers_find_kafka_ray_their_secrets_and_their_probes(monkeypatch):
    deployment, (secret,) = named("StatefulSet", "antirelou-worker"), by_kind("Secret")
    service = named("Service", "antirelou-admin")  # the admin pages are a worker's
    assert {d["metadata"]["name"] for d in by_kind("Deployment")} == {"antirelou-webhook"}
    (kafka,), (cluster,) = by_kind("Kafka"), by_kind("RayCluster")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = container_env(deployment)
    # Strimzi's and KubeRay's service names for these resources.
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"{kafka['metadata']['name']}-kafka-bootstrap:9092"
    assert env["RAY_ADDRESS"] == f"{cluster['metadata']['name']}-head-svc:6379"
    # Secrets only by reference, to keys the Secret has.
    for name in SECRETS:
        ref = env[name]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    # Every setting is one the code reads, and its value parses.
    assert set(env) <= env_names_read_by_the_code(), set(env) - env_names_read_by_the_code()
    args = parsed_worker_args({k: v for k, v in env.items() if isinstance(v, str)}, monkeypatch)
    assert (args.replication_factor, args.min_insync_replicas, args.shards) == (3, 2, 2)
    assert args.shard_spread and args.partitions == 12
    # The entry point joins Ray, then runs `antirelou worker`.
    assert container["command"] == ["join-ray-and-run.sh"] and container["args"] == ["worker"]
    # Probes on /health at the webhook port; the Service sends to that port of these pods.
    (port,) = container["ports"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert port["containerPort"] == args.web_port == 6066  # the image's ANTIRELOU_WEB_PORT
    # The admin Service sends to the one worker that follows the journal: the StatefulSet's
    # first pod (Kubernetes labels each pod with its name), the dashboard host.
    name, replicas = deployment["metadata"]["name"], deployment["spec"]["replicas"]
    assert service["spec"]["selector"] == {
        **deployment["spec"]["template"]["metadata"]["labels"],
        "statefulset.kubernetes.io/pod-name": env["ANTIRELOU_DASHBOARD_HOST"]}
    assert env["ANTIRELOU_DASHBOARD_HOST"] == f"{name}-0" and replicas >= 2
    pods = [f"{name}-{i}" for i in range(replicas)]
    assert [no_dashboard_default(lambda pod=pod: pod) for pod in pods] == [False] + [True] * (
        replicas - 1)
    # The StatefulSet's governing Service exists, headless, over these pods.
    governing = named("Service", deployment["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"
    assert governing["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    # The campaign file lands where the image looks for it.
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["campaigns"]
    assert f"{mount}/campaigns.toml" == dockerfile_env()["ANTIRELOU_CONFIG"]
    assert args.role == "all"


def test_the_webhook_front_is_web_only_and_laid_out_as_the_workers(monkeypatch):
    web, workers = named("Deployment", "antirelou-webhook"), named("StatefulSet", "antirelou-worker")
    service, (secret,) = named("Service", "antirelou-webhook"), by_kind("Secret")
    (container,) = web["spec"]["template"]["spec"]["containers"]
    env, worker_env = container_env(web), container_env(workers)
    # The image's own entry point (antirelou), no Ray: `antirelou worker --role web`.
    assert "command" not in container and container["args"] == ["worker", "--role", "web"]
    assert not any(k.startswith("RAY_") for k in env)
    assert set(env) <= env_names_read_by_the_code(), set(env) - env_names_read_by_the_code()
    for name in ("ANTIRELOU_SECRET", "MESSAGEBIRD_SIGNING_KEY"):
        ref = env[name]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    # One deployment: the same broker, app id, secret, public URL and topic layout.
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "ANTIRELOU_APP_ID", "ANTIRELOU_SECRET",
                 "ANTIRELOU_PUBLIC_URL", "ANTIRELOU_PARTITIONS", "ANTIRELOU_REPLICATION_FACTOR",
                 "ANTIRELOU_MIN_INSYNC_REPLICAS", "MESSAGEBIRD_SIGNING_KEY"):
        assert env[name] == worker_env[name], name
    for name, value in env.items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    args = build_parser().parse_args(container["args"])
    assert args.role == "web" and args.partitions == 12
    # MessageBird's calls reach the web-only pods, through their probed port.
    (port,) = container["ports"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert service["spec"]["selector"] == web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert port["containerPort"] == args.web_port == 6066
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "campaigns"]
    assert f"{mount['mountPath']}/campaigns.toml" == dockerfile_env()["ANTIRELOU_CONFIG"]


def test_the_example_campaign_file_in_the_configmap_loads(tmp_path):
    from infra.config import load_campaigns

    (config_map,) = by_kind("ConfigMap")
    path = tmp_path / "campaigns.toml"
    path.write_text(config_map["data"]["campaigns.toml"])
    assert [c.id for c in load_campaigns(path)] == ["paris"]


# ------------------------------------------------------------------ Dockerfile


def dockerfile_lines() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for line in dockerfile_lines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in shlex.split(line[4:]))
    return env


def test_the_dockerfile_runs_the_real_cli():
    lines = dockerfile_lines()
    (entry,) = [line for line in lines if line.startswith("ENTRYPOINT")]
    (cmd,) = [line for line in lines if line.startswith("CMD")]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert yaml.safe_load(entry.split(None, 1)[1]) == ["antirelou"]
    assert scripts["antirelou"] == "streams.cli:main"
    assert build_parser().parse_args(yaml.safe_load(cmd.split(None, 1)[1])).command == "worker"
    # What it copies exists, and every package the project installs is copied.
    copied = [line.split()[1] for line in lines if line.startswith("COPY")]
    for src in copied:
        assert (ROOT / src).exists(), src
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert {p.split(".")[0] for p in packages} <= set(copied)
    # ... and every package folder is installed (setuptools takes only those it is told).
    folders = {str(init.parent.relative_to(ROOT)).replace("/", ".")
               for top in {p.split(".")[0] for p in packages}
               for init in (ROOT / top).rglob("__init__.py")}
    assert folders <= set(packages)
    assert "cluster" in tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    assert set(dockerfile_env()) <= env_names_read_by_the_code() | {
        "PYTHONUNBUFFERED", "RAY_USAGE_STATS_ENABLED"}
    # The Ray join script ends by running the CLI with the arguments given.
    script = (DEPLOY / "join-ray-and-run.sh").read_text()
    assert 'exec antirelou "$@"' in script and "ray start --address" in script


# ------------------------------------------------------------------ compose


@pytest.mark.parametrize("name,brokers", [("compose.yaml", 1), ("compose.kafka3.yaml", 3)])
def test_compose_has_kraft_kafka_ray_and_workers_wired_together(name, brokers, monkeypatch):
    doc = compose(name)
    services = doc["services"]
    kafkas = sorted(s for s in services if s.startswith("kafka"))
    assert len(kafkas) == brokers and {"ray-head", "ray-worker", "worker"} <= set(services)
    # Every dependency is a service of the file; the worker waits for healthy brokers.
    for svc in services.values():
        for dep in svc.get("depends_on", {}):
            assert dep in services, dep
    assert {k: services["worker"]["depends_on"][k]["condition"] for k in kafkas} == {
        k: "service_healthy" for k in kafkas}
    for k in kafkas:
        assert "healthcheck" in services[k]

    # Kafka: the official image in KRaft mode; each node id and host in the quorum once.
    voters = set()
    for k in kafkas:
        svc = services[k]
        env = svc["environment"]
        assert svc["image"].startswith("apache/kafka:")
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{k}:9092"
        voters.add(f"{env['KAFKA_NODE_ID']}@{k}:9093")
        cluster_id = re.fullmatch(r"\$\{KAFKA_CLUSTER_ID:-(.+)\}", env["CLUSTER_ID"]).group(1)
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16  # a Kafka Uuid
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == min(3, brokers)
        assert svc["volumes"][0].split(":")[0] in doc["volumes"]
    for k in kafkas:
        assert set(services[k]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters

    # Ray and the workers: one image, built from our Dockerfile; Ray flags that exist.
    image = services["worker"]["image"]
    assert services["ray-head"]["image"] == services["ray-worker"]["image"] == image
    assert (ROOT / services["worker"]["build"]["dockerfile"]).exists()
    assert (DEPLOY / services["worker"]["build"]["context"]).resolve() == ROOT
    flags = ray_start_flags()
    for svc in ("ray-head", "ray-worker"):
        argv = services[svc]["entrypoint"]
        assert argv[:2] == ["ray", "start"] and "--block" in argv
        for arg in argv[2:]:
            assert arg.split("=")[0] in flags, arg
    assert "--head" in services["ray-head"]["entrypoint"]
    joined = [a for a in services["ray-worker"]["entrypoint"] if a.startswith("--resources=")]
    offered = yaml.safe_load(joined[0].split("=", 1)[1])

    # The workers: settings the code reads, values that parse, secrets only from the
    # environment (compose refuses to start without them).
    worker = services["worker"]
    env = {k: str(v) for k, v in worker["environment"].items()}
    assert set(env) <= env_names_read_by_the_code(), set(env) - env_names_read_by_the_code()
    for secret in SECRETS:
        assert re.fullmatch(rf"\$\{{{secret}:\?.*\}}", env[secret]), env[secret]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == ",".join(f"{k}:9092" for k in kafkas)
    assert env["RAY_ADDRESS"] == "ray-head:6379"
    assert env["ANTIRELOU_SHARD_RESOURCE"] in offered
    plain = {k: v for k, v in env.items() if not v.startswith("${")}
    args = parsed_worker_args(plain, monkeypatch)
    assert args.replication_factor == min(3, brokers)
    assert args.min_insync_replicas == (2 if brokers == 3 else None)
    assert worker["entrypoint"] == ["join-ray-and-run.sh"] and worker["command"] == ["worker"]
    assert "/health" in " ".join(worker["healthcheck"]["test"])
    source, target, _ = worker["volumes"][0].rsplit(":", 2)
    default = re.fullmatch(r"\$\{ANTIRELOU_CAMPAIGNS:-(.+)\}", source).group(1)
    assert (DEPLOY / default).is_file()
    assert target == dockerfile_env()["ANTIRELOU_CONFIG"]

    # The other workers: the same service but for --no-dashboard and the admin ports.
    stages = services["worker-stages"]
    assert {k: v for k, v in stages.items() if k not in ("environment", "ports")} == {
        k: v for k, v in worker.items() if k not in ("environment", "ports")}
    stages_env = {k: str(v) for k, v in stages["environment"].items()}
    assert stages_env == {**env, "ANTIRELOU_NO_DASHBOARD": "1"} and stages["ports"] == []
    assert "ANTIRELOU_NO_DASHBOARD" not in env and worker["ports"]
    assert parsed_worker_args({k: v for k, v in stages_env.items() if not v.startswith("${")},
                              monkeypatch).no_dashboard is True
    monkeypatch.delenv("ANTIRELOU_NO_DASHBOARD")
    assert parsed_worker_args(plain, monkeypatch).no_dashboard is False

    # The webhook front: `antirelou worker --role web` of the same deployment, no Ray.
    web = services["webhook"]
    assert web["image"] == image and "entrypoint" not in web
    assert web["command"] == ["worker", "--role", "web"]
    web_env = {k: str(v) for k, v in web["environment"].items()}
    assert set(web_env) <= env_names_read_by_the_code()
    assert not any(k.startswith("RAY_") for k in web_env)
    for name, value in web_env.items():
        assert value == env[name], name
    assert {k: web["depends_on"][k]["condition"] for k in kafkas} == {
        k: "service_healthy" for k in kafkas}
    assert "/health" in " ".join(web["healthcheck"]["test"])
    assert web["volumes"] == worker["volumes"]
    for name in web_env:
        monkeypatch.setenv(name, web_env[name])
    assert build_parser().parse_args(web["command"]).role == "web"
    host_ports = [p.split(":")[0] for svc in (web, worker) for p in svc["ports"]]
    ranges = [tuple(map(int, r.split("-"))) for r in host_ports]
    assert ranges[0][1] < ranges[1][0]  # webhooks and workers on host ports of their own
