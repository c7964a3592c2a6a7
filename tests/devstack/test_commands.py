"""devstack's command lines are the container entrypoint's (worker/launch.py): `make run`, the
tests and the images start the same Celery workers."""

from devstack.commands import training_worker_argv
from worker.launch import plan, worker_argv


def test_the_local_inference_worker_runs_as_the_container_entrypoint_starts_it():
    (container, _), = plan({"CUDA_VISIBLE_DEVICES": ""}, [])
    local = worker_argv("inference")
    assert [arg for arg in container if arg != "cpu@%h"] == [arg for arg in local if arg != "inference@%h"]


def test_the_training_worker_is_a_worker_of_its_own_app_and_queue():
    argv = training_worker_argv()
    assert argv[:len(worker_argv("training", "worker.training.app"))] == worker_argv("training", "worker.training.app")
    assert argv[argv.index("-Q") + 1] == "training"
    assert argv[argv.index("--pool") + 1] == "solo"

