"""The supervisor's parts (devstack.stack runs them): a child process started again, with
backoff, whenever it exits on its own; stopped with SIGTERM, then SIGKILL after a grace."""

import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable

from devstack.commands import ROOT

log = logging.getLogger("stack")

FIRST_BACKOFF, MAX_BACKOFF = 1.0, 30.0  # seconds before a restart; doubles each time
STABLE_AFTER = 60.0  # a child that ran this long starts again from FIRST_BACKOFF
STOP_GRACE = 30.0  # SIGTERM, then this long to exit (a worker hands back its jobs), then SIGKILL


def _die_with_launcher() -> Callable[[], None] | None:
    """preexec_fn asking Linux to SIGKILL the child if the launcher dies, even by SIGKILL,
    so no orphaned Redis or worker keeps a port. Safe: Redis has written its AOF to the
    kernel, and a job a killed worker held is redelivered. None where prctl is missing."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved now, not after fork
    except (OSError, AttributeError):
        return None
    launcher = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
        if os.getppid() != launcher:  # the launcher died before prctl took effect
            os._exit(1)

    return preexec


class Child:
    """One supervised process: started again, with backoff, whenever it exits on its own."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = FIRST_BACKOFF
        self.restart_at = 0.0

    def start(self) -> "subprocess.Popen[bytes]":
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, start_new_session=True,
            preexec_fn=_die_with_launcher(),
        )
        self.started = time.monotonic()
        return self.proc

    def supervise(self) -> None:
        now = time.monotonic()
        if self.proc is None:
            if now >= self.restart_at:
                log.info("restarted %s (pid %d)", self.name, self.start().pid)
            return
        status = self.proc.poll()
        if status is None:
            return
        ran = now - self.started
        if ran >= STABLE_AFTER:
            self.backoff = FIRST_BACKOFF
        log.warning("%s (pid %d) exited with %s after %.0fs; restarting in %.0fs",
                    self.name, self.proc.pid, describe(status), ran, self.backoff)
        self.proc, self.restart_at = None, now + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def describe(status: int) -> str:
    return f"signal {-status} ({signal.strsignal(-status)})" if status < 0 else f"status {status}"


def stop(children: list[Child]) -> None:
    """SIGTERM all, in the order given; wait (bounded), then SIGKILL what is left."""
    for child in children:
        if child.proc and child.alive():
            log.info("stopping %s (pid %d)", child.name, child.proc.pid)
            child.proc.terminate()
    deadline = time.monotonic() + STOP_GRACE
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", child.name, STOP_GRACE)
            child.proc.kill()
            child.proc.wait()


def port_taken(port: int) -> bool:
    """Someone listens there. SO_REUSEADDR as the servers set it: TIME_WAIT does not count."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False
