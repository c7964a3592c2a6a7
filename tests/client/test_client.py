"""The Python client against the real stack: submit, run, wait, cancel, typed errors, map of
200 images through injected 429s, 503s and a lost answer, the async client, webhooks."""

import asyncio
import io
import json
import subprocess
import sys

import httpx
import pytest
from PIL import Image

from client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    InvalidWebhook,
    Job,
    JobStatus,
    NotFound,
    Prediction,
    Unauthorized,
    verify_webhook,
)
from shared.webhooks import signed_headers
from tests.utils.jobs import make_job
from tests.utils.processes import new_key
from tests.utils.samples import heldout, heldout_png


def test_importing_the_client_pulls_in_no_server_dependencies():
    code = ("import sys, client, client.cli; "
            "print([m for m in ('tensorflow', 'keras', 'fastapi', 'celery', 'kombu', 'redis', 'api', 'worker') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_submit_get_wait_run(api, worker):
    with Client(api.url, api.key) as qi:
        job = qi.submit(heldout_png(0))
        assert isinstance(job, Job)
        assert job.status in (JobStatus.queued, JobStatus.running, JobStatus.succeeded)
        done = qi.wait(job.id, timeout=30)
        assert done.status == JobStatus.succeeded
        assert qi.get(job.id).result == done.result
        assert qi.get(job.id, wait=5).status == JobStatus.succeeded
        # Every input kind: bytes, a path, a file object, a PIL image.
        png = heldout_png(1)
        image = Image.open(io.BytesIO(png))
        label = str(heldout()[1][1])
        for source in (png, io.BytesIO(png), image):
            prediction = qi.run(source)
            assert isinstance(prediction, Prediction)
            assert prediction.label == label


def test_run_from_a_path_and_models(api, worker, tmp_path):
    path = tmp_path / "digit.png"
    path.write_bytes(heldout_png(2))
    with Client(api.url, api.key) as qi:
        assert qi.run(path).label == str(heldout()[1][2])
        assert qi.run(str(path), model="digits").label == str(heldout()[1][2])
        assert any(m.name == "digits" and m.default for m in qi.models())


def test_typed_errors_carry_the_servers_status_and_message(api):
    with Client(api.url, api.key) as qi:
        with pytest.raises(NotFound) as unknown:
            qi.get("0000")
        assert unknown.value.status == 404
        assert "0000" in unknown.value.detail
        assert unknown.value.problem is not None
        with pytest.raises(BadRequest) as bad:
            qi.submit(b"not an image")
        assert bad.value.status in (415, 422)
        with pytest.raises(NotFound, match="model"):
            qi.submit(heldout_png(), model="no-such-model")
    with Client(api.url, "qi_not_a_key") as stranger, pytest.raises(Unauthorized) as refused:
        stranger.get("0000")
    assert refused.value.status == 401


def test_cancel(api, store):
    job = make_job(store, owner=api.key_id)  # queued; nothing will run it
    with Client(api.url, api.key) as qi:
        assert qi.cancel(job.id).status == JobStatus.cancelled
        with pytest.raises(Conflict, match="cancelled"):
            qi.cancel(job.id)
        with pytest.raises(NotFound):
            qi.cancel("0000")


class Flaky(httpx.BaseTransport):
    """Passes requests through to the real API, except POST /jobs/batch: the first ones are
    answered 429 (Retry-After: 0), then 503 (Retry-After: 0), and one is sent but its answer
    lost (a connection error after the server recorded the jobs)."""

    def __init__(self, plan: list[str]):
        self.real, self.plan, self.batch_posts = httpx.HTTPTransport(), list(plan), 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/jobs/batch":
            self.batch_posts += 1
            step = self.plan.pop(0) if self.plan else "pass"
            if step in ("429", "503"):
                request.read()
                return httpx.Response(int(step), headers={"Retry-After": "0"},
                                      json={"title": "injected", "status": int(step), "detail": "injected"})
            if step == "lose":
                self.real.handle_request(request).read()
                raise httpx.ReadError("answer lost (injected)", request=request)
        return self.real.handle_request(request)


def _all_jobs(qi: Client) -> list[dict]:
    jobs, cursor = [], None
    while True:
        page = qi._http.get("/jobs", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        jobs += page["jobs"]
        cursor = page["next_cursor"]
        if not cursor:
            return jobs


def test_map_of_200_images_through_429_503_and_a_lost_answer(api, worker, redis_server):
    key, _ = new_key(redis_server.url)  # a key of its own: its jobs are this test's only
    labels = heldout()[1]
    inputs = list(range(200))
    pngs = {i: heldout_png(i) for i in inputs}
    transport = Flaky(["429", "429", "503", "lose", "503"])
    with Client(api.url, key, transport=transport) as qi:
        results = list(qi.map([pngs[i] for i in inputs], concurrency=8, progress=False))
        assert transport.batch_posts >= 8 + 5
        assert len(results) == 200
        jobs = [job for _, job in results]
        assert all(isinstance(job, Job) and job.status == JobStatus.succeeded for job in jobs)
        assert len({job.id for job in jobs}) == 200
        # Each result is its own input's: the labels match (the model is ~97% right).
        by_input = {bytes(data): job for data, job in results}
        right = sum(by_input[pngs[i]].result.label == str(labels[i]) for i in inputs)  # type: ignore[union-attr]
        assert right >= 180
        # Each input was submitted once: the server holds exactly 200 jobs for this key.
        assert len(_all_jobs(qi)) == 200


def test_map_reports_a_refused_input_and_goes_on(api, worker):
    with Client(api.url, api.key) as qi:
        results = list(qi.map([heldout_png(3), b"junk", heldout_png(4)], progress=False))
    assert len(results) == 3
    outcome = {data: result for data, result in results}
    assert isinstance(outcome[b"junk"], BadRequest)
    assert isinstance(outcome[heldout_png(3)], Job)


def test_async_client(api, worker):
    async def main() -> tuple[Prediction, list]:
        async with AsyncClient(api.url, api.key) as qi:
            prediction = await qi.run(heldout_png(5))
            results = [pair async for pair in qi.map([heldout_png(i) for i in range(10)], progress=False)]
            job = await qi.submit(heldout_png(6))
            assert (await qi.wait(job.id, 30)).status == JobStatus.succeeded
            return prediction, results

    prediction, results = asyncio.run(main())
    assert prediction.label == str(heldout()[1][5])
    assert len(results) == 10
    assert all(job.status == JobStatus.succeeded for _, job in results)


def test_batch_handle(api, worker, redis_server):
    files = [("files", (f"{i}.png", heldout_png(i))) for i in range(5)]
    answer = api.http.post("/jobs/batch", files=files).json()
    batch_id = answer["batch_id"]
    batch = api.http.get(f"/batches/{batch_id}", params={"wait": 30}).json()
    assert batch["done"] is True
    assert batch["total"] == 5
    assert batch["counts"]["succeeded"] == 5
    assert [job["id"] for job in batch["jobs"]] == [item["job"]["id"] for item in answer["items"]]
    page = api.http.get(f"/batches/{batch_id}", params={"limit": 2, "offset": 2}).json()
    assert [job["id"] for job in page["jobs"]] == [item["job"]["id"] for item in answer["items"][2:4]]
    assert page["next_offset"] == 4
    assert api.http.get("/batches/0000").status_code == 404
    other, _ = new_key(redis_server.url)
    stranger = httpx.get(f"{api.url}/batches/{batch_id}", headers={"Authorization": f"Bearer {other}"})
    assert stranger.status_code == 404
    assert stranger.json()["detail"] == f"no batch {batch_id!r} (unknown, or expired)"
    # No file accepted: no batch.
    refused = api.http.post("/jobs/batch", files=[("files", ("x.png", b"junk"))])
    assert refused.status_code == 422
    assert refused.json()["batch_id"] is None


def test_batch_idempotency_key_replays_the_same_jobs(api, worker):
    files = [("files", (f"{i}.png", heldout_png(i))) for i in range(3)]
    headers = {"Idempotency-Key": "batch-replay-test"}
    first = api.http.post("/jobs/batch", files=files, headers=headers).json()
    again = api.http.post("/jobs/batch", files=files, headers=headers).json()
    assert [i["job"]["id"] for i in first["items"]] == [i["job"]["id"] for i in again["items"]]


def test_verify_webhook():
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    job = Job.model_validate({"id": "abc", "status": "succeeded", "model": {"name": "digits", "version": "1"},
                              "created_at": "2026-01-01T00:00:00Z"})
    body = job.model_dump_json()
    headers = signed_headers([secret], "msg_abc_completed", body)
    assert verify_webhook(body.encode(), headers, secret) == job
    assert Client.verify_webhook(body, {k.title(): v for k, v in headers.items()}, secret) == job
    with pytest.raises(InvalidWebhook):
        verify_webhook(body.replace("abc", "abd"), headers, secret)
    assert json.loads(body)["id"] == "abc"


def test_priority_and_cancel_after(api, redis_server):
    """Sent as the `priority` form field and the Cancel-After header, by both clients' submits."""
    def deadline(job: Job) -> float:
        assert job.expires_at is not None
        return (job.expires_at - job.created_at).total_seconds()

    with Client(api.url, api.key) as qi:
        job = qi.submit(heldout_png(0), priority="low", cancel_after="5m")
        assert job.priority == "low"
        assert deadline(job) == pytest.approx(300, abs=0.01)
        assert qi.get(job.id).priority == "low"
        jobs, errors, _ = qi.submit_batch([heldout_png(1), heldout_png(2)], priority="low", cancel_after="1h")
        assert not errors
        assert [(j.priority, round(deadline(j))) for j in jobs.values()] == [("low", 3600)] * 2
        plain = qi.submit(heldout_png(0))
        assert (plain.priority, plain.expires_at) == ("normal", None)
        with pytest.raises(BadRequest) as refused:
            qi.submit(heldout_png(0), cancel_after="soon")
        assert refused.value.status == 422

    async def main() -> tuple[Job, dict[int, Job]]:
        async with AsyncClient(api.url, api.key) as qi:
            job = await qi.submit(heldout_png(3), priority="low", cancel_after="90s")
            jobs, _, _ = await qi.submit_batch([heldout_png(4)], priority="low", cancel_after="2m")
            return job, jobs

    job, jobs = asyncio.run(main())
    assert (job.priority, deadline(job)) == ("low", pytest.approx(90, abs=0.01))
    assert (jobs[0].priority, deadline(jobs[0])) == ("low", pytest.approx(120, abs=0.01))
    # Above the key's max_priority: the server's 403, typed.
    with Client(api.url, api.key) as qi, pytest.raises(Unauthorized) as forbidden:
        qi.submit(heldout_png(0), priority="high")
    assert forbidden.value.status == 403
