"""The container engine the image and compose targets use: podman where it is installed
(with tests/containers/containers.conf), else docker. One place, so `make images`,
`make base-images`, `make compose-check` and the image test agree on it."""

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
CONF = HERE / "containers.conf"

API_IMAGE = "queue-inference/api:0.1.0"
WORKER_IMAGE = "queue-inference/worker:0.1.0-cpu"


def engine() -> str | None:
    """'podman' or 'docker' (CONTAINER_ENGINE overrides), None when neither is usable."""
    wanted = os.environ.get("CONTAINER_ENGINE")
    for name in [wanted] if wanted else ["podman", "docker"]:
        if name and shutil.which(name):
            return name
    return None


def env() -> dict[str, str]:
    """The environment for the engine: podman reads our containers.conf, unless the caller set one."""
    return {"CONTAINERS_CONF": str(CONF), **os.environ}


def run(*argv: str, check: bool = True, capture: bool = False, timeout: float | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    name = engine()
    if name is None:
        raise SystemExit("no container engine: install podman (apt-get install podman) or docker")
    return subprocess.run([name, *argv], check=check, text=True, env=env(), cwd=REPO_ROOT,
                          capture_output=capture, timeout=timeout, input=input)


def image_exists(ref: str) -> bool:
    return run("image", "inspect", ref, check=False, capture=True).returncode == 0


def size_mb(ref: str) -> float:
    return int(run("image", "inspect", "--format", "{{.Size}}", ref, capture=True).stdout.strip()) / 1e6


def image_files(ref: str) -> str:
    """Every path in the image's layers, one a line (`image save`, each layer's tar listed)."""
    pipeline = f"{engine()} image save {ref} | tar -xO --wildcards '*.tar' 2>/dev/null | tar -ti 2>/dev/null"
    return subprocess.run(pipeline, shell=True, capture_output=True, text=True, env=env()).stdout


def ca_bundle() -> str | None:
    """The host's CA bundle, passed to builds as a secret (never a layer) so that pip works
    behind an intercepting HTTPS proxy; None when the host names none."""
    for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(var)
        if path and Path(path).is_file():
            return path
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return str(default) if default.is_file() else None
