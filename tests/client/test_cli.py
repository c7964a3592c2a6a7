"""`qi` against the real stack: a folder in, correct JSON lines (or CSV) out, exit 1 on a bad file."""

import csv
import json
import subprocess
import sys

from tests.utils.samples import heldout, heldout_png


def qi(api, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "client.cli", "--url", api.url, "--api-key", api.key, *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_submit_a_folder_writes_jsonl_and_fails_on_a_bad_file(api, worker, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    labels = heldout()[1]
    for i in range(12):
        (folder / f"{i:02d}.png").write_bytes(heldout_png(i))
    out = tmp_path / "results.jsonl"
    good = qi(api, "submit", str(folder), "--out", str(out))
    assert good.returncode == 0, good.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(row["input"] for row in rows) == sorted(str(p) for p in folder.iterdir())
    assert all(row["status"] == "succeeded" and row["id"] for row in rows)
    right = sum(row["label"] == str(labels[int(row["input"][-6:-4])]) for row in rows)
    assert right >= 10
    assert "12 succeeded" in good.stderr

    (folder / "bad.png").write_bytes(b"not an image at all")
    csv_out = tmp_path / "results.csv"
    bad = qi(api, "submit", str(folder / "*.png"), "--out", str(csv_out))
    assert bad.returncode == 1
    with csv_out.open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 13
    refused = [row for row in table if row["input"].endswith("bad.png")]
    assert refused[0]["status"] == "refused"
    assert refused[0]["error"].startswith(("415", "422"))
    assert "1 failed" in bad.stderr
    assert "bad.png" in bad.stderr


def test_get_cancel_models_queue(api, worker, tmp_path):
    image = tmp_path / "7.png"
    image.write_bytes(heldout_png(0))
    queued = qi(api, "submit", "--no-wait", str(image))
    assert queued.returncode == 0, queued.stderr
    job_id = json.loads(queued.stdout)["id"]
    got = qi(api, "get", job_id, "--wait", "20")
    assert got.returncode == 0
    assert json.loads(got.stdout)["status"] == "succeeded"
    cancel = qi(api, "cancel", job_id)
    assert cancel.returncode == 1
    assert "409" in cancel.stderr
    assert qi(api, "get", "0000").returncode == 1
    models = qi(api, "models")
    assert models.returncode == 0
    assert "digits" in models.stdout
    queue = subprocess.run([sys.executable, "-m", "client.cli", "--url", api.url, "--api-key", api.key, "queue"],
                           capture_output=True, text=True, timeout=60, env={**__import__("os").environ,
                                                                            "QI_OPS_URL": api.ops_url})
    assert queue.returncode == 0, queue.stderr
    assert "queued (high " in queue.stdout, queue.stdout  # the backlog per lane
    assert "workers: " in queue.stdout


def test_submit_with_priority_and_cancel_after(api, tmp_path):
    image = tmp_path / "7.png"
    image.write_bytes(heldout_png(0))
    queued = qi(api, "submit", "--no-wait", "--priority", "low", "--cancel-after", "10m", str(image))
    assert queued.returncode == 0, queued.stderr
    job = api.http.get(f"/jobs/{json.loads(queued.stdout)['id']}").json()
    assert job["priority"] == "low"
    assert job["expires_at"] is not None
    refused = qi(api, "submit", "--no-wait", "--priority", "high", str(image))
    assert refused.returncode == 1
    assert "403" in refused.stderr or "priority" in refused.stderr, refused.stderr
    bad = qi(api, "submit", "--no-wait", "--priority", "urgent", str(image))
    assert bad.returncode == 2
