"""The models: what each version takes and whether a live worker serves it; an admin's
reload of MODEL_DIR and choice of a model's default version (README: Model versions without
restarts)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Caller, CallerDep, caller
from api.openapi import problems
from api.services import ServicesDep
from shared.registry import Manifest, Registry, UnknownModel
from shared.schemas import ModelInfo, WorkerInfo

router = APIRouter(tags=["models"], dependencies=[Depends(caller)])
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"  # a manifest's name (shared.registry)
VERSION_PATTERN = r"^[A-Za-z0-9._-]+$"  # a manifest's version


async def admin(who: CallerDep) -> Caller:
    if not who.admin:
        raise HTTPException(403, "changing the models needs an admin key (python -m api.keys create --admin)")
    return who


class DefaultVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=VERSION_PATTERN, max_length=100,
                         description="The version that requests naming only the model get from now on")


class ModelState(BaseModel):
    """One version as /readyz reports it (a manifest that is invalid too)."""

    name: str
    version: str
    default_version: bool
    status: Literal["serving", "failed", "unavailable"]
    error: str | None = None
    workers: list[str]  # the live workers that have it loaded


@router.get("/models", response_model=list[ModelInfo], responses=problems(503))
async def list_models(svc: ServicesDep) -> list[ModelInfo]:
    """Every model version: its kind, input shape and label names, whether it is the default, and
    whether a live worker serves it (or why it failed to load)."""
    return model_infos(svc.registry, await svc.store.workers())


@router.post("/models/reload", response_model=list[ModelInfo], responses=problems(403, 503),
             dependencies=[Depends(admin)])
async def reload_models(svc: ServicesDep) -> list[ModelInfo]:
    """Admin: read MODEL_DIR now (rather than within MODEL_SCAN_SECONDS) and announce it, so every
    API process and worker follows within seconds; the versions, as GET /models."""
    await svc.versions.refresh(announce=True)
    return model_infos(svc.registry, await svc.store.workers())


@router.post("/models/{name}/default", response_model=list[ModelInfo], dependencies=[Depends(admin)],
             responses=problems(403, 404, 409, 422, 503, described={
                 404: "No such model, or no such version of it in MODEL_DIR",
                 409: "That version failed to load on every live worker that tried it, and none serves it"}))
async def set_default_version(name: Annotated[str, PathParam(pattern=NAME_PATTERN, max_length=100)],
                              body: DefaultVersion, svc: ServicesDep) -> list[ModelInfo]:
    """Admin: make `version` the version that requests naming only `name` get, on every API
    process and worker within seconds (a rollback is the same call with the older version).
    Jobs already queued keep the version they were submitted for. The model's versions."""
    await svc.versions.refresh()  # a version just written is found
    registry = svc.registry
    versions = sorted(m.version for m in registry.manifests.values() if m.name == name)
    if not versions:
        raise HTTPException(404, f"no model {name!r}; GET /models lists them")
    manifest = registry.manifests.get(f"{name}:{body.version}")
    if manifest is None:
        raise HTTPException(404, f"model {name!r} has no version {body.version!r}; its versions: "
                                 f"{', '.join(versions)}")
    workers = await svc.store.workers()
    state = _status(manifest, workers)
    if state["status"] == "failed":
        raise HTTPException(409, f"{manifest.key} failed to load on every live worker that tried it "
                                 f"({state['error']}); fix it (then POST /models/reload) or choose another version")
    await svc.versions.set_default(name, body.version)
    return [info for info in model_infos(registry, workers) if info.name == name]


class Loadable(BaseModel):
    """Whether a version loads on demand for any key's jobs (api.loadable, worker.inference.loads)."""

    model: str
    loadable: bool


@router.post("/models/{name}/versions/{version}/loadable", response_model=Loadable, dependencies=[Depends(admin)],
             responses=problems(403, 404, 422, 503, described={404: "No such version in MODEL_DIR"}))
async def mark_loadable(name: Annotated[str, PathParam(pattern=NAME_PATTERN, max_length=100)],
                        version: Annotated[str, PathParam(pattern=VERSION_PATTERN, max_length=100)],
                        svc: ServicesDep) -> Loadable:
    """Admin: let any key's jobs name `name:version`: a worker that has not loaded it loads it
    for them (off its model thread, at most one such load per MODEL_LOAD_COOLDOWN_SECONDS).
    Without the mark only the default version, and versions a live worker serves, may be named."""
    return await _mark(name, version, True, svc)


@router.delete("/models/{name}/versions/{version}/loadable", response_model=Loadable, dependencies=[Depends(admin)],
               responses=problems(403, 404, 422, 503, described={404: "No such version in MODEL_DIR"}))
async def unmark_loadable(name: Annotated[str, PathParam(pattern=NAME_PATTERN, max_length=100)],
                          version: Annotated[str, PathParam(pattern=VERSION_PATTERN, max_length=100)],
                          svc: ServicesDep) -> Loadable:
    """Admin: take the mark back; workers that have the version loaded keep serving it until
    they unload it (MAX_LOADED_VERSIONS)."""
    return await _mark(name, version, False, svc)


async def _mark(name: str, version: str, loadable: bool, svc: ServicesDep) -> Loadable:
    key = f"{name}:{version}"
    if key not in svc.registry.manifests:
        await svc.versions.refresh()  # a version just written is found
    if key not in svc.registry.manifests:
        raise HTTPException(404, f"no version {key} in MODEL_DIR; GET /models lists them")
    await svc.versions.catalog.mark_loadable(key, loadable)
    return Loadable(model=key, loadable=loadable)


def model_infos(registry: Registry, workers: list[WorkerInfo]) -> list[ModelInfo]:
    try:
        default = registry.resolve(None).key
    except UnknownModel:  # DEFAULT_MODEL is not in MODEL_DIR
        default = None
    defaults = registry.default_keys
    return [
        ModelInfo(name=m.name, version=m.version, kind=m.input.kind, input_shape=list(m.input_shape),
                  feature_names=m.input.names, labels=len(m.labels), label_names=m.labels, default=m.key == default,
                  default_version=m.key in defaults, **_status(m, workers))
        for m in registry.manifests.values()
    ]


def model_states(registry: Registry, workers: list[WorkerInfo]) -> list[ModelState]:
    """Per model and version (invalid manifests included): served by which live workers, or why not."""
    defaults = registry.default_keys
    states = [
        ModelState(name=m.name, version=m.version, default_version=m.key in defaults,
                   workers=sorted(w.name for w in workers if m.key in w.models), **_status(m, workers))
        for m in registry.manifests.values()
    ]
    for key, why in registry.invalid.items():
        name, _, version = key.partition(":")
        states.append(ModelState(name=name, version=version, default_version=False, status="failed", error=why,
                                 workers=[]))
    return sorted(states, key=lambda s: (s.name, s.version))


def _status(manifest: Manifest, workers: list[WorkerInfo]) -> dict:
    if any(manifest.key in worker.models for worker in workers):
        return {"status": "serving"}
    errors = [worker.failed[manifest.key] for worker in workers if manifest.key in worker.failed]
    return {"status": "failed", "error": errors[0]} if errors else {"status": "unavailable"}
