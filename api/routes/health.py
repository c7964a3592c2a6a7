from fastapi import APIRouter, Depends

from api.deps import Services, services
from shared.backlog import as_backlog, backlog_commands

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(svc: Services = Depends(services)) -> dict:
    """Redis is reachable (else 503). Workers are reported, not required: they may be
    scaled to zero and the API still accepts jobs for them."""
    await svc.store.redis.ping()
    workers = await svc.store.workers()
    return {"status": "ok", "redis": "ok", "workers": len(workers), "worker_names": workers}


@router.get("/queue")
async def queue(svc: Services = Depends(services)) -> dict:
    """Backlog: jobs waiting in the queue, and delivered to a worker but not yet done.
    KEDA's metrics-api trigger reads `in_flight` here (see k8s/base/keda.yaml)."""
    pipe = backlog_commands(svc.store.redis.pipeline(transaction=False), svc.settings.queue_name)
    return as_backlog(await pipe.execute())
