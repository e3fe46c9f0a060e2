"""A tiny upstream API for demos and benchmarks, optionally behind ``KeywatchMiddleware``.

``python -m gateway.sample_api --listen 127.0.0.1:8080`` serves it protected (the same
configuration as ``keywatch gateway``); ``--open`` serves it without the middleware.
"""

from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def users(_request: Request) -> Response:
    """A list endpoint."""
    return JSONResponse({"users": [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}]})


async def user(request: Request) -> Response:
    """A detail endpoint."""
    return JSONResponse({"id": int(request.path_params["uid"]), "name": "Ada"})


async def orders(request: Request) -> Response:
    """A write endpoint."""
    return JSONResponse({"created": True}, status_code=201 if request.method == "POST" else 200)


async def health(_request: Request) -> Response:
    """Liveness, served without a key."""
    return JSONResponse({"status": "ok"})


def app() -> Starlette:
    """The bare sample API."""
    return Starlette(routes=[
        Route("/health", health), Route("/v1/users", users),
        Route("/v1/users/{uid:int}", user), Route("/v1/orders", orders, methods=["GET", "POST"]),
    ])  # fmt: skip


def protected_app() -> object:
    """The sample API behind ``KeywatchMiddleware`` (configured from the environment)."""
    from gateway.middleware import KeywatchMiddleware

    return KeywatchMiddleware(app(), exempt=("/health",))


def main() -> None:
    """Serve the sample API with uvicorn."""
    import uvicorn

    from gateway.settings import split_listen

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--open", action="store_true", help="serve without the middleware")
    args = parser.parse_args()
    host, port = split_listen(args.listen)
    target = app() if args.open else protected_app()
    uvicorn.run(target, host=host, port=port, log_level="warning", access_log=False)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
