import json
import os
from urllib.parse import urlsplit

import pytest
from kubernetes_validate import validate

from api import ops
from api.main import app
from devstack.commands import FLOWER_MAX_TASKS
from shared.settings import Settings
from tests.utils.deploy import (
    EVERYONE,
    K8S,
    SETTINGS_ENV,
    admitted,
    by_kind,
    flower_max_tasks,
    maxmemory_share,
    render,
)

CRDS = {"ScaledObject"}
NOT_SETTINGS = {"REDIS_PASSWORD", "KERAS_HOME", "FLOWER_BASIC_AUTH", "REDISCLI_AUTH"}
WORKLOADS = ("Deployment", "StatefulSet")


def containers(docs):
    for kind in WORKLOADS:
        for name, doc in by_kind(docs, kind).items():
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield name, doc, container


@pytest.mark.parametrize("variant", ["base", "cpu"])
def test_every_manifest_validates_against_the_kubernetes_schema(variant, request):
    for doc in request.getfixturevalue(variant):
        if doc["kind"] not in CRDS:
            validate(doc, "1.32.0", strict=True)


def test_managed_redis_component_swaps_the_statefulset_for_an_alias(tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "base", overlay)],
        "components": [os.path.relpath(K8S / "components" / "managed-redis", overlay)],
    }))
    docs = render(overlay)
    assert "redis" not in by_kind(docs, "StatefulSet")
    assert by_kind(docs, "Service")["redis"]["spec"]["type"] == "ExternalName"


def test_containers_are_hardened_and_sized(base):
    for name, doc, container in containers(base):
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
        assert "livenessProbe" in container, name
        assert "readinessProbe" in container or name == "webhooks", name


def test_gpu_workers_by_default_cpu_in_the_overlay(base, cpu):
    gpu_pod = by_kind(base, "Deployment")["worker"]["spec"]["template"]["spec"]
    assert gpu_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_pod["tolerations"]
    assert gpu_pod["containers"][0]["image"].endswith("-gpu")
    cpu_pod = by_kind(cpu, "Deployment")["worker"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]
    assert "tolerations" not in cpu_pod
    assert "nodeSelector" not in cpu_pod
    assert cpu_pod["containers"][0]["image"].endswith("-cpu")
    # Long enough to drain a batch.
    assert gpu_pod["terminationGracePeriodSeconds"] >= 60


def test_env_vars_are_real_settings(base):
    config = by_kind(base, "ConfigMap")["inference-config"]["data"]
    assert set(config) <= SETTINGS_ENV, set(config) - SETTINGS_ENV
    assert config["QUEUE_NAME"] == Settings().queue_name
    for name, _, container in containers(base):
        for var in container.get("env", []):
            assert var["name"] in SETTINGS_ENV | NOT_SETTINGS, (name, var["name"])


def test_keda_scales_on_queued_plus_in_flight_of_the_real_queue(base):
    scaled = by_kind(base, "ScaledObject")["worker"]
    triggers = {t["name"]: t for t in scaled["spec"]["triggers"]}
    # Both from GET /queue: the fair queue's Celery list holds only a doorbell, so KEDA's
    # redis list trigger would see 0 or 1 whatever the backlog.
    for name in ("queued", "in_flight"):
        trigger = triggers[name]
        assert trigger["type"] == "metrics-api"
        # The ops port's Service, not the public one.
        url = urlsplit(trigger["metadata"]["url"])
        ops_service = by_kind(base, "Service")["api-ops"]
        assert url.hostname == f"api-ops.{ops_service['metadata']['namespace']}.svc.cluster.local"
        assert url.port == ops_service["spec"]["ports"][0]["port"] == Settings().ops_port
        assert url.path == "/queue"
        assert trigger["metadata"]["valueLocation"] == name
    assert scaled["spec"]["advanced"]["scalingModifiers"]["formula"] == "queued + in_flight"
    assert scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["scaleTargetRef"]["name"] in by_kind(base, "Deployment")


def test_probes_and_ports_match_the_code(base):
    routes = set(app.openapi()["paths"])
    assert "/queue" in {route.path for route in ops.create_app().routes}
    api = by_kind(base, "Deployment")["api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] in routes
    assert api["livenessProbe"]["httpGet"]["path"] in routes
    assert api["ports"][0]["containerPort"] == 8000
    worker = by_kind(base, "Deployment")["worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["ports"][0]["containerPort"] == Settings().worker_metrics_port
    service_ports = {name: s["spec"]["ports"][0] for name, s in by_kind(base, "Service").items()}
    assert service_ports["api"]["port"] == 8000
    assert service_ports["redis"]["port"] == 6379


def test_redis_refuses_writes_before_it_reaches_its_memory_limit(base):
    redis = by_kind(base, "StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"][0]
    command = redis["args"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert 0.6 <= maxmemory_share(command, redis["resources"]["limits"]["memory"]) <= 0.8


def test_flower_bounds_its_tasks_as_make_run_does(base):
    flower = by_kind(base, "Deployment")["flower"]["spec"]["template"]["spec"]["containers"][0]
    assert flower_max_tasks(flower["command"] + flower.get("args", [])) == FLOWER_MAX_TASKS


def test_only_our_workloads_reach_redis(base):
    policy = by_kind(base, "NetworkPolicy")["redis-clients-only"]
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"]
    redis_clients = {"api", "worker", "webhooks", "flower", "training"}
    assert set(allowed) == redis_clients
    assert len(policy["spec"]["ingress"][0]["from"]) == 1, "nothing else (KEDA reads GET /queue, not Redis)"
    deployments = set(by_kind(base, "Deployment"))
    assert redis_clients <= deployments


def test_the_ops_port_is_off_the_public_service(base):
    ops_port = Settings().ops_port
    pod = by_kind(base, "Deployment")["api"]["spec"]["template"]
    api = pod["spec"]["containers"][0]
    assert {port["name"]: port["containerPort"] for port in api["ports"]} == {"http": 8000, "ops": ops_port}
    env = {var["name"]: var.get("value") for var in api["env"]}
    assert env["OPS_HOST"] == "0.0.0.0"  # reachable from KEDA and Prometheus (loopback by default)
    assert int(env.get("OPS_PORT", ops_port)) == ops_port
    services = by_kind(base, "Service")
    public, internal = services["api"]["spec"], services["api-ops"]["spec"]
    assert [(port["port"], port["targetPort"]) for port in public["ports"]] == [(8000, "http")]
    assert [(port["port"], port["targetPort"]) for port in internal["ports"]] == [(ops_port, "ops")]
    assert internal.get("type", "ClusterIP") == "ClusterIP"
    assert internal["selector"] == public["selector"]
    # Prometheus scrapes each pod's ops port.
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ops_port)
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"


PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
KEDA = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}


def test_the_ops_port_admits_keda_and_prometheus_only(base):
    assert EVERYONE in admitted(base, "api", "http", 8000)  # the public port
    ops_peers = admitted(base, "api", "ops", Settings().ops_port)
    assert sorted(ops_peers, key=str) == sorted([KEDA, PROMETHEUS], key=str)
    assert admitted(base, "worker", "metrics", Settings().worker_metrics_port) == [PROMETHEUS]


def test_flower_admits_no_namespace(base):
    """Flower is reached with kubectl port-forward, which NetworkPolicies do not filter;
    nothing in the cluster needs it (it admitted every namespace before issue #10)."""
    assert admitted(base, "flower", "http", 5555) == []
    assert admitted(base, "webhooks", "http", 5555) == []


def test_flux_deploys_an_existing_path():
    import yaml

    sync = yaml.safe_load((K8S / "flux" / "sync.yaml").read_text())
    source = yaml.safe_load((K8S / "flux" / "source.yaml").read_text())
    assert sync["spec"]["sourceRef"]["name"] == source["metadata"]["name"]
    assert (K8S.parent / sync["spec"]["path"] / "kustomization.yaml").is_file()


def test_one_model_store_shared_by_api_workers_and_training(base):
    """Versions written by the training worker are read by the API and loaded by the workers
    on other nodes: one ReadWriteMany claim, mounted at MODEL_DIR by all three, writable only
    by the training worker; a fresh claim is seeded from the worker image."""
    claim = by_kind(base, "PersistentVolumeClaim")["models"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    model_dir = by_kind(base, "ConfigMap")["inference-config"]["data"]["MODEL_DIR"]
    deployments = by_kind(base, "Deployment")
    for name, writable in (("api", False), ("worker", False), ("training", True)):
        pod = deployments[name]["spec"]["template"]["spec"]
        volume = next(v["name"] for v in pod["volumes"]
                      if v.get("persistentVolumeClaim", {}).get("claimName") == "models")
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume)
        assert mount["mountPath"] == model_dir, name
        assert mount.get("readOnly", False) is not writable, name
        assert all(var["name"] != "MODEL_DIR" for var in pod["containers"][0].get("env", [])), name
    for name in ("worker", "training"):
        seed = deployments[name]["spec"]["template"]["spec"]["initContainers"][0]
        assert "cp -Rn /models/." in seed["command"][-1], name


def _with_component(tmp_path, component: str) -> list[dict]:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "base", overlay)],
        "components": [os.path.relpath(K8S / "components" / component, overlay)],
    }))
    return render(overlay)


def test_sentinel_component_runs_three_redis_with_a_sentinel_each_and_points_every_workload_at_them(tmp_path):
    docs = _with_component(tmp_path, "sentinel")
    for doc in docs:
        if doc["kind"] not in CRDS:
            validate(doc, "1.32.0", strict=True)
    redis = by_kind(docs, "StatefulSet")["redis"]
    spec = redis["spec"]["template"]["spec"]
    assert redis["spec"]["replicas"] == 3
    assert redis["spec"]["serviceName"] == "redis-headless"
    assert by_kind(docs, "Service")["redis-headless"]["spec"]["clusterIP"] == "None"
    containers_by_name = {c["name"]: c for c in spec["containers"]}
    assert set(containers_by_name) == {"redis", "sentinel"}
    args = containers_by_name["redis"]["args"]
    assert args[:2] == ["redis-server", "/conf/role.conf"]  # the init container's role first
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert 0.6 <= maxmemory_share(args, containers_by_name["redis"]["resources"]["limits"]["memory"]) <= 0.8
    assert "--masterauth" in args
    for container in [*spec["containers"], *spec["initContainers"]]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["limits"]
    # The Sentinels' own script: quorum 2 of 3, monitoring the name the workloads ask for.
    scripts = by_kind(docs, "ConfigMap")["redis-sentinel-scripts"]["data"]
    config = by_kind(docs, "ConfigMap")["inference-config"]["data"]
    assert f"sentinel monitor {config['REDIS_MASTER_NAME']} $master 6379 2" in scripts["sentinel.sh"]
    assert set(config) <= SETTINGS_ENV
    sentinels = config["REDIS_SENTINELS"].split(",")
    assert sentinels == [f"redis-{i}.redis-headless:26379" for i in range(redis["spec"]["replicas"])]
    assert int(config["REDIS_MIN_REPLICAS_ACKED"]) <= redis["spec"]["replicas"] - 1
    # Every workload of ours has the Sentinels' password; and reaches them through the policy.
    for name, doc in by_kind(docs, "Deployment").items():
        env = {var["name"] for var in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert {"REDIS_SENTINEL_PASSWORD", "REDIS_PASSWORD"} <= env, name
        assert env <= SETTINGS_ENV | NOT_SETTINGS, name
    policy = by_kind(docs, "NetworkPolicy")["redis-clients-only"]
    ports = [{p["port"] for p in rule["ports"]} for rule in policy["spec"]["ingress"]]
    assert ports == [{6379, 26379}, {6379, 26379}]
    assert policy["spec"]["ingress"][1]["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "redis"}
