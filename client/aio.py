"""`AsyncClient`: the asyncio client (httpx), the same methods as `Client`, awaited."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import httpx

from client import _core
from client.errors import APIError, JobFailed, WaitTimeout
from client.progress import Bar
from client.sync import Result, _batch_answer
from client.webhooks import verify_webhook
from shared.schemas import Batch, Job, ModelInfo, Prediction


class AsyncClient:
    """The queue-inference API. `url`: QI_URL, else http://127.0.0.1:8000; `api_key`:
    QI_API_KEY, else .run/api-key (what `make run` writes) when it exists. 429, 503 and lost
    connections are retried (`retries` times, honouring Retry-After); submissions carry an
    Idempotency-Key, so a retry never submits an input twice."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, ops_url: str | None = None,
                 timeout: float = 30.0, retries: int = 8, transport: httpx.AsyncBaseTransport | None = None):
        self.url = _core.default_url(url)
        self.ops_url = _core.default_ops_url(ops_url, self.url)
        self.retries = retries
        # Long-polls hold a request up to MAX_WAIT seconds: read timeout beyond that.
        self._http = httpx.AsyncClient(base_url=self.url, headers=_core.headers(_core.default_key(api_key)),
                                  timeout=httpx.Timeout(timeout, read=_core.MAX_WAIT + timeout), transport=transport)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, retried on 429, 503 and connection errors (the caller makes it safe
        to repeat: reads, cancels, submissions with an Idempotency-Key)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt > self.retries:
                    raise
                await asyncio.sleep(_core.backoff(attempt))
                continue
            if response.status_code not in _core.RETRY_STATUSES or attempt > self.retries:
                return response
            await asyncio.sleep(_core.backoff(attempt, _core.retry_after(response)))

    async def submit(self, image: Any, model: str | None = None, webhook_url: str | None = None,
               webhook_events: Sequence[str] | None = None, expires_in: float | None = None,
               idempotency_key: str | None = None, priority: str | None = None,
               cancel_after: str | None = None) -> Job:
        """Queue one image (a path, bytes, a file object or a PIL image): the job. `priority`:
        high, normal (the server's default) or low, at most the key's max_priority;
        `cancel_after`: the Cancel-After header (`30s`, `5m`, `1h30m`), a deadline as
        `expires_in` sets (both: the earlier)."""
        _, data = _core.read_image(image)
        form = _core.submit_form(model, webhook_url, webhook_events, expires_in, priority)
        key = idempotency_key or _core.new_idempotency_key()
        response = await self._send("POST", "/jobs", content=data, params=form,
                                    headers=_core.submit_headers(key, cancel_after, raw=True))
        return Job.model_validate(_core.check(response))

    async def get(self, id: str, wait: float | None = None) -> Job:
        """The job; with `wait`, once it ends or after `wait` seconds (at most 60)."""
        params = {"wait": min(wait, _core.MAX_WAIT)} if wait else None
        return Job.model_validate(_core.check(await self._send("GET", f"/jobs/{id}", params=params)))

    async def cancel(self, id: str) -> Job:
        """Cancel a queued job (Conflict when it already runs or ended)."""
        return Job.model_validate(_core.check(await self._send("DELETE", f"/jobs/{id}")))

    async def wait(self, id: str, timeout: float | None = None) -> Job:
        """The job once it ends; WaitTimeout after `timeout` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _core.MAX_WAIT if deadline is None else min(_core.MAX_WAIT, deadline - time.monotonic())
            job = await self.get(id, wait=max(left, 0.001))
            if job.status.terminal:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(job)

    async def run(self, image: Any, model: str | None = None, timeout: float | None = None) -> Prediction:
        """Submit and wait: the prediction, or JobFailed (a failed or cancelled job)."""
        job = await self.wait((await self.submit(image, model)).id, timeout)
        if job.result is None:
            raise JobFailed(job)
        return job.result

    async def batch(self, id: str, wait: float | None = None, offset: int = 0, limit: int = 100) -> Batch:
        """A batch's counts and jobs (GET /batches/{id}); with `wait`, once all ended or after `wait` s."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if wait:
            params["wait"] = min(wait, _core.MAX_WAIT)
        return Batch.model_validate(_core.check(await self._send("GET", f"/batches/{id}", params=params)))

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo.model_validate(m) for m in _core.check(await self._send("GET", "/models"))]

    async def queue(self) -> dict[str, Any]:
        """What can be seen of the queue: the backlog and the workers from the ops port's GET
        /queue and GET /readyz when it is reachable (`backlog` None otherwise), else the public
        GET /readyz (which names the workers to an admin key only)."""
        ready = backlog = None
        if self.ops_url:
            try:
                async with httpx.AsyncClient(timeout=5) as ops:
                    backlog = _core.check(await ops.get(f"{self.ops_url}/queue"))
                    ready = _core.check(await ops.get(f"{self.ops_url}/readyz"))
            except (httpx.HTTPError, APIError):
                pass
        if ready is None:
            ready = _core.check(await self._send("GET", "/readyz"))
        return {"ready": ready, "backlog": backlog, "ops_url": self.ops_url}

    verify_webhook = staticmethod(verify_webhook)

    async def submit_batch(self, images: Sequence[Any], model: str | None = None,
                     webhook_url: str | None = None, priority: str | None = None,
                     cancel_after: str | None = None) -> tuple[dict[int, Job], dict[int, APIError], list[str]]:
        """Submit up to 64 images through POST /jobs/batch: (jobs by input index, errors by
        input index, batch ids). A whole request refused with 429/503, or lost, is sent again
        with the same Idempotency-Key; items refused with 429/503 (nothing recorded) are sent
        again in a new request. `priority`, `cancel_after`: as for `submit`, every job's."""
        files = [_core.read_image(image) for image in images]
        form = _core.submit_form(model, webhook_url, None, None, priority)
        jobs: dict[int, Job] = {}
        errors: dict[int, APIError] = {}
        batch_ids: list[str] = []
        pending, attempt = list(range(len(files))), 0
        while pending:
            attempt += 1
            response = await self._send("POST", "/jobs/batch", files=[("files", files[i]) for i in pending], data=form,
                                  headers=_core.submit_headers(_core.new_idempotency_key(), cancel_after))
            answer = _batch_answer(response)
            retry = []
            for item in answer.items:
                index = pending[item.index]
                if item.job is not None:
                    jobs[index] = item.job
                elif item.status_code in _core.RETRY_ITEM_STATUSES and attempt <= self.retries:
                    retry.append(index)
                else:
                    errors[index] = _core.item_error(item.status_code, item.error)
            if answer.batch_id:
                batch_ids.append(answer.batch_id)
            if retry:
                await asyncio.sleep(_core.backoff(attempt))
            pending = retry
        return jobs, errors, batch_ids

    async def _run_chunk(self, chunk: list[Any], model: str | None, priority: str | None = None,
                         cancel_after: str | None = None) -> list[tuple[Any, Result]]:
        jobs, errors, batch_ids = await self.submit_batch(chunk, model, priority=priority, cancel_after=cancel_after)
        finished: dict[str, Job] = {}
        for batch_id in batch_ids:
            while True:
                batch = await self.batch(batch_id, wait=_core.MAX_WAIT)
                if batch.done:
                    finished.update((job.id, job) for job in batch.jobs)
                    break
        results: list[tuple[Any, Result]] = []
        for index, item in enumerate(chunk):
            if index in errors:
                results.append((item, errors[index]))
            else:
                job = jobs[index]
                results.append((item, finished.get(job.id) or await self.get(job.id)))
        return results

    async def map(self, images: Iterable[Any], model: str | None = None, concurrency: int = 16,
                  progress: bool = True, priority: str | None = None,
                  cancel_after: str | None = None) -> AsyncIterator[tuple[Any, Result]]:
        """As Client.map: `async for input, job in client.map(images)`."""
        total = len(images) if isinstance(images, Sequence) else None
        size = _core.chunk_size(total, concurrency)
        source = iter(images)
        with Bar(total, enabled=progress) as bar:
            running: set[asyncio.Task] = set()
            try:
                while True:
                    while len(running) < concurrency:
                        chunk = [item for _, item in zip(range(size), source, strict=False)]
                        if not chunk:
                            break
                        running.add(asyncio.create_task(self._run_chunk(chunk, model, priority, cancel_after)))
                    if not running:
                        return
                    done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        for pair in task.result():
                            bar.advance(pair[1])
                            yield pair
            finally:
                for task in running:
                    task.cancel()


