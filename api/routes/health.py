from fastapi import APIRouter, Depends

from api.deps import Services, services

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
