"""The README's walk-through shows real answers: the fields of its example jobs (at every
level) and the headers of its 202 are those a live API sends for the same request."""

import json
from pathlib import Path

from shared.settings import REPO_ROOT

SEVEN = REPO_ROOT / "models/digits/examples/7.png"


def walk_through() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Walk-through"):]
    return section[:section.index("\n## ", 4)]


def examples() -> tuple[dict[str, str], dict, dict]:
    """The 202's headers, the job it carries, and the finished job that the GET shows."""
    response = walk_through().split("HTTP/1.1 202 Accepted\n", 1)[1]
    head = response.split("\n\n", 1)[0]
    headers = dict(line.split(": ", 1) for line in head.splitlines())
    lines = response.splitlines()
    # Each example is a JSON object wrapped over lines that start with "{" or a space.
    jobs = [json.JSONDecoder().raw_decode("".join(line.strip() for line in lines[i:]))[0]
            for i, line in enumerate(lines) if line.startswith("{")]
    return headers, jobs[0], jobs[1]


def shape(value: object) -> object:
    """Field names at every level (a list: the shape of its first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def test_the_walk_through_shows_the_fields_and_headers_the_api_sends(api, worker):
    headers, queued, finished = examples()
    response = api.http.post("/jobs", files={"file": ("7.png", Path(SEVEN).read_bytes(), "image/png")})
    assert response.status_code == 202
    live_headers = {name.lower() for name in response.headers}
    shown = {name.lower() for name in headers}
    assert shown <= live_headers, f"the README shows headers the API does not send: {shown - live_headers}"
    wanted = {"location", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "x-request-id"}
    assert wanted <= shown, f"the README's 202 leaves out {wanted - shown}"
    assert shape(queued) == shape(response.json())
    assert queued["status"] == response.json()["status"] == "queued"

    job = api.wait_terminal(response.json()["id"], timeout=60)
    live = api.http.get(f"/jobs/{job['id']}").json()
    assert live["status"] == finished["status"] == "succeeded"
    assert shape(finished) == shape(live)
    assert live["result"]["label"] == finished["result"]["label"] == "7"
