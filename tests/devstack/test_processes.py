"""devstack.processes' helpers."""

import os
import socket
from pathlib import Path

from devstack import processes


def test_free_ports_are_per_xdist_worker_and_outside_the_ephemeral_range(monkeypatch):
    # Two xdist workers once got the same kernel-picked port (CI, stop 25): each worker now
    # draws from its own slice below Linux's ephemeral range, skipping ports already bound.
    low, _high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    seen = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        seen[worker] = {processes.free_port() for _ in range(5)}
        assert all(port < low for port in seen[worker])
    assert not seen["gw0"] & seen["gw1"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        monkeypatch.setattr(processes, "_next_port", [])
        monkeypatch.setattr(processes, "_slice_start", lambda: taken.getsockname()[1] - os.getpid() % 1000)
        assert processes.free_port() != taken.getsockname()[1]
