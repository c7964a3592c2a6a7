"""/metrics on the API (its ops port) and the worker, scraped over HTTP after real traffic."""

import httpx

from devstack.processes import sample
from tests.utils.samples import heldout_png


def test_api_metrics_count_requests_submissions_rejections_and_backlog(api, worker, digit_png):
    before = api.ops.get("/metrics").text
    job = api.submit(digit_png).json()
    api.wait_terminal(job["id"])
    api.submit(b"not an image")
    after = api.ops.get("/metrics").text

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("inference_jobs_submitted_total", model="digits:1") == 1
    assert delta("inference_jobs_rejected_total", reason="unsupported_format") == 1
    assert delta("http_requests_total", method="POST", route="/jobs", status="202") == 1
    assert delta("http_requests_total", method="GET", route="/jobs/{job_id}", status="200") >= 1
    assert sample(after, "http_request_duration_seconds_count", method="POST", route="/jobs") >= 2
    assert 'inference_queue_backlog_jobs{state="queued"}' in after
    assert 'inference_queue_backlog_jobs{state="in_flight"}' in after
    assert all(f'inference_queue_lane_jobs{{lane="{lane}"}}' in after for lane in ("high", "normal", "low"))


def test_worker_metrics_show_batches_jobs_and_model_load(api, worker):
    before = httpx.get(worker.metrics_url).text
    for i in range(3):
        api.wait_terminal(api.submit(heldout_png(i)).json()["id"])
    after = httpx.get(worker.metrics_url).text
    assert sample(after, "inference_jobs_total", model="digits:1", outcome="succeeded") - sample(
        before, "inference_jobs_total", model="digits:1", outcome="succeeded") == 3
    assert sample(after, "inference_batch_size_count") > sample(before, "inference_batch_size_count")
    assert sample(after, "inference_queue_wait_seconds_count", lane="normal") >= 3
    assert sample(after, "inference_duration_seconds_count", model="digits:1") >= 1
    assert sample(after, "inference_model_load_seconds", model="digits:1") > 0
    assert "inference_queue_backlog_jobs" in after
