"""Quart's bare hello-world: ``hypercorn 'hello_quart:create_app()'``."""

from quart import Quart


def create_app() -> Quart:
    app = Quart(__name__)

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app
