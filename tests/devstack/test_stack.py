"""`make run`'s launcher (python -m devstack.stack) as a user runs it, with real processes:
a SIGKILLed worker is restarted and runs the job submitted meanwhile; SIGTERM stops
everything, Redis last, and exits 0."""

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from devstack.commands import ROOT
from devstack.processes import free_port, wait_for

EXAMPLE = ROOT / "models" / "digits" / "examples" / "7.png"


def processes() -> dict[int, tuple[int, int, str]]:
    """pid: (parent pid, session id, command line) of every live process (zombies skipped)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        state, ppid, _pgrp, sid = stat.rpartition(")")[2].split()[:4]
        if state != "Z":
            found[int(entry.name)] = (int(ppid), int(sid), cmdline)
    return found


def children(pid: int) -> dict[int, str]:
    return {child: cmd for child, (ppid, _, cmd) in processes().items() if ppid == pid}


def inference_worker(launcher: int) -> int | None:
    return next((pid for pid, cmd in children(launcher).items() if "inference@%h" in cmd), None)


def test_launcher_restarts_a_killed_worker_and_stops_on_sigterm(tmp_path):
    api_port, ops_port, flower_port, redis_port = free_port(), free_port(), free_port(), free_port()
    output = tmp_path / "stack.log"
    # A short visibility timeout: see the kill below.
    env = {**os.environ, "WORKER_METRICS_PORT": str(free_port()), "TF_CPP_MIN_LOG_LEVEL": "2",
           "VISIBILITY_TIMEOUT_SECONDS": "10"}
    argv = [sys.executable, "-m", "devstack.stack", "--redis-port", str(redis_port), "--api-port", str(api_port),
            "--ops-port", str(ops_port), "--flower-port", str(flower_port), "--run-dir", str(tmp_path / "run")]
    with output.open("w") as out:
        launcher = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10)
    sessions: set[int] = set()  # each child leads a session of its own: nothing may be left in one

    def log() -> str:
        return output.read_text(errors="replace")

    def workers_ready() -> int:
        return len(re.findall(r"inference@\S+ ready\.", log()))

    try:
        wait_for(lambda: launcher.poll() is None and workers_ready() >= 1, 180, f"the stack (log: {output})")
        assert (f"Page http://127.0.0.1:{api_port}/  API docs http://127.0.0.1:{api_port}/docs"
                f"  Ops http://127.0.0.1:{ops_port}/metrics"
                f"  Flower http://127.0.0.1:{flower_port}") in log()
        key_file = tmp_path / "run" / "api-key"
        assert f"API key in {key_file} (new): curl" in log()
        assert key_file.stat().st_mode & 0o777 == 0o600
        api.headers["Authorization"] = f"Bearer {key_file.read_text().strip()}"
        assert api.get("/jobs").status_code == 200
        backlog = wait_for(lambda: httpx.get(f"http://127.0.0.1:{ops_port}/queue").json(), 30, "the ops port")
        assert backlog.keys() == {"queued", "in_flight", "total", "lanes"}
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{ops_port}/readyz").json()["workers"] >= 1, 60,
                 "the worker's heartbeat")
        # Then the start-up ends by saying what to try; no Celery banner scrolled it away.
        wait_for(lambda: "ready in " in log(), 10, f"the ready block (log: {output})")
        ready = log()[log().index("ready in "):]
        assert "qi submit models/digits/examples" in ready
        assert f"http://127.0.0.1:{api_port}/" in ready
        assert "[tasks]" not in log()
        assert "[queues]" not in log()
        sessions |= set(children(launcher.pid))
        assert len(sessions) == 6, children(launcher.pid)  # Redis, 3 workers, API, Flower

        killed, ready = inference_worker(launcher.pid), workers_ready()
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: f"inference worker (pid {killed}) exited with signal 9" in log(), 30, "a logged restart")
        # Submitted while no worker runs: the job waits in Redis for the restarted one. (Sent at
        # the instant of the kill, Redis could hand it to the dying worker's BRPOP; the job store's
        # sweep re-queues such a job after the visibility timeout.)
        with EXAMPLE.open("rb") as image:
            job = api.post("/jobs", files={"file": ("7.png", image, "image/png")}).json()
        wait_for(lambda: workers_ready() > ready, 180, f"the restarted worker (log: {output})")
        restarted = inference_worker(launcher.pid)
        assert restarted not in (None, killed)
        sessions |= set(children(launcher.pid))

        def finished() -> dict | None:
            found = api.get(f"/jobs/{job['id']}").json()
            return found if found["status"] in ("succeeded", "failed", "cancelled") else None

        done = wait_for(finished, 120, f"job {job['id']}")
        assert done["status"] == "succeeded", done
        assert done["result"]["label"] == "7"

        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(120) == 0, log()[-3000:]
        assert "all stopped" in log()
    finally:
        api.close()
        if launcher.poll() is None:  # failed above: its children die with it (PR_SET_PDEATHSIG)
            launcher.kill()
            launcher.wait()
    # Whatever the children started is gone too (at once after SIGTERM; soon after a SIGKILL).
    def left() -> dict[int, str]:
        return {pid: cmd for pid, (_, sid, cmd) in processes().items() if sid in sessions}

    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not left(), 10, "the children to exit")
    assert not left(), left()
