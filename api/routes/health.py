from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel

from api.auth import caller
from api.openapi import problems
from api.routes.models import ModelState, model_states
from api.services import Services, ServicesDep
from shared.schemas import WorkerInfo

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(Health):
    """What the ops port's GET /readyz (and the public one, to an admin key) tells: what is
    serving where. Off the public surface: worker hostnames, versions and load errors tell an
    outsider what runs inside, and nothing a client needs."""

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


async def readiness(svc: ServicesDep) -> Readiness:
    """Redis is reachable (else 503), whether it is full, the live workers and every model
    version's state. Workers are reported, not required: they may be scaled to zero and the
    API still accepts jobs for them. (The ops port's GET /readyz.)"""
    full = await svc.store.full()
    workers = await svc.store.workers()
    return Readiness(status="ok", redis="full" if full else "ok", workers=len(workers),
                     worker_names=[w.name for w in workers], serving=workers,
                     models=model_states(svc.registry, workers))


async def _admin(request: Request, svc: Services) -> bool:
    """Whether the request carries an admin API key. Never a 401 here: a probe sends no key,
    and an unknown one only gets what anyone gets. (With AUTH_DISABLED there is no key to
    show: the detail is on the ops port.)"""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    try:
        who = await caller(request, svc, HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()))
    except HTTPException:
        return False
    return who.admin and who.key_id is not None


@router.get("/readyz", response_model=Health, responses={**problems(503), 200: {"description": (
    "Ready: `{\"status\": \"ok\"}`. With an admin key, also what is serving where, as the ops port's "
    "GET /readyz: `redis`, `workers`, `worker_names`, `serving`, `models`")}})
async def readyz(request: Request, svc: ServicesDep) -> Health | JSONResponse:
    """Ready when Redis answers (else 503), and nothing else to anyone: which workers serve
    which versions, and why one failed to load, are on the ops port (GET /readyz there) or
    here to an admin key."""
    if await _admin(request, svc):
        return JSONResponse((await readiness(svc)).model_dump(mode="json"))
    await svc.store.full()  # the Redis round trip that readiness is: 503 when it is down
    return Health(status="ok")
