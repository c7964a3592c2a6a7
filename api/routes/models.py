from fastapi import APIRouter

from api.deps import ServicesDep
from shared.schemas import ModelInfo

router = APIRouter(tags=["models"])


@router.get("/models", response_model=list[ModelInfo])
async def list_models(svc: ServicesDep) -> list[ModelInfo]:
    registry = svc.registry
    default = registry.resolve(None).key
    return [
        ModelInfo(
            name=m.name,
            version=m.version,
            input_shape=m.input_shape,
            labels=len(m.labels),
            default=m.key == default,
        )
        for m in registry.manifests.values()
    ]
