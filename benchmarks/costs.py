"""What a job costs, independent of how fast the machine happens to be today: CPU time of
each process from /proc, and Redis's commands and CPU from INFO.

    meter = CostMeter({"api": api.proc.pid, ...}, redis_client)
    ...run jobs...
    costs = meter.per_job(jobs)  # {"cpu_ms": {"api": 1.2, ...}, "redis_commands": 9.0, ...}
"""

import contextlib
import os
import resource
from pathlib import Path

import redis

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its waited-for children (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command's closing parenthesis: utime, stime, cutime, cstime are fields 12-15.
    return sum(int(v) for v in fields[11:15]) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """A process and its live descendants (uvicorn --workers N: the workers are children)."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    for child in children:
        with contextlib.suppress(OSError):
            total += tree_cpu_seconds(int(child))
    return total


def own_cpu_seconds() -> float:
    """This process (the load generator), every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def redis_totals(client: redis.Redis) -> tuple[int, float]:
    """(commands Redis has run, CPU seconds it has used) since it started. Commands run
    inside scripts count too: a script's calls are its real work."""
    stats = client.info("commandstats")
    calls = sum(int(v["calls"]) for v in stats.values())
    cpu = client.info("cpu")
    return calls, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


class CostMeter:
    def __init__(self, pids: dict[str, int], client: redis.Redis, load_generator: bool = True):
        self.pids = pids
        self.client = client
        self.load_generator = load_generator
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        readings = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        if self.load_generator:
            readings["load generator"] = own_cpu_seconds()
        readings["redis commands"], readings["redis"] = redis_totals(self.client)
        return readings

    def per_job(self, jobs: int) -> dict:
        end = self._read()
        delta = {name: end[name] - self.start[name] for name in end}
        commands = delta.pop("redis commands")
        cpu_ms = {name: 1000 * seconds / jobs for name, seconds in delta.items()}
        service = sum(ms for name, ms in cpu_ms.items() if name != "load generator")
        redis_ms = cpu_ms["redis"]
        return {
            "cpu_ms": cpu_ms,
            "service_cpu_ms": service,
            "redis_commands": commands / jobs,
            # One Redis runs on one core: its CPU per job bounds what it can serve.
            "redis_ceiling": 1000 / redis_ms if redis_ms > 0 else float("inf"),
        }
