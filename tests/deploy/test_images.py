"""The API image, built for real from Dockerfile.api wherever podman (or docker) is installed,
and run as compose and k8s run it: a non-root user, a read-only root filesystem with a tmpfs
/tmp, healthy by its own HEALTHCHECK, and no build secret in any layer. (`make compose-check`
builds on this with both images and the whole stack; it takes longer than the suite.)

Where no registry is reachable, the FROM image is a local stand-in (`make base-images`),
built here first when missing and mmdebstrap is installed."""

import json
import shutil
import socket
import time

import httpx
import pytest

from tests.containers import base_images, engine, images

pytestmark = pytest.mark.skipif(engine.engine() is None, reason="no container engine (apt-get install podman)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api_image() -> str:
    base = "docker.io/library/python:3.11-slim"
    if not engine.image_exists(base):
        if not shutil.which("mmdebstrap"):
            pytest.skip(f"{base} is missing and mmdebstrap is not installed (make base-images)")
        assert base_images.main([]) == 0
    images.build("api", quiet=True)
    return engine.API_IMAGE


def test_the_api_image_runs_non_root_read_only_and_healthy(api_image):
    image = json.loads(engine.run("image", "inspect", api_image, capture=True).stdout)[0]
    assert image["Config"]["User"] == "10001"
    healthcheck = image.get("Healthcheck") or image["Config"]["Healthcheck"]  # podman's place, docker's
    assert "/healthz" in " ".join(healthcheck["Test"])  # kept: built with --format docker
    port = free_port()
    name = f"qi-test-api-{port}"
    engine.run("run", "-d", "--rm", "--name", name, "--read-only", "--tmpfs", "/tmp", "-p", f"127.0.0.1:{port}:8000",
               "-e", "REDIS_URL=redis://127.0.0.1:1/0", api_image, capture=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json() == {"status": "ok"}
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, engine.run("logs", name, check=False, capture=True).stderr
                time.sleep(0.5)
        if engine.engine() == "podman":
            assert engine.run("healthcheck", "run", name, check=False, capture=True).returncode == 0
        whoami = engine.run("exec", name, "python", "-c", "import os; print(os.getuid())", capture=True).stdout
        assert whoami.strip() == "10001"
        write = engine.run("exec", name, "python", "-c", "open('/app/x', 'w')", check=False, capture=True)
        assert write.returncode != 0
        assert "Read-only file system" in write.stderr
    finally:
        engine.run("rm", "-f", name, check=False, capture=True)


def test_no_build_secret_or_compiler_in_the_api_image(api_image):
    history = engine.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", api_image, capture=True).stdout
    assert "BEGIN CERTIFICATE" not in history
    listing = engine.image_files(api_image)
    assert "opt/venv/bin/uvicorn" in listing  # the listing is real
    for path in ("run/secrets/ca-bundle", "usr/bin/gcc", "site-packages/tensorflow/", "site-packages/tests/",
                 "site-packages/devstack/", "site-packages/shared/processes.py", "site-packages/shared/stack.py"):
        assert path not in listing, path
