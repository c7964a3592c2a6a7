"""worker/launch.py: one process per visible GPU, one CPU process otherwise."""

from worker.launch import plan, visible_gpus


def test_one_cpu_worker_without_gpus():
    (argv, env), = plan({"CUDA_VISIBLE_DEVICES": ""}, [])
    assert env["CUDA_VISIBLE_DEVICES"] == "-1"
    assert argv[argv.index("-n") + 1] == "cpu@%h"


def test_one_pinned_worker_per_gpu_with_its_own_metrics_port():
    plans = plan({"NVIDIA_VISIBLE_DEVICES": "0,1,3", "WORKER_METRICS_PORT": "9200"}, ["--concurrency", "1"])
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in plans] == ["0", "1", "3"]
    assert [env["WORKER_METRICS_PORT"] for _, env in plans] == ["9200", "9201", "9202"]
    assert [argv[argv.index("-n") + 1] for argv, _ in plans] == ["gpu0@%h", "gpu1@%h", "gpu3@%h"]
    assert all(argv[-2:] == ["--concurrency", "1"] for argv, _ in plans)


def test_visible_gpus():
    assert visible_gpus({}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({"NVIDIA_VISIBLE_DEVICES": "void"}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5"}) == ["2", "5"]
