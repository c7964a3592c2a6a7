from fastapi import APIRouter

from api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(svc: ServicesDep) -> dict:
    """Redis is reachable (else 503). Workers are reported, not required: they may be
    scaled to zero and the API still accepts jobs for them."""
    await svc.store.ping()
    workers = await svc.store.workers()
    return {"status": "ok", "redis": "ok", "workers": len(workers), "worker_names": [w.name for w in workers],
            "serving": [w.model_dump() for w in workers]}


@router.get("/queue")
async def queue(svc: ServicesDep) -> dict:
    """Backlog: jobs waiting in the queue, and delivered to a worker but not yet done.
    KEDA's metrics-api trigger reads `in_flight` here (see k8s/base/keda.yaml)."""
    return await svc.store.backlog(svc.settings.queue_name)
