from fastapi import APIRouter, Depends

from api.deps import get_registry
from shared.registry import Registry
from shared.schemas import ModelInfo

router = APIRouter(tags=["models"])


@router.get("/models", response_model=list[ModelInfo])
def list_models(registry: Registry = Depends(get_registry)) -> list[ModelInfo]:
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
