"""Load test as users see the service: each simulated user submits an image and waits for its
result (long-poll), as the client does; some send batches and wait on the batch handle.

    pip install -e '.[load]'      # Locust, in its own extra
    locust -f benchmarks/locustfile.py --headless -u 50 -r 10 -t 1m --host http://127.0.0.1:8000

The key: QI_API_KEY, else .run/api-key (what `make run` writes). Locust reports each request
and, as "job" (request type "end-to-end"), the time from submission to a finished job. A 429
or 503 is counted as a failure and the user waits its Retry-After before the next task.
Not part of the test suite (it needs Locust and a running stack).
"""

import os
import random
import time
from pathlib import Path

from locust import HttpUser, between, events, task

EXAMPLES = sorted(Path(__file__).resolve().parent.parent.joinpath("models", "digits", "examples").glob("*.png"))
IMAGES = [(path.name, path.read_bytes()) for path in EXAMPLES]
KEY_FILE = Path(".run") / "api-key"
WAIT = 30  # seconds per long-poll (the server's limit is 60)
BATCH = 16


def api_key() -> str | None:
    if os.environ.get("QI_API_KEY"):
        return os.environ["QI_API_KEY"]
    return KEY_FILE.read_text().strip() if KEY_FILE.is_file() else None


class InferenceUser(HttpUser):
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        key = api_key()
        if key:
            self.client.headers["Authorization"] = f"Bearer {key}"

    def _backoff(self, response) -> bool:
        """Whether the answer says to slow down (429/503): then sleep its Retry-After."""
        if response.status_code in (429, 503):
            time.sleep(float(response.headers.get("Retry-After", "1") or 1))
            return True
        return False

    def _report(self, name: str, started: float, ok: bool, error: str | None = None) -> None:
        events.request.fire(request_type="end-to-end", name=name, response_time=(time.perf_counter() - started) * 1000,
                            response_length=0, exception=None if ok else Exception(error or "failed"), context={})

    @task(9)
    def submit_and_wait(self) -> None:
        name, data = random.choice(IMAGES)
        started = time.perf_counter()
        with self.client.post("/jobs", files={"file": (name, data)}, name="/jobs", catch_response=True) as response:
            if self._backoff(response) or response.status_code not in (200, 202):
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            job = response.json()
        while job["status"] in ("queued", "running"):
            answer = self.client.get(f"/jobs/{job['id']}", params={"wait": WAIT}, name="/jobs/{id}?wait")
            if answer.status_code != 200:
                return self._report("job", started, False, f"GET {answer.status_code}")
            job = answer.json()
        self._report("job", started, job["status"] == "succeeded", job["status"])

    @task(1)
    def batch_and_wait(self) -> None:
        files = [("files", random.choice(IMAGES)) for _ in range(BATCH)]
        started = time.perf_counter()
        with self.client.post("/jobs/batch", files=files, name="/jobs/batch", catch_response=True) as response:
            if self._backoff(response) or response.status_code != 202:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            batch_id = response.json()["batch_id"]
        while True:
            answer = self.client.get(f"/batches/{batch_id}", params={"wait": WAIT}, name="/batches/{id}?wait")
            if answer.status_code != 200:
                return self._report("batch", started, False, f"GET {answer.status_code}")
            batch = answer.json()
            if batch["done"]:
                return self._report("batch", started, batch["counts"]["succeeded"] == batch["total"])
