"""API keys stay on wherever the service is deployed: AUTH_DISABLED is for experiments on
one machine, so neither compose nor any k8s rendering may set it (issue #10)."""

from pathlib import Path

import yaml

from shared.settings import REPO_ROOT
from tests.utils.deploy import K8S, render


def _mentions_auth_disabled(text: str) -> bool:
    return "AUTH_DISABLED" in text.upper()


def test_compose_does_not_turn_auth_off(compose):
    assert not _mentions_auth_disabled(yaml.safe_dump(compose))
    for env_file in REPO_ROOT.glob("*.env"):
        assert not _mentions_auth_disabled(env_file.read_text()), env_file


def test_no_k8s_rendering_turns_auth_off():
    kustomizations = [path.parent for path in K8S.rglob("kustomization.yaml")]
    assert len(kustomizations) >= 2
    for folder in kustomizations:
        if "kind: Component" in (folder / "kustomization.yaml").read_text():
            continue  # rendered within the overlays that use it; its files are read below
        assert not _mentions_auth_disabled(yaml.safe_dump_all(render(Path(folder)))), folder
    for manifest in K8S.rglob("*.yaml"):
        assert not _mentions_auth_disabled(manifest.read_text()), manifest
