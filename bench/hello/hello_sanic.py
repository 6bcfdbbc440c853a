"""Sanic's bare hello-world on its own server: ``python -m hello_sanic --host H --port P``.

Started like the generated service's ``python -m <package>``: WEB_CONCURRENCY workers under
Sanic's worker manager, Sanic's access log off.
"""

import argparse
import os

from sanic import Request, Sanic
from sanic.response import HTTPResponse, json
from sanic.worker.loader import AppLoader


def create_app() -> Sanic:
    app = Sanic("hello")
    app.config.ACCESS_LOG = False

    @app.get("/")
    async def hello(request: Request) -> HTTPResponse:
        return json({"hello": "world"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(host=args.host, port=args.port, workers=int(os.environ.get("WEB_CONCURRENCY", "1")), motd=False)
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
