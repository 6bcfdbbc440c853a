"""Flask's bare hello-world: ``gunicorn 'hello_flask:create_app()'``."""

from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app
