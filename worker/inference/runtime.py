"""The model versions a worker process serves (worker.inference.model loads each): what is
loaded, loading and unloading as MODEL_DIR and the defaults change, on demand loads.
"""

import gc
import logging
import os
import threading
import time
from collections.abc import Callable

from shared.registry import Manifest, Registry
from worker.inference.model import LoadedModel, configure_devices

log = logging.getLogger(__name__)


class ModelUnavailable(Exception):
    """A version this worker cannot serve: not on disk, or it failed to load (the message says why)."""


class LoadedModels(dict[str, LoadedModel]):
    """The versions loaded in this process, by key ('name:version'). Published whole: the
    runtime never changes a mapping it handed out, it assigns a new one (so the model thread
    may read one while the loader prepares the next). `load(key)`: a version not loaded here
    never loads on the model thread (worker.inference.loads does, on a thread of its own):
    ModelUnavailable, saying why."""

    def __init__(self, models: dict[str, LoadedModel] | None = None,
                 loader: Callable[[str], LoadedModel] | None = None):
        super().__init__(models or {})
        self._loader = loader

    def load(self, key: str) -> LoadedModel:
        if self._loader is None:
            raise ModelUnavailable(f"no worker serves {key}")
        return self._loader(key)


def _signature(manifest: Manifest) -> tuple:
    """What tells a version's files changed: its manifest and artifact's size and mtime."""
    stats: list[tuple[int, int] | None] = []
    for path in (manifest.directory / "manifest.json", manifest.artifact_path):
        try:
            stat = path.stat()
            stats.append((stat.st_size, stat.st_mtime_ns))
        except OSError:
            stats.append(None)
    return tuple(stats)


class Runtime:
    """The model versions this process serves, loaded and warmed. A version that fails to
    load is recorded with its error (`failed`) and the others still serve.

    What is loaded (`sync`, on the loader thread, worker.inference.versions; and at start): per model
    its default version (pinned) and every version new on disk since the last sync (so a new
    version serves at once); a version that failed is tried again once its files change. At
    most `max_loaded_versions` per model stay loaded: beyond that the least recently used
    non-default one is unloaded, never one with jobs waiting or running (`busy`, `running`).

    A job for a version that is not loaded (evicted, or not yet seen) has it loaded on demand
    (`load_now`, on worker.inference.loads' thread, never the model thread) only if it is
    loadable (`refusal`): the model's default, or marked by an admin in the catalog
    (`is_marked`: POST /models/{name}/versions/{version}/loadable). Else its jobs fail with
    model_unavailable: a tenant cannot make a worker load and unload versions at will."""

    def __init__(self, registry: Registry, max_batch_size: int, max_loaded_versions: int = 2,
                 is_marked: Callable[[str], bool] | None = None):
        """`is_marked(key)`: whether an admin marked the version loadable (shared.catalog)."""
        self.pid = os.getpid()
        self.devices = configure_devices()
        self.registry = registry
        self.max_batch_size = max_batch_size
        self.max_loaded_versions = max(1, max_loaded_versions)
        self.models = LoadedModels(loader=self.load)
        self.failed: dict[str, str] = {}  # replaced whole, as `models`
        self.load_seconds: dict[str, float] = {}
        self._signatures: dict[str, tuple] = {}  # key -> its files' signature when loaded, or when it failed
        self._seen: set[str] | None = None  # the versions on disk at the last sync
        self.is_marked = is_marked or (lambda key: False)
        self.busy: Callable[[], set[str]] = set  # versions with jobs waiting (worker.inference.loads)
        self.running: set[str] = set()  # the versions of the batch the model thread runs
        self._lock = threading.RLock()
        self.sync()

    def refresh(self, defaults: dict[str, str] | None = None) -> bool:
        """Read MODEL_DIR again (and take `defaults`, from shared.catalog), then `sync`;
        whether the versions on disk changed."""
        with self._lock:
            changed = self.registry.refresh(defaults)
            self.sync()
            return changed

    def sync(self) -> None:
        """Make what is loaded follow the registry as last read."""
        with self._lock:
            manifests = self.registry.manifests
            defaults = self.registry.default_keys
            # At start: every model's newest version; then the versions new on disk.
            fresh = {m.key for m in self.registry.latest} if self._seen is None else set(manifests) - self._seen
            self._seen = set(manifests)
            for key in sorted(defaults | fresh | set(self.models) | set(self.failed)):
                if key not in manifests:
                    continue
                signature = _signature(manifests[key])
                if key in self.models and self._signatures.get(key) == signature:
                    continue  # loaded, files unchanged
                if key in self.failed and self._signatures.get(key) == signature:
                    continue  # failed, files unchanged
                self._load(manifests[key], signature)
            if set(self.failed) - set(manifests):  # gone from disk: nothing to report
                self.failed = {k: v for k, v in self.failed.items() if k in manifests}
            self._trim(manifests, defaults, keep=set())

    def refusal(self, key: str) -> str | None:
        """Why version `key`, not loaded here, may not be loaded on demand; None: it may (the
        model's default, or marked loadable by an admin)."""
        manifest = self.registry.manifests.get(key)
        if manifest is None:
            return f"{key} is not in this worker's MODEL_DIR (it rescans every MODEL_SCAN_SECONDS)"
        if key in self.failed and self._signatures.get(key) == _signature(manifest):
            return f"{key} failed to load: {self.failed[key]}"
        if key in self.registry.default_keys:
            return None
        try:
            if self.is_marked(key):
                return None
        except Exception as exc:  # Redis away: refuse rather than load what nobody allowed
            return f"{key} is not loaded on this worker and whether it may be loaded is unknown ({exc}); retry"
        name, _, version = key.partition(":")
        return (f"{key} is not loaded on this worker and is not loadable on demand: only a model's default "
                f"version and those an admin marks (POST /models/{name}/versions/{version}/loadable) are")

    def load(self, key: str) -> LoadedModel:
        """On the model thread: version `key` if loaded here, else ModelUnavailable saying why
        (never a load: those run on worker.inference.loads' thread)."""
        model = self.models.get(key)
        if model is not None:
            return model
        why = self.refusal(key)
        raise ModelUnavailable(why or f"{key} is not loaded on this worker and too many jobs wait for on-demand "
                                      "loads already; retry later")

    def load_now(self, key: str) -> bool:
        """On the loads thread: load and warm version `key` beside what serves, publish it,
        then unload beyond max_loaded_versions (never `key`, nor a busy version); whether it
        serves."""
        with self._lock:
            if key in self.models:
                return True
            manifest = self.registry.manifests.get(key)
            if manifest is None:
                return False
            log.info("loading %s on demand (jobs wait for it)", key)
            model = self._load(manifest, _signature(manifest))
            self._trim(self.registry.manifests, self.registry.default_keys, keep={key})
            return model is not None

    def _load(self, manifest: Manifest, signature: tuple) -> LoadedModel | None:
        """Load and warm `manifest` beside what serves, then publish it; None when it fails."""
        key = manifest.key
        started = time.perf_counter()
        self._signatures[key] = signature
        try:
            model = LoadedModel(manifest, self.max_batch_size)
        except Exception as exc:  # a bad artifact must not take the other models down
            log.exception("could not load %s; its jobs fail with model_unavailable", key)
            self.failed = {**self.failed, key: f"{type(exc).__name__}: {exc}"}
            return None
        self.load_seconds[key] = time.perf_counter() - started
        self.models = LoadedModels({**self.models, key: model}, self.load)  # the switch
        self.failed = {k: v for k, v in self.failed.items() if k != key}
        log.info("loaded %s in %.2fs, buckets %s, devices %s", key, self.load_seconds[key], model.buckets,
                 self.devices or ["CPU"])
        return model

    def _trim(self, manifests: dict[str, Manifest], defaults: set[str], keep: set[str]) -> None:
        """Unload versions gone from disk, and per model the least recently used beyond
        max_loaded_versions (never its default, nor `keep`, nor a busy version)."""
        keep = keep | self.busy() | self.running
        by_name: dict[str, list[LoadedModel]] = {}
        for key, model in self.models.items():
            if key in manifests:
                by_name.setdefault(model.manifest.name, []).append(model)
        kept: dict[str, LoadedModel] = {}
        for models in by_name.values():
            # Never the default nor `keep` (versions jobs wait for or run on), even when they alone
            # exceed max_loaded_versions; then the most recently used.
            models.sort(key=lambda m: (m.manifest.key not in defaults and m.manifest.key not in keep, -m.last_used))
            protected = sum(1 for m in models if m.manifest.key in defaults or m.manifest.key in keep)
            kept.update((m.manifest.key, m) for m in models[: max(self.max_loaded_versions, protected)])
        gone = sorted(set(self.models) - set(kept))
        if not gone:
            return
        self.models = LoadedModels(kept, self.load)
        self.failed = {k: v for k, v in self.failed.items() if k in manifests}
        for key in gone:
            self.load_seconds.pop(key, None)
        log.info("unloaded %s (kept %s)", ", ".join(gone), ", ".join(sorted(kept)) or "none")
        gc.collect()  # Keras models hold cycles; those loaded at start were frozen (worker.inference.serving)
