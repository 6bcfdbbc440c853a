"""Starlette's bare hello-world on the service's server: ``python -m hello_starlette --host H --port P``.

Served like the generated service's ``python -m <package>.server``: by that same module's
``serve`` (uvicorn, WEB_CONCURRENCY workers), from the service's environment.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


def create_app() -> Starlette:
    return Starlette(routes=[Route("/", hello)])


if __name__ == "__main__":
    from orders_api.server import serve  # the rendered service the bench runs this beside

    serve("hello_starlette:create_app")
