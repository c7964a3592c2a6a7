"""The batcher's policy, with real threads: a batch starts when the model is free and a full
batch waits, or the oldest item has waited MAX_DELAY for company; items handed over while a
batch runs form the next one."""

import threading
import time

from worker.inference.batcher import Batcher


class Model:
    """Records each batch; a batch may be held until released (a slow model)."""

    def __init__(self, hold: bool = False):
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.done: list[tuple[list[int], object]] = []
        self.finished = threading.Semaphore(0)

    def run(self, batch: list[int]) -> int:
        self.batches.append(batch)
        self.started.set()
        self.release.wait(10)
        if -1 in batch:
            raise ValueError("a bad item")
        return len(batch)

    def ran(self, batch: list[int], outcome: object, started: float) -> None:
        self.done.append((batch, outcome))
        self.finished.release()

    def wait_batches(self, n: int) -> None:
        for _ in range(n):
            assert self.finished.acquire(timeout=10), "a batch did not finish"


def batcher(model: Model, max_batch_size: int = 4, max_delay_s: float = 0.05) -> Batcher:
    b = Batcher(model.run, model.ran, max_batch_size, max_delay_s)
    b.start()
    return b


def test_a_full_batch_starts_at_once_and_the_rest_waits_at_most_max_delay():
    model = Model()
    b = batcher(model, max_batch_size=4, max_delay_s=0.3)
    started = time.monotonic()
    b.submit(list(range(6)))
    model.wait_batches(1)
    assert time.monotonic() - started < 0.25, "a full batch does not wait for MAX_DELAY"
    model.wait_batches(1)
    assert time.monotonic() - started >= 0.29, "a partial batch waits MAX_DELAY for company"
    assert model.batches == [[0, 1, 2, 3], [4, 5]]
    b.stop(5)


def test_a_lone_item_gets_company_that_arrives_within_max_delay():
    model = Model()
    b = batcher(model, max_batch_size=8, max_delay_s=0.3)
    b.submit([1])
    time.sleep(0.05)
    b.submit([2, 3])
    model.wait_batches(1)
    assert model.batches == [[1, 2, 3]]
    b.stop(5)


def test_items_handed_over_while_a_batch_runs_form_the_next_batch():
    model = Model(hold=True)
    b = batcher(model, max_batch_size=4, max_delay_s=0.001)
    b.submit([0])
    assert model.started.wait(5)
    for i in range(1, 10):  # received one by one while the model is busy
        b.submit([i])
    model.release.set()
    model.wait_batches(4)
    assert model.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    b.stop(5)


def test_a_failing_batch_is_reported_and_the_thread_serves_on():
    model = Model()
    b = batcher(model, max_delay_s=0.001)
    b.submit([-1])
    model.wait_batches(1)
    b.submit([1])
    model.wait_batches(1)
    assert isinstance(model.done[0][1], ValueError)
    assert model.done[1] == ([1], 1)
    b.stop(5)


def test_stop_lets_the_running_batch_finish_and_returns_what_waited():
    model = Model(hold=True)
    b = batcher(model, max_batch_size=2, max_delay_s=0.001)
    b.submit([0, 1, 2, 3, 4])
    assert model.started.wait(5)
    threading.Timer(0.1, model.release.set).start()
    left = b.stop(5)
    assert model.done == [([0, 1], 2)], "the running batch finished and was reported"
    assert left == [2, 3, 4], "no other batch started"


def test_a_thread_that_outlived_its_stop_serves_on_and_no_second_one_starts():
    model = Model(hold=True)
    b = batcher(model, max_batch_size=1, max_delay_s=0.001)
    b.submit([0])
    assert model.started.wait(5)
    b.stop(0.05)  # times out: the batch is still in the model
    b.start()  # the consumer restarts
    assert [t.name for t in threading.enumerate()].count("model") == 1
    model.release.set()
    b.submit([1])
    model.wait_batches(2)
    assert model.batches == [[0], [1]]
    b.stop(5)
