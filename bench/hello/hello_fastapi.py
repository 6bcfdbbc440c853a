"""FastAPI's bare hello-world: ``uvicorn --factory hello_fastapi:create_app``."""

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app
