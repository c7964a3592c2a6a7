"""Real parts for every test: redis-server on an ephemeral port, Celery worker and uvicorn
processes started from the repository, the committed model."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from models.digits_data import render, split
from shared.jobstore import JobStore
from tests.stack import Api, RedisServer, Worker, wait_for  # noqa: F401 - re-exported for tests


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
    a = Api(redis_server.url, logdir)
    yield a
    a.stop()


@pytest.fixture
def store(redis_server) -> JobStore:
    return JobStore.from_url(redis_server.url, ttl_seconds=600, timeout=2)


@pytest.fixture(scope="session")
def heldout():
    """Held-out digits (never trained on) and their labels."""
    _, images, _, labels = split()
    return images, labels


_sizes = itertools.count(100)


@pytest.fixture
def digit_png(heldout) -> bytes:
    """A held-out 7, drawn at a size no other test used: the result cache never answers it."""
    images, labels = heldout
    return render(images[int(np.flatnonzero(labels == 7)[0])], size=next(_sizes))


@pytest.fixture
def unique_png(heldout):
    """Factory: held-out digit number i, drawn at a size no other test used."""

    def make(index: int = 0) -> bytes:
        return render(heldout[0][index], size=next(_sizes))

    return make


@pytest.fixture
def private_stack(tmp_path, logdir):
    """A Redis and an API of their own, for tests that stop Redis or must own the queue."""
    server = RedisServer(tmp_path)
    server.start()
    api = Api(server.url, logdir)
    yield server, api
    api.stop()
    server.stop()
