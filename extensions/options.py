"""The option model: every question's values and the rules about which answers go together.

This module is the single source of truth for what servicecraft supports. The copier.yml
validators call :func:`answer_error` through the Jinja extension, the template's tests
render :func:`covering_renders` (what :data:`INTERACTIONS` says must be tested together) and
:func:`pairwise_combinations`, and the CI matrix generator prints them. It imports nothing but
the standard library, so copier can load it from a template checkout without installing anything.
"""

from __future__ import annotations

import itertools
import keyword
import re
import sys
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Framework:
    """What the template needs to know about one web framework.

    copier.yml exposes the attributes the template branches on as computed answers (``server``,
    ``toolkit``, ``app``), so that a file or folder name tests one named fact.
    """

    name: str
    label: str
    #: "async" and "sync" frameworks share the SQLAlchemy data layer of their kind;
    #: Django brings its own ORM, cache framework and settings.
    stack: str
    implemented: bool
    #: The production server: "uvicorn" (ASGI) and "granian" (WSGI) run the service's
    #: ``server.py`` module of that name; "sanic" is Sanic's own, run by the package's ``__main__``.
    server: str
    #: The ASGI toolkit the framework is built on, whose lifespan, middleware and error handlers
    #: the frameworks on it share (``template/src/{% if toolkit == 'starlette' %}…``); "" for none.
    toolkit: str = ""
    #: Where the server finds the application, relative to the package: ``module:attribute``.
    app: str = "app:create_app"
    #: Whether ``app`` is a factory to call (``create_app``) rather than the application itself.
    factory: bool = True
    #: The auto-reloading development server, ``{package}`` standing for the package name and
    #: ``{port}`` for the port (``make run PORT=8001``; 8000 unless given).
    dev_server: str = ""

    @property
    def command(self) -> tuple[str, ...]:
        """The production server command (the Dockerfile's CMD), listening on port 8000."""
        return SERVER_COMMANDS[self.server]

    @property
    def io(self) -> str:
        """ "async" or "sync": which flavour of the shared code (cache-aside, readiness) it runs."""
        return "async" if self.stack == "async" else "sync"


#: How each server is started in production, ``{package}`` standing for the package name.
SERVER_COMMANDS: dict[str, tuple[str, ...]] = {
    # The service's server module, set up from its settings.
    "uvicorn": ("python", "-m", "{package}.server", "--host", "0.0.0.0", "--port", "8000"),
    "granian": ("python", "-m", "{package}.server", "--host", "0.0.0.0", "--port", "8000"),
    # Sanic's own server through its factory loader (the package's __main__), so the worker
    # count can come from WEB_CONCURRENCY, which Sanic's CLI does not read.
    "sanic": ("python", "-m", "{package}", "--host", "0.0.0.0", "--port", "8000"),
}


FRAMEWORKS: dict[str, Framework] = {
    f.name: f
    for f in (
        Framework(
            "django",
            "Django",
            "django",
            implemented=True,
            # WSGI: the views are sync, like Django's ORM and cache they call.
            server="granian",
            app="wsgi:application",
            factory=False,
            dev_server="python manage.py runserver {port}",
        ),
        Framework(
            "flask",
            "Flask (APIFlask)",
            "sync",
            implemented=True,
            server="granian",
            dev_server="flask --app {package}.app:create_app run --debug --port {port}",
        ),
        Framework(
            "fastapi",
            "FastAPI",
            "async",
            implemented=True,
            server="uvicorn",
            toolkit="starlette",
            app="main:create_app",
            dev_server="uvicorn --factory {package}.main:create_app --reload --port {port}",
        ),
        Framework(
            "starlette",
            "Starlette",
            "async",
            implemented=True,
            server="uvicorn",
            toolkit="starlette",
            dev_server="uvicorn --factory {package}.app:create_app --reload --port {port}",
        ),
        Framework(
            "quart",
            "Quart",
            "async",
            implemented=True,
            # Not Hypercorn: with several workers, its parent ends them all as soon as the first
            # has stopped, cutting off requests in flight on SIGTERM (docs/frameworks/quart.md).
            server="uvicorn",
            dev_server="quart --app {package}.app:create_app run --debug --reload --port {port}",
        ),
        Framework(
            "sanic",
            "Sanic",
            "async",
            implemented=True,
            server="sanic",
            dev_server="sanic {package}.app:create_app --factory --dev --no-access-logs --port {port}",
        ),
    )
}

#: The values of every multiple-choice question, in the order copier shows them.
CHOICES: dict[str, tuple[str, ...]] = {
    "license": ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary"),
    "python_version": ("3.13", "3.12"),
    "framework": tuple(name for name, f in FRAMEWORKS.items() if f.implemented),
    # Django only: django-ninja, or Django REST Framework with drf-spectacular.
    "django_api": ("ninja", "drf"),
    "database": ("postgresql", "sqlite", "none"),
    "cache": ("redis", "none"),
    "task_queue": ("celery", "none"),
    "broker": ("redis", "rabbitmq"),
    # "oidc": the API is an OAuth 2.0 resource server, accepting bearer JWTs from an OpenID
    # Connect provider; "none": open to anyone who can reach it.
    "auth": ("none", "oidc"),
    "docker": (True, False),
    "ci": ("github", "gitlab", "none"),
}

#: Options whose values change what the service does at run time; the others change only files
#: around it (license, Python version, Docker, CI).
RUNTIME_OPTIONS: tuple[str, ...] = ("framework", "django_api", "database", "cache", "task_queue", "broker", "auth")
STATIC_OPTIONS: tuple[str, ...] = ("license", "python_version", "docker", "ci")

#: Runtime options, and facts of them, whose values the service's code combines: the template's
#: tests render and run every valid combination of the values of each group; every other pair of
#: values appears at least once (:func:`covering_renders`). The web layer, the data layer, the
#: cache and the task queue meet in each framework's code. The broker is read by Celery's code,
#: which each stack has once (``facts()["stack"]``: async, sync or Django): it meets the stack,
#: the database and the cache in every combination, and each framework in one at least. Token
#: checks live in each web layer's code, so every framework meets both values of ``auth``.
INTERACTIONS: tuple[tuple[str, ...], ...] = (
    ("framework", "django_api", "database", "cache", "task_queue"),
    ("stack", "database", "cache", "task_queue", "broker"),
    ("framework", "django_api", "auth"),
)

#: Top-level modules that a generated service, its tests or its tools import, for every option:
#: the dependencies in dependencies.py and what they bring in, the load test's Locust included
#: (measured from the services' environments; tests/test_generated.py checks the list against
#: them), and the service's own top-level names. A package of one of these names would shadow
#: it, or be shadowed.
SERVICE_MODULES: frozenset[str] = frozenset(
    [
        "aiofiles",
        "aiosqlite",
        "alembic",
        "amqp",
        "annotated_doc",
        "annotated_types",
        "anyio",
        "apiflask",
        "apispec",
        "app",
        "asgiref",
        "ast_serialize",
        "asyncpg",
        "attr",
        "attrs",
        "bidict",
        "billiard",
        "blinker",
        "brotli",
        "celery",
        "certifi",
        "cffi",
        "cfgv",
        "charset_normalizer",
        "click",
        "click_didyoumean",
        "click_plugins",
        "click_repl",
        "configargparse",
        "conftest",
        "corsheaders",
        "cryptography",
        "data_layer",
        "dateutil",
        "deprecated",
        "distlib",
        "dj_database_url",
        "django",
        "django_stubs_ext",
        "dns",
        "dotenv",
        "drf_spectacular",
        "drf_spectacular_sidecar",
        "email_validator",
        "engineio",
        "execnet",
        "fastapi",
        "fastapi_offline",
        "filelock",
        "flask",
        "flask_cors",
        "flask_httpauth",
        "flask_login",
        "flask_marshmallow",
        "flask_swagger_ui",
        "gevent",
        "geventhttpclient",
        "google",
        "granian",
        "graphql",
        "greenlet",
        "h11",
        "h2",
        "harfile",
        "hiredis",
        "hpack",
        "html5tagger",
        "httpcore",
        "httpcore2",
        "httptools",
        "httpx",
        "httpx2",
        "hypercorn",
        "hyperframe",
        "hypothesis",
        "hypothesis_graphql",
        "identify",
        "idna",
        "inflection",
        "iniconfig",
        "itsdangerous",
        "jinja2",
        "jsonschema",
        "jsonschema_path",
        "jsonschema_rs",
        "jsonschema_specifications",
        "jwt",
        "kombu",
        "lazy_object_proxy",
        "librt",
        "limits",
        "locust",
        "mako",
        "manage",
        "markdown_it",
        "markupsafe",
        "marshmallow",
        "mdurl",
        "migrations",
        "msgpack",
        "multidict",
        "mypy",
        "mypy_django_plugin",
        "mypy_drf_plugin",
        "mypy_extensions",
        "mypyc",
        "ninja",
        "nodeenv",
        "offapi",
        "openapi_schema_validator",
        "openapi_spec_validator",
        "opentelemetry",
        "packaging",
        "pathable",
        "pathspec",
        "pkg_resources",
        "platformdirs",
        "pluggy",
        "pre_commit",
        "priority",
        "prometheus_client",
        "prompt_toolkit",
        "psutil",
        "psycopg",
        "psycopg_binary",
        "psycopg_pool",
        "py",
        "pycparser",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "pygments",
        "pyrate_limiter",
        "pytest",
        "pytest_django",
        "pytest_locust",
        "python_discovery",
        "quart",
        "quart_cors",
        "quart_schema",
        "redis",
        "referencing",
        "requests",
        "rest_framework",
        "rfc3339_validator",
        "rich",
        "rpds",
        "ruff",
        "sanic",
        "sanic_ext",
        "sanic_routing",
        "schemathesis",
        "sentry_sdk",
        "settings",
        "setuptools",
        "simple_websocket",
        "six",
        "socketio",
        "sortedcontainers",
        "spectree",
        "sqlalchemy",
        "sqlparse",
        "starlette",
        "swagger_ui_bundle",
        "test",
        "tests",
        "tracerite",
        "truststore",
        "typing_extensions",
        "typing_inspection",
        # celery 5.6 (the Redis broker pins it below 5.7: dependencies.py) depends on tzdata.
        "tzdata",
        "tzlocal",
        "ujson",
        "uritemplate",
        "urllib3",
        "uvicorn",
        "uvloop",
        "vine",
        "virtualenv",
        "watchfiles",
        "wcwidth",
        "webargs",
        "websocket",
        "websockets",
        "werkzeug",
        "whitenoise",
        "wrapt",
        "wsproto",
        "xdist",
        "yaml",
        "zmq",
        "zope",
    ]
)

#: Distributions in a generated service's environment. The service's own distribution (its
#: project_slug) may not take one of their names, or uv would find it depending on itself.
SERVICE_DISTRIBUTIONS: frozenset[str] = frozenset(
    name.replace("_", "-")
    for name in SERVICE_MODULES - {"app", "conftest", "data_layer", "manage", "migrations", "settings", "test", "tests"}
) | frozenset(
    [
        "celery-types",
        "charset-normalizer",
        "django-cors-headers",
        "django-ninja",
        "django-stubs",
        "djangorestframework",
        "djangorestframework-stubs",
        "dnspython",
        "flask-cors",
        "flask-login",
        "graphql-core",
        "hypothesis-graphql",
        "jsonschema-rs",
        "googleapis-common-protos",
        "markdown-it-py",
        "opentelemetry-api",
        "opentelemetry-exporter-http-transport",
        "opentelemetry-exporter-otlp-common",
        "opentelemetry-exporter-otlp-proto-common",
        "opentelemetry-exporter-otlp-proto-http",
        "opentelemetry-instrumentation",
        "opentelemetry-instrumentation-asgi",
        "opentelemetry-instrumentation-celery",
        "opentelemetry-instrumentation-django",
        "opentelemetry-instrumentation-fastapi",
        "opentelemetry-instrumentation-flask",
        "opentelemetry-instrumentation-redis",
        "opentelemetry-instrumentation-sqlalchemy",
        "opentelemetry-instrumentation-wsgi",
        "opentelemetry-proto",
        "opentelemetry-sdk",
        "opentelemetry-semantic-conventions",
        "opentelemetry-util-http",
        "protobuf",
        "pyjwt",
        "pyrate-limiter",
        "pytest-xdist",
        "python-dateutil",
        "python-dotenv",
        "python-engineio",
        "python-socketio",
        "pyyaml",
        "pyzmq",
        "rpds-py",
        "simple-websocket",
        "types-pyyaml",
        "websocket-client",
        "zope-event",
        "zope-interface",
    ]
)

#: The standard library's modules, whatever Python runs copier (3.11 and later list them).
STDLIB_MODULES: frozenset[str] = frozenset(sys.stdlib_module_names)

#: Soft keywords of the Python versions a service may run, whatever Python runs copier.
SOFT_KEYWORDS: frozenset[str] = frozenset({"_", "case", "match", "type"})

#: Lengths past which an answer would not fit the service's files: its file names (slug and
#: package), and the 120-character lines its linter allows around the project name and the
#: description, as they are written there (non-ASCII letters escaped).
MAX_NAME = 50
MAX_TITLE = 64
MAX_DESCRIPTION = 80

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


def slugify(name: str) -> str:
    """Derive a kebab-case slug from a free-form project name ("Über Cart" -> "uber-cart").

    Always a slug the rules accept, and so is the package made from it: a name that starts with
    a digit gets a "service-" prefix, one with no Latin letter or digit at all (a name in another
    script) gives "service", and one taken by a dependency or the standard library ("PyJWT",
    "JSON") gets a "-service" suffix.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    if not slug:
        return "service"
    if slug[0].isdigit():
        slug = f"service-{slug}"
    slug = slug[:MAX_NAME].rstrip("-")
    if _slug_error(slug) or _package_error(package_from_slug(slug)):
        slug = f"{slug[: MAX_NAME - len('-service')].rstrip('-')}-service"
    return slug


def package_from_slug(slug: str) -> str:
    """Derive the Python package name from a slug."""
    return slug.replace("-", "_")


def _escaped(text: str, quote: str = '"') -> str:
    """``text`` with ``quote`` and every non-ASCII character escaped, the same way in Python and TOML.

    ASCII only, so that no linter mistakes a letter of another script for a Latin one (ruff's
    RUF001); ``\\u`` and ``\\U`` escapes mean the same in both languages. Backslashes and control
    characters never get here: the rules refuse them.
    """
    return "".join(_escaped_char(char, quote) for char in text)


def _escaped_char(char: str, quote: str) -> str:
    if char == quote:
        return f"\\{quote}"
    if " " <= char <= "~":
        return char
    return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"


#: The generated services' line length (template/pyproject.toml.jinja, ruff's line-length).
LINE_LENGTH = 120


def import_from(module: str, *names: str) -> str:
    """``from module import names`` as ruff formats it: on one line when it fits, else one name a line."""
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= LINE_LENGTH:
        return line
    return "\n".join([f"from {module} import (", *(f"    {name}," for name in names), ")"])


def py_str(text: str) -> str:
    """``text`` as a Python string literal, quoted as ruff's formatter quotes it.

    Double quotes, unless the text holds more double than single quotes: then single ones, which
    need fewer escapes (ruff would rewrite the literal that way, and the format check would fail).
    """
    quote = "'" if text.count('"') > text.count("'") else '"'
    return f"{quote}{_escaped(text, quote)}{quote}"


def toml_str(text: str) -> str:
    """``text`` as a TOML basic string (double-quoted; TOML's single quotes allow no escapes)."""
    return f'"{_escaped(text)}"'


def docstring_text(text: str) -> str:
    """``text`` made safe inside a triple-quoted docstring."""
    return _escaped(text)


def facts(answers: Mapping[str, Any]) -> dict[str, Any]:
    """What several files need to know about a set of answers, worked out in this one place.

    copier.yml exposes each fact as a computed answer (``when: false``; not stored in the
    answers file, so ``copier update`` works them out again with the new version's rules), and
    file names, folder names and files test one named fact instead of repeating a condition.
    """
    framework = FRAMEWORKS[answers["framework"]]
    broker = answers.get("broker") if answers.get("task_queue") == "celery" else None
    redis_server = answers.get("cache") == "redis" or broker == "redis"
    services = {"db": answers.get("database") == "postgresql", "redis": redis_server, "rabbitmq": broker == "rabbitmq"}
    return {
        # The data layer the framework shares with others of its kind: async, sync or django.
        "stack": framework.stack,
        # The flavour of the code frameworks of that kind share: Flask and Django are both sync.
        "io": framework.io,
        "server": framework.server,
        "toolkit": framework.toolkit,
        "app": framework.app,
        "app_factory": framework.factory,
        # Django's API layer (ninja or drf); "" for the others, which have their own.
        "api_layer": answers.get("django_api", "") if framework.name == "django" else "",
        # A cache in front of the database; with no database, Redis is the store itself.
        "cache_aside": answers.get("cache") == "redis" and answers.get("database") != "none",
        # The servers run beside the service (compose, CI), by their compose names, in start order.
        "redis_server": redis_server,
        "rabbitmq_server": broker == "rabbitmq",
        "backing_services": [name for name, used in services.items() if used],
        # The settings that point the service at its backing services: secrets, as they may hold
        # passwords (the Kubernetes manifests reference them, never their values).
        "service_urls": [
            name
            for name, used in (
                ("DATABASE_URL", answers.get("database") == "postgresql"),
                ("REDIS_URL", answers.get("cache") == "redis"),
                ("CELERY_BROKER_URL", broker is not None),
            )
            if used
        ],
        # Kubernetes manifests go with the image, for a database server or none: a SQLite file
        # belongs to one pod on one node, where the manifests run replicas across nodes.
        "kubernetes": bool(answers.get("docker")) and answers.get("database") != "sqlite",
    }


#: The questions copier asks only after a given answer to an earlier one (copier.yml's ``when``).
ASKED_WITH: dict[str, tuple[str, str]] = {
    "django_api": ("framework", "django"),
    "broker": ("task_queue", "celery"),
}


def applies(question: str, answers: Mapping[str, Any]) -> bool:
    """Whether copier asks ``question`` given the other answers (copier.yml's ``when``)."""
    if question not in ASKED_WITH:
        return True
    earlier, needed = ASKED_WITH[question]
    return answers.get(earlier) == needed


#: The yes/no questions, and the spellings copier reads as yes or no (copier's own
#: cast_to_bool turns any other text into yes, so "maybe" would silently mean true).
YES_NO_QUESTIONS: tuple[str, ...] = ("docker",)
_YES = frozenset({"y", "yes", "t", "true", "on", "1"})
_NO = frozenset({"n", "no", "f", "false", "off", "0"})


def parse_yes_no(value: Any) -> bool | None:
    """``value`` as a yes/no answer, or None when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _YES or word in _NO:
            return word in _YES
    return None


#: The questions answered in free text, in the order copier asks them.
TEXT_QUESTIONS: tuple[str, ...] = (
    "project_name",
    "project_slug",
    "package_name",
    "description",
    "author_name",
    "author_email",
)

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _free_text_error(question: str, text: str, limit: int) -> str:
    """What is wrong with a one-line text that the service's files quote, or ""."""
    fix = f"e.g. {_cleaned(question, text, limit)!r}"
    if not text.strip():
        return f"{question} is empty: write it out, {fix}."
    if text != text.strip():
        return f"{question} {text!r} starts or ends with spaces: remove them, {fix}."
    if _UNPRINTABLE.search(text):
        return f"{question} {text!r} holds a line break or a control character: keep it to one plain line, {fix}."
    if "\\" in text:
        return f"{question} {text!r} holds a backslash: leave it out, {fix}."
    if len(py_str(text)) - 2 > limit:
        return (
            f"{question} is too long for the service's files: shorten it to {limit} characters (a quote "
            f"counts as 2, a letter outside ASCII as 6), {fix}."
        )
    return ""


def _cleaned(question: str, text: str, limit: int) -> str:
    """``text`` on one plain line, within ``limit``: the suggestion a refusal makes."""
    words = " ".join(_UNPRINTABLE.sub(" ", text).replace("\\", "/").split())
    while words and len(py_str(words)) - 2 > limit:
        # Shorter every time: the last word goes, or the last character of the only word.
        words = words.rsplit(" ", 1)[0] if " " in words else words[:-1]
    return words or EXAMPLES[question]


EXAMPLES = {"project_name": "Orders API", "description": "Takes and tracks orders.", "author_name": "Platform Team"}


def _package_error(text: str) -> str:
    if not PACKAGE_RE.match(text) or len(text) > MAX_NAME:
        return (
            f"package_name {text!r} is not a valid Python package name: use up to {MAX_NAME} lowercase "
            "letters, digits and underscores, not starting with a digit, e.g. 'orders_api'."
        )
    if keyword.iskeyword(text) or text in SOFT_KEYWORDS:
        return f"package_name {text!r} is a Python keyword: choose another name, e.g. {_suggest_package(text)!r}."
    if text in STDLIB_MODULES or text in SERVICE_MODULES:
        where = "the standard library's" if text in STDLIB_MODULES else "the"
        return (
            f"package_name {text!r} would shadow {where} {text!r} module: "
            f"choose another name, e.g. {_suggest_package(text)!r}."
        )
    return ""


def _suggest_package(text: str) -> str:
    suggestion = f"{text[: MAX_NAME - len('_service')]}_service"
    return suggestion if PACKAGE_RE.match(suggestion) else "orders_api"


def _slug_error(text: str) -> str:
    if not SLUG_RE.match(text) or len(text) > MAX_NAME:
        return (
            f"project_slug {text!r} is not kebab-case: use up to {MAX_NAME} lowercase letters, digits and "
            f"single dashes, starting with a letter, e.g. {slugify(text)!r}."
        )
    if text in SERVICE_DISTRIBUTIONS:
        return (
            f"project_slug {text!r} is the name of a package the service depends on: "
            f"choose another, e.g. '{text[: MAX_NAME - len('-service')]}-service'."
        )
    return ""


def _text_error(question: str, value: Any) -> str:
    text = "" if value is None else str(value)
    if question == "project_name":
        if not text.strip():
            return "project_name is required: give the service a name, e.g. 'Orders API'."
        return _free_text_error(question, text, MAX_TITLE)
    if question == "project_slug":
        return _slug_error(text)
    if question == "package_name":
        return _package_error(text)
    if question == "description":
        return _free_text_error(question, text, MAX_DESCRIPTION)
    if question == "author_name":
        return _free_text_error(question, text, 100)
    if question == "author_email":
        if EMAIL_RE.match(text) and len(text) <= 100:
            return ""
        return f"author_email {text!r} is not an email address: use the form name@example.com."
    return ""


def answer_error(question: str, answers: Mapping[str, Any]) -> str:
    """Return why ``answers[question]`` is not acceptable given the earlier answers, or "".

    Questions are validated in the order copier asks them, so a rule that involves two
    questions is reported on the later one; the message names the problem and the fix.
    """
    value = answers.get(question)
    text_error = _text_error(question, value)
    if text_error:
        return text_error

    if not applies(question, answers):
        # Copier validates an answer given with --data even when it does not ask the question.
        earlier, needed = ASKED_WITH[question]
        return (
            f"{question} {value!r} does nothing with {earlier} {answers.get(earlier)!r}: leave {question} "
            f"out of the answers, or choose {earlier} {needed!r}."
        )

    if question in YES_NO_QUESTIONS:
        if parse_yes_no(value) is None:
            return f"{question} {value!r} is not a yes or no: answer {question}=true or {question}=false."
        return ""

    if question in CHOICES and value not in CHOICES[question]:
        allowed = ", ".join(str(v) for v in CHOICES[question])
        if question == "framework" and value in FRAMEWORKS:
            return f"framework '{value}' is not available in this version of servicecraft yet: choose one of {allowed}."
        return f"{question} '{value}' is not supported: choose one of {allowed}."

    if question == "cache" and answers.get("database") == "none" and value == "none":
        return (
            "database 'none' with cache 'none' leaves the service nowhere to keep its data: "
            "choose cache 'redis' (Redis then stores the example resource) or a database."
        )
    if question == "database" and answers.get("framework") == "django" and value == "none":
        return (
            "framework 'django' needs a database: its admin, users and sessions live there, "
            "and the example resource is a Django model: choose database 'postgresql' or 'sqlite'."
        )
    return ""


def combination_errors(answers: Mapping[str, Any]) -> list[str]:
    """Every rule a full set of answers breaks, in question order."""
    questions = [*TEXT_QUESTIONS, *CHOICES]
    return [
        error
        for question in questions
        if question in answers and applies(question, answers) and (error := answer_error(question, answers))
    ]


def is_valid(answers: Mapping[str, Any]) -> bool:
    """Whether the options in ``answers`` go together (free-text answers are not looked at)."""
    return not [q for q in CHOICES if q in answers and answer_error(q, answers) and applies(q, answers)]


def _normalise(answers: dict[str, Any]) -> dict[str, Any]:
    """Drop answers to questions that would not be asked, so equal services compare equal."""
    for question in ("django_api", "broker"):
        if not applies(question, answers):
            answers.pop(question, None)
    return answers


def label(combo: Mapping[str, Any]) -> str:
    """A combination's runtime values, e.g. ``fastapi-postgresql-redis-celery-rabbitmq``; ``auth``
    appears when the API checks tokens (``...-rabbitmq-oidc``), so that ``none`` stays the data's."""
    return "-".join(str(combo[q]) for q in RUNTIME_OPTIONS if q in combo and (q, combo[q]) != ("auth", "none"))


def _wanted(value: Any, wanted: Any) -> bool:
    """Whether ``value`` passes a filter: one value, a collection of values, or None (any)."""
    if wanted is None:
        return True
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return value in wanted
    return bool(value == wanted)


def runtime_combinations(**filters: Any) -> list[dict[str, Any]]:
    """Every valid combination of the runtime options, optionally filtered by value.

    A filter is one value or a collection of values; filters on static options are left
    to the functions that assign them.
    """
    seen: list[dict[str, Any]] = []
    for values in itertools.product(*(CHOICES[q] for q in RUNTIME_OPTIONS)):
        combo = _normalise(dict(zip(RUNTIME_OPTIONS, values, strict=True)))
        if not is_valid(combo) or combo in seen:
            continue
        if all(_wanted(combo.get(k), v) for k, v in filters.items() if k not in STATIC_OPTIONS):
            seen.append(combo)
    return seen


def _static_assignments(**filters: Any) -> list[dict[str, Any]]:
    """Every assignment of the static options that the filters allow."""
    values = [[v for v in CHOICES[q] if _wanted(v, filters.get(q))] for q in STATIC_OPTIONS]
    return [dict(zip(STATIC_OPTIONS, v, strict=True)) for v in itertools.product(*values)]


def _pairs(combo: Mapping[str, Any], options: tuple[str, ...]) -> Iterator[tuple[tuple[str, Any], tuple[str, Any]]]:
    for a, b in itertools.combinations(options, 2):
        if a in combo and b in combo:
            yield (a, combo[a]), (b, combo[b])


def required_pairs(
    options: tuple[str, ...] = RUNTIME_OPTIONS + STATIC_OPTIONS,
) -> set[tuple[tuple[str, Any], tuple[str, Any]]]:
    """Every pair of values that some valid full combination contains."""
    pairs: set[tuple[tuple[str, Any], tuple[str, Any]]] = set()
    for combo in runtime_combinations():
        for statics in itertools.product(*(CHOICES[q] for q in STATIC_OPTIONS)):
            full = {**combo, **dict(zip(STATIC_OPTIONS, statics, strict=True))}
            pairs.update(_pairs(full, options))
    return pairs


def pairwise_combinations(**filters: Any) -> list[dict[str, Any]]:
    """A small set of full combinations in which every valid pair of values appears.

    Greedy all-pairs: each runtime combination is tried with every assignment of the
    static options, and the candidate covering most uncovered pairs is taken until none
    is left. Deterministic, so the CI matrix is stable from run to run.
    """
    options = RUNTIME_OPTIONS + STATIC_OPTIONS
    runtime = runtime_combinations(**filters)
    candidates = [{**combo, **statics} for combo in runtime for statics in _static_assignments(**filters)]
    uncovered = {pair for c in candidates for pair in _pairs(c, options)}
    chosen: list[dict[str, Any]] = []
    while uncovered:
        best = max(candidates, key=lambda c: len(uncovered.intersection(_pairs(c, options))))
        chosen.append(best)
        uncovered.difference_update(_pairs(best, options))
    return chosen


def interactions(combo: Mapping[str, Any]) -> Iterator[tuple[tuple[str, Any], ...]]:
    """The combination's values of each group of :data:`INTERACTIONS` (facts worked out), leaving
    out the options it does not have (``django_api`` without Django, ``broker`` without Celery)."""
    values = {**combo, **facts(combo)}
    for group in INTERACTIONS:
        yield tuple((name, values[name]) for name in group if name in values)


def required_interactions(**filters: Any) -> set[tuple[tuple[str, Any], ...]]:
    """Every combination of interacting values that some valid runtime combination has."""
    return {values for combo in runtime_combinations(**filters) for values in interactions(combo)}


def interacting_combinations(**filters: Any) -> list[dict[str, Any]]:
    """Runtime combinations, in :func:`runtime_combinations`' order, that hold every combination
    of interacting values and every pair of runtime values.

    Greedy: the combination that adds the most of both is taken until none is missing; ties go
    to the earliest, so the set is the same from run to run.
    """
    runtime = runtime_combinations(**filters)

    def needs(combo: Mapping[str, Any]) -> set[Any]:
        return set(interactions(combo)) | set(_pairs(combo, RUNTIME_OPTIONS))

    missing = set().union(*(needs(combo) for combo in runtime))
    chosen: list[int] = []
    while missing:
        best = max(range(len(runtime)), key=lambda i: len(missing.intersection(needs(runtime[i]))))
        chosen.append(best)
        missing.difference_update(needs(runtime[best]))
    return [runtime[i] for i in sorted(chosen)]


def covering_renders(**filters: Any) -> list[dict[str, Any]]:
    """The renders the template's tests run: every combination of interacting values
    (:func:`interacting_combinations`), and every pair of values of all the options.

    Each runtime combination gets the static answers that cover the most pairs not yet
    seen; if a pair is still missing after that, the full combinations that cover the most of
    what is missing are appended.
    """
    options = RUNTIME_OPTIONS + STATIC_OPTIONS
    statics = _static_assignments(**filters)
    runtime = interacting_combinations(**filters)
    every = runtime_combinations(**filters)
    uncovered = {pair for combo in every for static in statics for pair in _pairs({**combo, **static}, options)}
    renders: list[dict[str, Any]] = []
    for combo in runtime:
        best = max(({**combo, **s} for s in statics), key=lambda c: len(uncovered.intersection(_pairs(c, options))))
        renders.append(best)
        uncovered.difference_update(_pairs(best, options))
    # A pair still missing (a static value with a value that only a few runtime combinations
    # take, such as auth=oidc) gets the full combination that adds the most; of those, the one
    # with the fewest servers to run beside it, whose tests are the quickest; then the first.
    candidates = [{**combo, **static} for combo in every for static in statics]
    servers = {id(c): len(facts(c)["backing_services"]) for c in candidates}
    while uncovered:
        extra = max(candidates, key=lambda c: (len(uncovered.intersection(_pairs(c, options))), -servers[id(c)]))
        renders.append(extra)
        uncovered.difference_update(_pairs(extra, options))
    return renders
