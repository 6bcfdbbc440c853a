"""Quart's bare hello-world on the service's server: ``python -m hello_quart --host H --port P``.

Served like the generated service's ``python -m <package>.server``: by that same module's
``serve`` (uvicorn, WEB_CONCURRENCY workers), from the service's environment.
"""

from quart import Quart


def create_app() -> Quart:
    app = Quart(__name__)

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


if __name__ == "__main__":
    from orders_api.server import serve  # the rendered service the bench runs this beside

    serve("hello_quart:create_app")
