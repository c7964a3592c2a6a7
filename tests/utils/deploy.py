"""Deployment files, rendered and read for the tests in tests/deploy."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.settings import REPO_ROOT, Settings

K8S = REPO_ROOT / "k8s"
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}


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
