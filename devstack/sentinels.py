"""A Redis primary, its replica and three Sentinels on loopback, from the same redis-server
binary (devstack.commands.redis_binary): the HA stack of the failover test
(tests/devstack/test_sentinels.py) and of `make bench-failover` (benchmarks/failover.py).

    group = SentinelGroup(tmp_dir); group.start()
    Api(group.url, logdir, **group.settings())   # REDIS_SENTINELS, REDIS_MASTER_NAME
    killed = group.kill_primary()                # SIGKILL, no goodbye
    group.wait_failover(killed.port)             # the Sentinels promoted the replica
    group.restart_as_replica(killed)             # as k8s would restart the pod

Fast timings for tests (`down-after-milliseconds` 2000: at 1000 a CPU-starved 2-core box
once saw the new primary "down" too and failed back; `failover-timeout` 3000); the
compose and k8s Sentinels use the same directives with their own values."""

import contextlib
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, cast

import redis

from devstack.commands import redis_binary
from devstack.processes import RedisServer, free_port, wait_for
from shared.redisconn import RedisTarget

MASTER_NAME = "qi"
QUORUM = 2  # of three Sentinels: one may be lost and a failover still happens
RELAYED_FAILOVER_TIMEOUT_MS = 600_000


def sentinel_conf(port: int, primary_port: int, directory: Path, master_name: str = MASTER_NAME,
                  down_after_ms: int = 2000, failover_timeout_ms: int = 3000) -> str:
    """One Sentinel's config file (a Sentinel rewrites it: it must be writable, one each)."""
    return "\n".join([
        f"port {port}", "bind 127.0.0.1", f"dir {directory}",
        "sentinel announce-ip 127.0.0.1", f"sentinel announce-port {port}",
        f"sentinel monitor {master_name} 127.0.0.1 {primary_port} {QUORUM}",
        f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
        f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
        f"sentinel parallel-syncs {master_name} 1", "",
    ])


class Sentinel:
    def __init__(self, workdir: Path, primary_port: int, master_name: str = MASTER_NAME, down_after_ms: int = 2000,
                 failover_timeout_ms: int = 3000):
        self.port = free_port()
        self.dir = workdir / f"sentinel-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(sentinel_conf(self.port, primary_port, self.dir, master_name, down_after_ms,
                                           failover_timeout_ms))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.dir / "sentinel.log").open("w")
        self.proc = subprocess.Popen([redis_binary(), str(self.conf), "--sentinel"], stdout=log,
                                     stderr=subprocess.STDOUT)
        wait_for(lambda: self.client().ping(), 10, f"sentinel on {self.port}")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=1)

    def master(self, name: str) -> dict[str, Any]:
        """SENTINEL MASTER name, as a dict."""
        return cast(dict[str, Any], self.client().sentinel_master(name))

    def master_port(self, name: str) -> int:
        """The port of the primary this Sentinel names."""
        return int(cast(Any, self.client().sentinel_get_master_addr_by_name(name))[1])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class LinkProxy:
    """A TCP relay in front of `upstream` (the replication link): `hold` stops relaying (the
    bytes wait in the relay's socket buffers), `cut` drops every connection and what they
    held, and stops listening."""

    def __init__(self, upstream: int):
        self.upstream, self.port = upstream, free_port()
        self._held = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", self.port))

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:  # the primary is gone: so is this link
                client.close()
                continue
            for sock in (client, upstream):  # no Nagle: WAIT's GETACK and ACK are tiny writes (40 ms each else)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._closed.is_set():
                if self._held.is_set():
                    time.sleep(0.01)
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def hold(self) -> None:
        self._held.set()

    def cut(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                # Linger 0: a reset, the relayed-not-yet bytes dropped.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()


class SentinelGroup:
    """A primary, a replica, three Sentinels; `target` and `settings()` for the services."""

    def __init__(self, workdir: Path, master_name: str = MASTER_NAME, down_after_ms: int = 2000,
                 failover_timeout_ms: int = 3000, relay: bool = True):
        """`relay`: the replica replicates through a LinkProxy (kill_primary may hold it);
        without, directly (the timings of WAIT, with no Python relay in the link)."""
        self.workdir, self.master_name = workdir, master_name
        self.primary = RedisServer(self._dir("node-a"), extra=self._logfile("node-a"))
        # The replica replicates through a proxy that can hold and cut the link (kill_primary).
        self.link = LinkProxy(self.primary.port) if relay else None
        upstream = self.link.port if self.link is not None else self.primary.port
        self.replica = RedisServer(self._dir("node-b"),
                                   extra=(*self._logfile("node-b"), "--replicaof", "127.0.0.1", str(upstream)))
        self.nodes = [self.primary, self.replica]
        # Until the kill, a failover timeout long enough that no Sentinel "fixes" the replica's
        # master address (the relay's, not the primary's): a Sentinel does so only once the
        # replica's config is a failover timeout old. kill_primary sets the real one.
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinels = [Sentinel(workdir, self.primary.port, master_name, down_after_ms,
                                   max(failover_timeout_ms, RELAYED_FAILOVER_TIMEOUT_MS) if relay
                                   else failover_timeout_ms) for _ in range(3)]

    def _logfile(self, name: str) -> tuple[str, ...]:
        return ("--logfile", str(self.workdir / name / "redis.log"))

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    @property
    def url(self) -> str:
        """REDIS_URL for the services (only its db counts with REDIS_SENTINELS set)."""
        return "redis://127.0.0.1:1/0"

    def target(self, min_replicas: int = 0, wait_timeout_ms: int = 1000) -> RedisTarget:
        return RedisTarget(sentinels=tuple(("127.0.0.1", s.port) for s in self.sentinels),
                           master_name=self.master_name, min_replicas=min_replicas, wait_timeout_ms=wait_timeout_ms)

    def settings(self, **more: object) -> dict[str, object]:
        """Settings (service_env's overrides) that send a service through the Sentinels."""
        return {"redis_sentinels": self.sentinel_addresses, "redis_master_name": self.master_name, **more}

    def start(self) -> None:
        self.primary.start()
        if self.link is not None:
            self.link.start()
        self.replica.start()
        wait_for(lambda: self.primary.client().info("replication")["connected_slaves"] >= 1, 20, "the replica")
        for sentinel in self.sentinels:
            sentinel.start()
        # Every Sentinel knows the replica and the other two before anything relies on them.
        wait_for(lambda: all(int(s.master(self.master_name)["num-slaves"]) >= 1
                             and int(s.master(self.master_name)["num-other-sentinels"]) >= 2
                             for s in self.sentinels), 30, "the Sentinels to see each other and the replica")

    def primary_port(self) -> int | None:
        """The primary's port as a Sentinel that answers says (None: none answers)."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                return sentinel.master_port(self.master_name)
        return None

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def kill_primary(self, stall_seconds: float = 0) -> RedisServer:
        """SIGKILL the current primary; the node killed. `stall_seconds`: first hold the
        replication link (LinkProxy) that long, the primary still taking writes, then cut it
        with the kill: what the replica had not received is lost, as with a replica behind a
        slow or partitioned link (on loopback replication is otherwise sub-millisecond)."""
        port = self.primary_port()
        assert port is not None
        node = self.node(port)
        if stall_seconds and self.link is not None and self.link.upstream == port:
            self.link.hold()
            time.sleep(stall_seconds)
            node.kill()
            self.link.cut()
        else:
            node.kill()
        for sentinel in self.sentinels:  # before they agree it is down (down-after-milliseconds)
            with contextlib.suppress(redis.RedisError):
                sentinel.client().sentinel_set(self.master_name, "failover-timeout", self.failover_timeout_ms)
        return node

    def wait_failover(self, old_port: int, timeout: float = 30) -> int:
        """The new primary's port, once the Sentinels name it and it takes writes."""
        def promoted() -> int | None:
            ports = {s.master_port(self.master_name) for s in self.sentinels}
            if len(ports) != 1 or old_port in ports:  # every Sentinel names the same new primary
                return None
            port = ports.pop()
            return port if self.node(port).client().info("replication")["role"] == "master" else None
        return wait_for(promoted, timeout, "the Sentinels to promote the replica")

    def restart_as_replica(self, node: RedisServer) -> None:
        """Start a killed node again as a replica of the current primary (what the k8s
        StatefulSet's init step does: ask a Sentinel, then `--replicaof` it)."""
        port = self.primary_port()
        assert port is not None
        assert port != node.port
        node.extra = [*self._logfile(node.dir.name), "--replicaof", "127.0.0.1", str(port)]
        node.start()

    def wait_replicas(self, count: int = 1, timeout: float = 30) -> None:
        """Until the primary has `count` replicas in sync (WAIT can succeed again)."""
        def synced() -> bool:
            port = self.primary_port()
            info = self.node(port).client().info("replication") if port else {}
            online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                      and v.get("state") == "online"]
            return len(online) >= count
        wait_for(synced, timeout, f"{count} replica(s) in sync")

    def stop(self) -> None:
        if self.link is not None:
            self.link.cut()
        for sentinel in self.sentinels:
            with contextlib.suppress(Exception):
                sentinel.stop()
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
