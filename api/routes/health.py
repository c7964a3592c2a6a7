from fastapi import APIRouter, Depends

from api.deps import get_store
from shared.jobstore import JobStore

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(store: JobStore = Depends(get_store)) -> dict:
    """Redis is reachable (else 503). Workers are reported, not required: they may be
    scaled to zero and the API still accepts jobs for them."""
    store.redis.ping()
    workers = store.workers()
    return {"status": "ok", "redis": "ok", "workers": len(workers), "worker_names": workers}
