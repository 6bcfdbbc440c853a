"""Flask's bare hello-world on the service's server: ``python -m hello_flask --host H --port P``.

Served like the generated service's ``python -m <package>.server``: by that same module's
``serve`` (Granian, WEB_CONCURRENCY workers of its threads), from the service's environment.
"""

from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


if __name__ == "__main__":
    from orders_api.server import serve  # the rendered service the bench runs this beside

    serve("hello_flask:create_app", factory=True)
