"""Deployment files, parsed and rendered: no Docker engine or cluster exists here, so they
are checked statically, and tied to the code they deploy."""

import pytest
import yaml

from shared.settings import REPO_ROOT
from tests.utils.deploy import K8S, render


@pytest.fixture(scope="session")
def base() -> list[dict]:
    return render(K8S / "base")


@pytest.fixture(scope="session")
def cpu() -> list[dict]:
    return render(K8S / "overlays" / "cpu")


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
