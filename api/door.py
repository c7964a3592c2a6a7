"""The door: a request to a route that needs a key is authenticated before a byte of its
body is read.

FastAPI parses a whole form before any dependency runs, and Starlette spools each file
part over 1 MB to disk, so `api.auth.caller` alone would let anyone with no key make the
API read, hold and spool a 64 MiB upload before its 401. `Door`, pure ASGI and outside
everything that reads a body, answers such a request at once: the same 401 problem
(`WWW-Authenticate: Bearer`), and `Connection: close` when a body was declared, so that
uvicorn closes the connection instead of reading the rest of it and throwing it away. A
client that sends `Expect: 100-continue` gets the 401 before it sends any of its body.

Which routes need a key has one source of truth, the routes themselves: those whose
dependencies include `caller`. Every other path (an unknown one too) needs a key, but the
public routes' (health, the page, the docs, the OpenAPI document, /static): found once, at
start-up, from the routes that do not take `caller`.

The key found goes in the request's state (`api_key`), where `caller` takes it: a request
authenticates once (one Redis round trip, or none within KEY_CACHE_SECONDS).
"""

import re
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import RouteContext, iter_route_contexts
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import authenticate, caller, unauthorized_problem
from api.errors import RETRY_AFTER_SECONDS, problem
from api.limits import CLOSE, declares_body
from shared.settings import Settings

STATE_KEY = "api_key"  # the request state's entry for the key the door let in


def takes_caller(dependant: Dependant) -> bool:
    return dependant.call is caller or any(takes_caller(d) for d in dependant.dependencies)


def needs_key(route: Any) -> bool:
    dependant = getattr(route, "dependant", None)
    return isinstance(dependant, Dependant) and takes_caller(dependant)


def routes_of(router: Router) -> list[RouteContext]:
    """Every route as it serves (the routers' own dependencies in its dependant)."""
    return list(iter_route_contexts(router.routes))


class PublicPaths:
    """The paths of the routes that take no key: exact ones, and the prefixes of mounts
    (/static). Routes with path parameters are matched by their pattern."""

    def __init__(self, routes: list[RouteContext]):
        self.exact: set[str] = set()
        self.prefixes: list[str] = []
        self.patterns: list[re.Pattern[str]] = []
        for route in routes:
            if needs_key(route):
                continue
            if isinstance(route.original_route, Mount):
                self.prefixes.append(f"{route.path}/")
            elif route.param_convertors:
                self.patterns.append(route.path_regex)
            elif route.path:
                self.exact.add(route.path)
        keyed = {route.path for route in routes if needs_key(route)}
        # One path, two answers (a public GET, a keyed POST) would need the method too: refuse.
        assert not keyed & self.exact, f"paths both public and keyed: {keyed & self.exact}"

    def __contains__(self, path: str) -> bool:
        return (path in self.exact or any(path.startswith(prefix) for prefix in self.prefixes)
                or any(pattern.match(path) for pattern in self.patterns))


def bearer_token(headers: dict[bytes, bytes]) -> str | None:
    """The token of `Authorization: Bearer <token>` (as FastAPI's HTTPBearer reads it)."""
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Door:
    """401 before the body for a keyed route with no key, a malformed or an unknown one;
    503 when Redis cannot say (see the module's docstring). With AUTH_DISABLED, open."""

    def __init__(self, app: ASGIApp, router: Router, settings: Settings):
        self.app = app
        self.open = settings.auth_disabled
        # Middleware is built at the first request, once every route is in (Starlette).
        self.public = PublicPaths(routes_of(router))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.open or scope["path"] in self.public:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        close = CLOSE if declares_body(headers) else {}
        token = bearer_token(headers)
        if token is None:
            return await unauthorized_problem("missing API key", close)(scope, receive, send)
        try:
            key = await authenticate(scope["app"].state.services, token)
        except (RedisConnectionError, RedisTimeoutError):
            answer = problem(503, "the job queue (Redis) is unavailable; retry shortly",
                             {"Retry-After": str(RETRY_AFTER_SECONDS), **close})
            return await answer(scope, receive, send)
        if key is None:
            return await unauthorized_problem("unknown or revoked API key", close)(scope, receive, send)
        state = scope.setdefault("state", {})  # request.state
        state[STATE_KEY] = key
        state["key_id"] = key.id  # for the access log (never the key itself)
        await self.app(scope, receive, send)
