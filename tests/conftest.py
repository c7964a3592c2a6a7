"""Real parts for every test: redis-server on an ephemeral port, Celery worker and uvicorn
processes started from the repository (devstack.processes, as `make run` starts them), the
committed model.

The APIs run with the result cache off (tests.utils.processes.start_api); the cache test
starts an API of its own."""

from pathlib import Path

import numpy as np
import pytest

from devstack.processes import RedisServer, Worker
from shared.jobstore import JobStore
from tests.utils import samples
from tests.utils.processes import start_api


@pytest.fixture(scope="session")
def logdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker(redis_server, logdir):
    w = Worker(redis_server.url, logdir)
    yield w
    w.stop()


@pytest.fixture(scope="session")
def api(redis_server, logdir):
    a = start_api(redis_server.url, logdir)
    yield a
    a.stop()


@pytest.fixture
def store(redis_server) -> JobStore:
    return JobStore.connect(redis_server.url, ttl_seconds=600, timeout=2)


@pytest.fixture(scope="session")
def heldout() -> tuple[np.ndarray, np.ndarray]:
    """Held-out digits (never trained on) and their labels."""
    return samples.heldout()


@pytest.fixture
def digit_png() -> bytes:
    """A held-out 7."""
    return samples.seven_png()


@pytest.fixture
def private_stack(tmp_path, logdir):
    """A Redis and an API of their own, for tests that stop Redis or must own the queue."""
    server = RedisServer(tmp_path)
    server.start()
    api = start_api(server.url, logdir)
    yield server, api
    api.stop()
    server.stop()
