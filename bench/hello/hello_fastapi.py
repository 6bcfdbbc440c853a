"""FastAPI's bare hello-world on the service's server: ``python -m hello_fastapi --host H --port P``.

Served like the generated service's ``python -m <package>.server``: by that same module's
``serve`` (uvicorn, WEB_CONCURRENCY workers), from the service's environment.
"""

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


if __name__ == "__main__":
    from orders_api.server import serve  # the rendered service the bench runs this beside

    serve("hello_fastapi:create_app")
