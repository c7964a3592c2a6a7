import json
import re

from prometheus_client.metrics import MetricWrapperBase

from api import metrics as api_metrics
from devstack.commands import FLOWER_MAX_TASKS, flower_argv
from shared.settings import REPO_ROOT, Settings
from tests.utils.deploy import SETTINGS_ENV, flower_max_tasks, maxmemory_share
from worker.inference import metrics as worker_metrics

MONITORING = REPO_ROOT / "k8s" / "monitoring"
NOT_SETTINGS = {"API_WORKERS", "FLOWER_BASIC_AUTH", "NVIDIA_VISIBLE_DEVICES", "REDISCLI_AUTH",
                "GF_SECURITY_ADMIN_PASSWORD", "SENTINEL_NAME"}


def test_services_wait_for_healthy_dependencies(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert condition["condition"] in ("service_healthy", "service_started"), name
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in services["redis"]
    assert "healthcheck" in services["api"]


def test_redis_is_durable_and_protected(compose):
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    # noeviction does nothing without maxmemory; ~75 % leaves room before the OOM killer.
    assert 0.6 <= maxmemory_share(command, compose["services"]["redis"]["mem_limit"]) <= 0.8
    assert "${REDIS_PASSWORD:?" in command[command.index("--requirepass") + 1]
    assert "redis-data:/data" in compose["services"]["redis"]["volumes"]


def test_flower_bounds_its_tasks_as_make_run_does(compose):
    """Flower's default keeps 100,000 tasks (~480 MiB); every way of starting it keeps fewer."""
    assert flower_max_tasks(flower_argv(5555)) == FLOWER_MAX_TASKS
    assert flower_max_tasks(compose["services"]["flower"]["entrypoint"]) == FLOWER_MAX_TASKS


def test_secrets_are_required_not_defaulted():
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    for secret in ("REDIS_PASSWORD", "FLOWER_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(r"\$\{" + secret + r":\?", text), secret
        assert not re.search(r"\$\{" + secret + r":-", text), secret


def test_profiles_gpu_and_monitoring(compose):
    services = compose["services"]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["VARIANT"] == "gpu"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["worker"]["build"]["args"]["VARIANT"] == "cpu"
    assert "profiles" not in services["worker"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]


def test_env_vars_are_real_settings(compose):
    for name, service in compose["services"].items():
        for var in service.get("environment", {}):
            assert var in SETTINGS_ENV | NOT_SETTINGS, (name, var)
    assert compose["services"]["worker"]["environment"]["QUEUE_NAME"] == Settings().queue_name


def test_prometheus_scrapes_real_services_and_ports(compose):
    import yaml

    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]}
    settings = Settings()
    assert targets == {"api": f"api:{settings.ops_port}", "worker": f"worker:{settings.worker_metrics_port}",
                       "flower": "flower:5555"}
    for target in targets.values():
        assert target.split(":")[0] in compose["services"]
    # The API's /metrics is on its ops port, which must listen beyond the container's loopback.
    api = compose["services"]["api"]["environment"]
    assert api["OPS_HOST"] == "0.0.0.0"
    assert int(api.get("OPS_PORT", settings.ops_port)) == settings.ops_port


def published(service: dict) -> list[tuple[str, int]]:
    """(host address, container port) of each port a service publishes ("" for all addresses)."""
    found = []
    for spec in service.get("ports", []):
        *host, container = str(spec).split(":")
        found.append((host[0] if len(host) == 2 else "", int(container.split("/")[0])))
    return found


def test_only_the_api_is_published_beyond_loopback(compose):
    """Flower and Prometheus are for operators on the host (Prometheus has no password); the
    API's ops port (/metrics, /queue) is not published at all."""
    services = compose["services"]
    assert published(services["flower"]) == [("127.0.0.1", 5555)]
    assert published(services["prometheus"]) == [("127.0.0.1", 9090)]
    assert published(services["api"]) == [("", 8000)]
    assert all(port != Settings().ops_port for _, port in published(services["api"]))


def test_dashboard_queries_only_metrics_that_exist():
    ours = {family.name for module in (api_metrics, worker_metrics) for metric in vars(module).values()
            if isinstance(metric, MetricWrapperBase) for family in metric.describe()}
    ours.add("inference_queue_backlog_jobs")  # shared.broker.backlog's collector, read at scrape time
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "inference.json").read_text())
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("throughput", "latency", "batch", "backlog", "error", "workers"):
        assert topic in titles, topic
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b((?:inference|http)_[a-z_]+?)(?:_bucket|_sum|_count|_total)?\b", target["expr"]):
                assert name in ours or name.removesuffix("_total") in ours, (panel["title"], name)


def test_api_workers_and_training_share_the_model_store(compose):
    services = compose["services"]
    for name in ("api", "worker", "training"):
        mounts = services[name]["volumes"]
        assert any((m.get("source") if isinstance(m, dict) else m.split(":")[0]) == "models" for m in mounts), name
        assert services[name]["environment"]["MODEL_DIR"] == "/models", name
    assert "worker.training.app" in services["training"]["entrypoint"]
    assert "training" in services["training"]["entrypoint"]


def test_profile_ha_adds_a_replica_and_three_sentinels_the_services_can_name(compose):
    services = compose["services"]
    ha = {name for name, service in services.items() if service.get("profiles") == ["ha"]}
    assert ha == {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1:replica.index("--replicaof") + 3] == ["redis", "6379"]
    assert replica[replica.index("--maxmemory-policy") + 1] == "noeviction"
    for command in (replica, services["redis"]["command"]):  # either may be the primary's replica later
        assert "${REDIS_PASSWORD:?" in command[command.index("--masterauth") + 1]
    names = set()
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        sentinel = services[name]
        script = sentinel["command"][0]
        assert "sentinel monitor qi redis 6379 2" in script  # quorum 2 of 3
        assert sentinel["read_only"] is True
        assert "--sentinel" in script
        names.add(sentinel["environment"]["SENTINEL_NAME"])
    assert names == {"sentinel-1", "sentinel-2", "sentinel-3"}
    # The services switch by environment: the variable the README's command sets, and the master's name.
    env = compose["x-app-env"]
    assert env["REDIS_SENTINELS"] == "${REDIS_SENTINELS:-}"
    assert env["REDIS_MASTER_NAME"] == "qi"
    assert "REDIS_SENTINELS=sentinel-1:26379,sentinel-2:26379,sentinel-3:26379" in (
        REPO_ROOT / "README.md").read_text()
