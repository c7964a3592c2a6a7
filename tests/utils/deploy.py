"""Deployment files, rendered and read for the tests in tests/deploy."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.settings import REPO_ROOT, Settings

K8S = REPO_ROOT / "k8s"
_UNITS = {"mb": 2**20, "gb": 2**30, "mi": 2**20, "gi": 2**30, "m": 2**20, "g": 2**30}


def size_bytes(value: str) -> int:
    """'768mb', '1Gi', '1g' as bytes (Redis, Kubernetes and compose spellings)."""
    digits = value.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    return int(digits) * _UNITS[value[len(digits):].lower()]


def maxmemory_share(command: list[str], limit: str) -> float:
    """Redis' maxmemory as a share of its container's memory limit."""
    return size_bytes(command[command.index("--maxmemory") + 1]) / size_bytes(limit)
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}


def flower_max_tasks(argv: list[str]) -> int | None:
    """The --max_tasks a Flower command line gives (None: Flower's default, 100,000)."""
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(("--max_tasks=", "--max-tasks="))]
    assert len(values) <= 1, argv
    return int(values[0]) if values else None


def render(kustomization: Path) -> list[dict]:
    """`kubectl kustomize` (kustomize v5 ships with kubectl)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomizations cannot be rendered here")
    out = subprocess.run([kubectl, "kustomize", str(kustomization)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


EVERYONE = "everyone"  # a rule without `from`, or pods no NetworkPolicy selects


def _selects(policy: dict, app: str) -> bool:
    """Whether the policy selects pods labelled app.kubernetes.io/name=app (the labels and
    the `In` expressions these manifests use)."""
    labels = {"app.kubernetes.io/name": app}
    selector = policy["spec"]["podSelector"]
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def admitted(docs: list[dict], app: str, *port: str | int) -> list:
    """Who the NetworkPolicies let reach `app`'s pods on a port (its name or its number):
    the peers of every ingress rule that opens it (a rule without `ports` opens all),
    EVERYONE for a rule without `from`, and [EVERYONE] when no ingress policy selects the
    pods (they are not isolated)."""
    policies = [policy for policy in by_kind(docs, "NetworkPolicy").values()
                if _selects(policy, app) and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])]
    if not policies:
        return [EVERYONE]
    peers: list = []
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = {entry["port"] for entry in rule.get("ports", [])}
            if ports and not ports & set(port):
                continue
            peers.extend(rule.get("from") or [EVERYONE])  # no `from`, or an empty one: any source
    return peers
