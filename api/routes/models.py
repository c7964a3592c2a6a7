from fastapi import APIRouter, Depends

from api.auth import caller
from api.deps import ServicesDep
from api.openapi import problems
from shared.registry import Manifest
from shared.schemas import ModelInfo, WorkerInfo

router = APIRouter(tags=["models"], dependencies=[Depends(caller)])


@router.get("/models", response_model=list[ModelInfo], responses=problems(503))
async def list_models(svc: ServicesDep) -> list[ModelInfo]:
    """Every model version: its kind, input shape and label names, whether it is the default, and
    whether a live worker serves it (or why it failed to load)."""
    registry = svc.registry
    default = registry.resolve(None).key
    workers = await svc.store.workers()
    return [
        ModelInfo(name=m.name, version=m.version, kind="image", input_shape=m.input_shape, labels=len(m.labels),
                  label_names=m.labels, default=m.key == default, **_status(m, workers))
        for m in registry.manifests.values()
    ]


def _status(manifest: Manifest, workers: list[WorkerInfo]) -> dict:
    if any(manifest.key in worker.models for worker in workers):
        return {"status": "serving"}
    errors = [worker.failed[manifest.key] for worker in workers if manifest.key in worker.failed]
    return {"status": "failed", "error": errors[0]} if errors else {"status": "unavailable"}
