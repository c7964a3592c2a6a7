"""Which model versions a job may name (README: Model versions without restarts): a tenant
must not make the workers load and unload versions back to back, blocking every tenant's
batches, by naming versions they do not have loaded (worker.inference.loads).

A job may name a version that is its model's default, one an admin marked loadable
(POST /models/{name}/versions/{version}/loadable; shared.catalog), or one a live worker
serves now (its heartbeat says so). Any other gets 409 `version_not_loaded`, before its
input is decoded, and nothing is recorded. An admin key may name any version: its job marks
the version loadable (an operator's choice, as the route's)."""

from fastapi import status

from api.auth import Caller
from api.errors import reject
from api.services import Services
from shared.registry import Manifest


async def check_loadable(manifest: Manifest, caller: Caller, svc: Services) -> None:
    """Pass, or 409 `version_not_loaded`. At most three O(1)/O(workers) reads, and only for
    a job naming a version other than its model's default."""
    key = manifest.key
    if key in svc.registry.default_keys:
        return
    catalog = svc.versions.catalog
    if await catalog.loadable(key):
        return
    if caller.admin:
        await catalog.mark_loadable(key)
        return
    workers = await svc.store.workers()
    if any(key in worker.models for worker in workers):
        return
    failed = next((worker.failed[key] for worker in workers if key in worker.failed), None)
    why = f"it failed to load ({failed})" if failed else "no live worker has it loaded"
    raise reject(status.HTTP_409_CONFLICT, "version_not_loaded",
                 f"{key} is not the default version of {manifest.name!r} and {why}; name the model alone "
                 f"(its default) or a version GET /models lists as serving, or ask an admin to mark it "
                 f"(POST /models/{manifest.name}/versions/{manifest.version}/loadable)")
