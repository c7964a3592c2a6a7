"""On-demand loads (worker.inference.loads, worker.inference.runtime): off the model thread,
only for loadable versions, at most one per cooldown, never unloading a version jobs wait
for; and what a version folder may hold: an artifact inside it, loaded with safe_mode.

A real runtime on the CPU over a MODEL_DIR of copies of digits:1; the catalog's "marked
loadable" is a set here (the API and Redis side: tests/api/test_model_versions.py and
tests/neighbours/test_models.py)."""

import threading

import numpy as np
import pytest

from shared.registry import Registry
from tests.utils.versions import digits_versions
from worker.inference.loads import OnDemand
from worker.inference.runtime import ModelUnavailable, Runtime


class Resubmitted:
    """What the loads thread hands back to the model thread."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.event = threading.Event()

    def __call__(self, items: list[str]) -> None:
        self.items.extend(items)
        self.event.set()


@pytest.fixture
def runtime(tmp_path) -> tuple[Runtime, set[str]]:
    """digits 1, 2 and 3; 3 (the newest) the default, the only one loaded; one version kept
    besides the default at most."""
    marked: set[str] = set()
    registry = Registry(digits_versions(tmp_path, "1", "2", "3"), "digits", strict=False)
    return Runtime(registry, max_batch_size=4, max_loaded_versions=1, is_marked=marked.__contains__), marked


def test_a_version_that_is_not_loadable_fails_at_once_and_loads_nothing(runtime):
    rt, _ = runtime
    loads = OnDemand(rt, cooldown_seconds=0, max_waiting=8)
    assert sorted(rt.models) == ["digits:3"]
    assert not loads.hold("digits:1", "job")  # runs now, and fails:
    with pytest.raises(ModelUnavailable, match="not loadable on demand"):
        rt.models.load("digits:1")
    assert (loads.loads, sorted(rt.models)) == (0, ["digits:3"])


def test_a_loadable_version_loads_off_the_model_thread_and_its_jobs_wait_for_it(runtime):
    rt, marked = runtime
    marked.add("digits:1")
    loads = OnDemand(rt, cooldown_seconds=0, max_waiting=8)
    loads.resubmit = back = Resubmitted()
    assert loads.hold("digits:1", "job-a")
    assert loads.hold("digits:1", "job-b")
    # Meanwhile the model thread serves the loaded version.
    assert rt.models["digits:3"].predict(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 10)
    assert back.event.wait(60)
    assert back.items == ["job-a", "job-b"]  # in order, once loaded
    assert "digits:1" in rt.models
    assert rt.models.load("digits:1") is rt.models["digits:1"]
    assert loads.loads == 1


def test_at_most_one_on_demand_load_per_cooldown(runtime):
    rt, marked = runtime
    marked.update({"digits:1", "digits:2"})
    loads = OnDemand(rt, cooldown_seconds=3600, max_waiting=8)
    loads.resubmit = back = Resubmitted()
    assert loads.hold("digits:1", "job-1")
    assert back.event.wait(60)
    back.event.clear()
    # Alternating versions: the second load waits out the cooldown; its jobs wait (not fail)...
    for _ in range(5):
        assert loads.hold("digits:2", "job-2")
    assert not back.event.wait(2)
    assert (loads.loads, loads.waiting, "digits:2" in rt.models) == (1, 5, False)
    loads.stop()


def test_no_version_with_jobs_waiting_is_unloaded(runtime):
    rt, marked = runtime
    marked.update({"digits:1", "digits:2"})
    assert rt.load_now("digits:1")
    assert rt.load_now("digits:2")
    assert sorted(rt.models) == ["digits:2", "digits:3"]
    rt.busy = lambda: {"digits:2"}
    assert rt.load_now("digits:1")
    assert sorted(rt.models) == ["digits:1", "digits:2", "digits:3"]  # 2 kept: jobs wait for it
    rt.busy = set
    rt.running = {"digits:1"}  # a batch runs on it
    rt.sync()
    assert sorted(rt.models) == ["digits:1", "digits:3"]


def test_waiting_jobs_are_capped(runtime):
    """They hold the worker's prefetch room: beyond the cap a job fails at once, so the other
    tenants' jobs are still received."""
    rt, marked = runtime
    marked.update({"digits:1", "digits:2"})
    loads = OnDemand(rt, cooldown_seconds=3600, max_waiting=3)
    loads.resubmit = back = Resubmitted()
    assert loads.hold("digits:1", "first")
    assert back.event.wait(60)  # loaded; the next load is an hour away
    held = [loads.hold("digits:2", f"job-{i}") for i in range(5)]
    assert held == [True, True, True, False, False]
    with pytest.raises(ModelUnavailable, match="too many jobs wait"):
        rt.models.load("digits:2")
    loads.stop()


@pytest.mark.parametrize("artifact", ["../1/model.keras", "/etc/hostname", "link"])
def test_an_artifact_outside_its_version_folder_is_refused(tmp_path, artifact):
    models = digits_versions(tmp_path, "1", "2")
    folder = models / "digits" / "2"
    if artifact == "link":  # a symbolic link out of the folder, under the expected name
        (folder / "model.keras").unlink()
        (folder / "model.keras").symlink_to(models / "digits" / "1" / "model.keras")
    else:
        digits_versions(models, "9", artifact=artifact)  # a manifest pointing out
        folder = models / "digits" / "9"
    registry = Registry(models, "digits", strict=False)
    registry.refresh({"digits": "1"})  # 1 the default; the newest, the bad one, loaded too at start
    rt = Runtime(registry, max_batch_size=2)
    key = f"digits:{folder.name}"
    assert key not in rt.models
    assert "outside its version folder" in rt.failed[key]
    assert "digits:1" in rt.models  # the others serve on


def test_an_artifact_with_code_in_it_is_refused(tmp_path):
    """safe_mode=True: a Lambda layer's pickled bytecode is never deserialized (it would run)."""
    import keras

    models = digits_versions(tmp_path, "1", "2")
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(
        keras.layers.Lambda(lambda x: x * 2)(inputs)))
    keras.Model(inputs, outputs).save(models / "digits" / "2" / "model.keras")
    rt = Runtime(Registry(models, "digits", strict=False), max_batch_size=2)
    assert "digits:2" not in rt.models
    assert "safe_mode" in rt.failed["digits:2"]
