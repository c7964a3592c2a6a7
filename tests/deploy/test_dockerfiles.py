import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import REPO_ROOT

HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


@pytest.mark.parametrize("name", ["Dockerfile.api", "Dockerfile.worker"])
def test_hadolint_passes(name):
    result = subprocess.run([HADOLINT, str(REPO_ROOT / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["Dockerfile.api", "Dockerfile.worker"])
def test_non_root_and_multi_stage(name):
    text = (REPO_ROOT / name).read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^USER 10001$", text, re.M)
    assert "PYTHONUNBUFFERED=1" in text


def test_api_image_has_no_tensorflow_and_checks_health():
    text = (REPO_ROOT / "Dockerfile.api").read_text()
    assert re.search(r'pip install -c constraints.txt "\.\[api\]"', text)
    instructions = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any("tensorflow" in line.lower() for line in instructions)
    assert "/healthz" in text
    assert "--workers" in text


def test_worker_variants_and_baked_models():
    import tomllib

    text = (REPO_ROOT / "Dockerfile.worker").read_text()
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "ARG VARIANT=cpu" in text
    assert '".[worker,${VARIANT}]"' in text
    assert any(d.startswith("tensorflow-cpu==") for d in extras["cpu"])
    assert any(d.startswith("tensorflow[and-cuda]==") for d in extras["gpu"])
    assert "COPY --chown=10001:10001 models/digits /models/digits" in text
    assert "MODEL_DIR=/models" in text
    assert 'ENTRYPOINT ["python", "-m", "worker.launch"]' in text


def test_dockerignore_keeps_the_context_small():
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".git", "tests", "benchmarks", "devstack"):
        assert path in ignored


def test_the_gpu_variant_differs_from_the_cpu_one_only_by_the_extra():
    """VARIANT is used in one place, the pip line's extra: the GPU image is the CPU one with
    tensorflow[and-cuda] for tensorflow-cpu (it is not built here: no GPU, several GB)."""
    lines = [line for line in (REPO_ROOT / "Dockerfile.worker").read_text().splitlines()
             if "VARIANT" in line and not line.lstrip().startswith("#")]
    assert lines == ["ARG VARIANT=cpu", "ARG VARIANT",
                     '    && /opt/venv/bin/pip install -c constraints.txt ".[worker,${VARIANT}]" \\'], lines
