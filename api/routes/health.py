from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.openapi import problems
from api.routes.models import ModelState, model_states
from api.services import ServicesDep
from shared.schemas import WorkerInfo

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(Health):
    # "full": at maxmemory, so submissions get 503 while reads, cancels and the workers go
    # on (the pod stays ready: taking it out would stop those too).
    redis: Literal["ok", "full"]
    workers: int
    worker_names: list[str]
    serving: list[WorkerInfo]  # each live worker's loaded models, and those that failed, with why
    # Per model and version in MODEL_DIR (an invalid manifest too): whether a live worker has
    # it loaded (which), or why not.
    models: list[ModelState]


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", responses=problems(503))
async def readyz(svc: ServicesDep) -> Readiness:
    """Redis is reachable (else 503), and whether it is full. Workers are reported, not
    required: they may be scaled to zero and the API still accepts jobs for them."""
    full = await svc.store.full()
    workers = await svc.store.workers()
    return Readiness(status="ok", redis="full" if full else "ok", workers=len(workers),
                     worker_names=[w.name for w in workers], serving=workers,
                     models=model_states(svc.registry, workers))
