"""The container and CI files of generated services: valid, exactly the chosen services, and
the Dockerfile's CMD really serving in production mode.

Static checks render a few combinations per implemented framework (Docker with GitHub and
with GitLab; PostgreSQL, Redis and Celery on RabbitMQ, and SQLite-only and database-less
variants) and check them with hadolint and the compose-spec, GitHub workflow and GitLab CI
schemas shipped by check-jsonschema. The production test builds the image's stand-in without
Docker (the build context .dockerignore leaves, the Dockerfile's own uv steps), starts its CMD
(moved to a free loopback port) against this machine's PostgreSQL and Redis, probes it over
real HTTP and stops it with SIGTERM.
"""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message as HTTPMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import (
    BIN,
    check_jsonschema,
    database_name,
    options,
    python_for,
    render,
    require_service,
    run,
    unavailable,
    url_settings,
    uv_env,
    web_layer_params,
)

from bench.harness import Database, free_port, on_loopback
from extensions import dependencies

FRAMEWORKS = [name for name, framework in options.FRAMEWORKS.items() if framework.implemented]
BASE = {"docker": True}
PACKAGE = "orders_api"

#: The combinations rendered for the static checks, by name.
COMBOS: dict[str, dict[str, Any]] = {
    "full-github": {
        "database": "postgresql",
        "cache": "redis",
        "task_queue": "celery",
        "broker": "rabbitmq",
        "ci": "github",
    },
    "full-gitlab": {
        "database": "postgresql",
        "cache": "redis",
        "task_queue": "celery",
        "broker": "rabbitmq",
        "ci": "gitlab",
        "python_version": "3.12",
    },
    "sqlite-gitlab": {"database": "sqlite", "cache": "none", "task_queue": "none", "ci": "gitlab"},
    "redis-only-github": {
        "database": "none",
        "cache": "redis",
        "task_queue": "celery",
        "broker": "redis",
        "ci": "github",
    },
}
# One xdist group per render, so one worker renders it once and runs all its checks.
CASES = [
    pytest.param(f, c, id=f"{f}-{c}", marks=pytest.mark.xdist_group(f"container-{f}-{c}"))
    for f in FRAMEWORKS
    for c in COMBOS
    if options.is_valid({"framework": f, **COMBOS[c]})
]
#: What compose's migrate service runs: Alembic, or Django's own migrations.
MIGRATE = {"django": ["python", "manage.py", "migrate", "--no-input"]}
ALEMBIC_UPGRADE = ["alembic", "upgrade", "head"]
#: Compose's observability profile: its services, and the UIs they publish (host port: service).
OBSERVABILITY = {"prometheus", "grafana", "otel-collector", "jaeger"}
OBSERVABILITY_UIS = {9090: "prometheus", 3000: "grafana", 16686: "jaeger"}
#: The service's metrics port (METRICS_PORT's default), which compose must never publish.
METRICS_PORT = 9464


# --- rendering ------------------------------------------------------------------------------


class Rendered:
    """One rendered combination and its answers, with the files this module looks at parsed."""

    def __init__(self, path: Path, answers: dict[str, Any]) -> None:
        self.path = path
        self.answers = {"python_version": "3.13", **answers}

    def __getitem__(self, key: str) -> Any:
        return self.answers[key]

    @property
    def compose(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "compose.yaml").read_text())

    def compose_without_profiles(self) -> dict[str, Any]:
        """The compose file as `docker compose up` runs it: without the services of a profile."""
        compose = self.compose
        compose["services"] = {name: s for name, s in compose["services"].items() if "profiles" not in s}
        return compose

    @property
    def ci_file(self) -> Path:
        return self.path / (".github/workflows/ci.yml" if self["ci"] == "github" else ".gitlab-ci.yml")

    @property
    def ci(self) -> dict[str, Any]:
        return yaml.safe_load(self.ci_file.read_text())

    def dockerfile(self) -> list[tuple[str, str]]:
        return parse_dockerfile((self.path / "Dockerfile").read_text())

    def healthcheck(self) -> list[str]:
        checks = [args for instruction, args in self.dockerfile() if instruction == "HEALTHCHECK"]
        assert len(checks) == 1, f"expected one HEALTHCHECK, got {checks}"
        return json.loads(checks[0][checks[0].index("CMD ") + 4 :])

    def cmd(self) -> list[str]:
        cmds = [args for instruction, args in self.dockerfile() if instruction == "CMD"]
        assert cmds, "the Dockerfile has no CMD"
        parsed = json.loads(cmds[-1])
        assert isinstance(parsed, list), f"CMD is not in exec form (a JSON array): {cmds[-1]}"
        return parsed


_RENDERS: dict[tuple[str, str], Rendered] = {}


@pytest.fixture
def rendered(framework: str, combo: str, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """One render per framework and combination for the whole module."""
    key = (framework, combo)
    if key not in _RENDERS:
        answers = {"framework": framework, **COMBOS[combo]}
        _RENDERS[key] = Rendered(
            render(tmp_path_factory.mktemp(f"{framework}-{combo}") / "service", {**BASE, **answers}), answers
        )
    return _RENDERS[key]


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        instruction, _, arguments = whole.partition(" ")
        instructions.append((instruction.upper(), arguments.strip()))
    return instructions


def expected_server(framework: str) -> list[str]:
    """The production command options.py records for the framework, for this package."""
    return [part.format(package=PACKAGE) for part in options.FRAMEWORKS[framework].command]


def backing_services(answers: dict[str, Any]) -> set[str]:
    """The servers a combination talks to, by compose service name."""
    celery = answers["task_queue"] == "celery"
    services = set()
    if answers["database"] == "postgresql":
        services.add("db")
    if answers["cache"] == "redis" or (celery and answers["broker"] == "redis"):
        services.add("redis")
    if celery and answers["broker"] == "rabbitmq":
        services.add("rabbitmq")
    return services


def pooler(answers: dict[str, Any]) -> set[str]:
    """PgBouncer, which compose puts in front of PostgreSQL."""
    return {"pgbouncer"} if answers["database"] == "postgresql" else set()


# --- Dockerfile -----------------------------------------------------------------------------


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_dockerfile_passes_hadolint(rendered: Rendered) -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "Dockerfile"],
        cwd=rendered.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_dockerfile_cmd_is_the_frameworks_production_server(rendered: Rendered, framework: str) -> None:
    assert rendered.cmd() == expected_server(framework)


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_dockerfile_builds_with_uv_and_runs_slim_as_non_root(rendered: Rendered) -> None:
    instructions = rendered.dockerfile()
    froms = [args for name, args in instructions if name == "FROM"]
    assert len(froms) == 2, f"expected a builder and a runtime stage, got {froms}"
    assert froms[-1] == f"python:{rendered['python_version']}-slim", "the runtime stage is not the slim Python image"
    runs = " ".join(args for name, args in instructions if name == "RUN")
    assert "uv sync" in runs and "--no-dev" in runs
    envs = " ".join(args for name, args in instructions if name == "ENV")
    assert "PYTHONUNBUFFERED=1" in envs
    assert '"/app/.venv/bin:$PATH"' in envs, "the virtual environment is not on PATH"
    users = [args for name, args in instructions if name == "USER"]
    assert users, "the image runs as root: no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert ("EXPOSE", "8000 9464") in instructions


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_dockerfile_healthcheck_probes_healthz_with_the_standard_library(rendered: Rendered) -> None:
    command = rendered.healthcheck()
    assert command[0] == "python" and "urllib.request" in command[-1] and "127.0.0.1:8000/healthz" in command[-1]
    # The probe itself must be valid Python that fails (non-zero) when nothing listens.
    port = free_port()
    probe = command[-1].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30, check=False).returncode != 0


# --- compose --------------------------------------------------------------------------------


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_compose_file_validates_against_the_compose_spec(rendered: Rendered, tmp_path: Path) -> None:
    """The file as written (every profile on), and as `docker compose up` reads it (none on)."""
    result = check_jsonschema("vendor.compose-spec", rendered.path / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    without = tmp_path / "compose.yaml"
    without.write_text(yaml.safe_dump(rendered.compose_without_profiles()))
    result = check_jsonschema("vendor.compose-spec", without)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_compose_has_exactly_the_chosen_services(rendered: Rendered) -> None:
    answers = rendered.answers
    expected = {"app"} | backing_services(answers) | pooler(answers)
    if answers["database"] != "none":
        expected.add("migrate")
    if answers["task_queue"] == "celery":
        expected |= {"worker", "beat"}
    services = rendered.compose["services"]
    assert set(rendered.compose_without_profiles()["services"]) == expected
    # The observability profile's services, and no others, start with that profile alone.
    assert {name for name, service in services.items() if "profiles" in service} == OBSERVABILITY
    assert all(services[name]["profiles"] == ["observability"] for name in OBSERVABILITY)


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_compose_services_are_healthchecked_restarted_and_awaited(rendered: Rendered) -> None:
    services = rendered.compose["services"]
    for name, service in services.items():
        if name == "migrate":
            assert service["restart"] == "no", "the one-shot migrate job must not be restarted"
        else:
            assert service.get("restart") in {"unless-stopped", "always"}, f"{name} has no restart policy"
        if name == "app":
            # The image's HEALTHCHECK applies; compose must not switch it off.
            assert not service.get("healthcheck", {}).get("disable"), "app's healthcheck is disabled"
        elif name == "otel-collector":
            # The collector's image has nothing but the collector to run: no probe is possible.
            assert service["healthcheck"] == {"disable": True}
        elif name != "migrate":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for needed, condition in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if needed == "migrate" else "service_healthy"
            assert condition == {"condition": wanted}, f"{name} waits for {needed} with {condition}"
    needs = set(services["app"]["depends_on"])
    migrate = {"migrate"} if "migrate" in services else set()
    assert needs == backing_services(rendered.answers) | pooler(rendered.answers) | migrate
    if "worker" in services:
        assert set(services["worker"]["depends_on"]) == needs
        assert set(services["beat"]["depends_on"]) == {rendered["broker"]}
    if "migrate" in services:
        assert services["migrate"]["command"] == MIGRATE.get(rendered["framework"], ALEMBIC_UPGRADE)


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_compose_pins_every_image_and_publishes_on_loopback_only(rendered: Rendered) -> None:
    services = rendered.compose["services"]
    # The service's own image is built, and its tag is local; every other one is pinned.
    images = {service["image"] for service in services.values() if "build" not in service}
    assert images <= set(dependencies.IMAGES.values()), "an image not pinned in extensions/dependencies.py"
    assert all(":" in image and not image.endswith(":latest") for image in images), images
    published: dict[int, str] = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            host, host_port, container_port = str(port).split(":")
            assert host == "127.0.0.1", f"{name} publishes {port} beyond this machine"
            assert int(container_port) != METRICS_PORT, f"{name} publishes the metrics port"
            published[int(host_port)] = name
    assert {port: published.get(port) for port in OBSERVABILITY_UIS} == OBSERVABILITY_UIS


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_compose_sends_traces_to_the_profiles_collector_only_when_asked(rendered: Rendered) -> None:
    """Unset (a plain `docker compose up`) the endpoint is empty, and the service exports nothing;
    `make observability` sets it to the collector that the profile starts, which passes them on
    to Jaeger."""
    services = rendered.compose["services"]
    for name in ("app", "worker", "beat", "migrate"):
        if name in services:
            assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    makefile = (rendered.path / "Makefile").read_text()
    recipe = re.search(r"^observability:.*\n\t(.*)$", makefile, re.MULTILINE)
    assert recipe, "no `make observability`"
    endpoint = re.fullmatch(
        r"OTEL_EXPORTER_OTLP_ENDPOINT=(\S+) docker compose --profile observability up .*", recipe[1]
    )
    assert endpoint, recipe[1]
    collector = urlsplit(endpoint[1])
    assert collector.hostname == "otel-collector" and "otel-collector" in OBSERVABILITY
    config = yaml.safe_load((rendered.path / "observability" / "otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == f"0.0.0.0:{collector.port}"
    volumes = services["otel-collector"]["volumes"]
    assert volumes == ["./observability/otel-collector.yaml:/etc/otelcol-contrib/config.yaml:ro"]
    # Every component the pipeline names is configured, and the traces end in Jaeger's OTLP port.
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(config[kind]), kind
    assert [urlsplit(config["exporters"][name]["endpoint"]).netloc for name in pipeline["exporters"]] == ["jaeger:4318"]


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_compose_wires_settings_to_the_compose_services(rendered: Rendered) -> None:
    answers = rendered.answers
    text = (rendered.path / "compose.yaml").read_text()
    env = rendered.compose["services"]["app"]["environment"]
    assert env["ENVIRONMENT"] == "production"
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?"), "SECRET_KEY must come from .env, not the file"
    secret = next(line for line in (rendered.path / ".env").read_text().splitlines() if line.startswith("SECRET_KEY="))
    assert secret.split("=", 1)[1] not in text
    hosts = {name: urlsplit(url).hostname for name, url in env.items() if name.endswith("_URL")}
    expected = {}
    if answers["database"] == "postgresql":
        # The service through PgBouncer, told so; its migrations straight to PostgreSQL.
        expected["DATABASE_URL"] = "pgbouncer"
        assert env["DATABASE_PGBOUNCER"] == "true"
        migrate_env = rendered.compose["services"]["migrate"]["environment"]
        assert urlsplit(migrate_env["DATABASE_URL"]).hostname == "db"
        assert migrate_env["DATABASE_PGBOUNCER"] == "false"
        pgbouncer = rendered.compose["services"]["pgbouncer"]
        assert pgbouncer["environment"]["POOL_MODE"] == "transaction"
        assert pgbouncer["environment"]["DB_HOST"] == "db"
    if answers["cache"] == "redis":
        expected["REDIS_URL"] = "redis"
    if answers["task_queue"] == "celery":
        expected["CELERY_BROKER_URL"] = answers["broker"]
    assert hosts == expected
    volumes = rendered.compose.get("volumes", {})
    if answers["database"] == "sqlite":
        assert "data:/data" in rendered.compose["services"]["app"]["volumes"]
        assert ("ENV", f"DATABASE_URL=sqlite:////data/{PACKAGE}.db") in rendered.dockerfile()
        assert "data" in volumes
    if answers["database"] == "postgresql":
        assert "db-data:/var/lib/postgresql" in rendered.compose["services"]["db"]["volumes"]


# --- CI -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_ci_file_validates_against_its_schema(rendered: Rendered) -> None:
    schema = "vendor.github-workflows" if rendered["ci"] == "github" else "vendor.gitlab-ci"
    result = check_jsonschema(schema, rendered.ci_file)
    assert result.returncode == 0, result.stdout + result.stderr


def ci_jobs(rendered: Rendered) -> dict[str, dict[str, Any]]:
    ci = rendered.ci
    if rendered["ci"] == "github":
        return ci["jobs"]
    reserved = {"workflow", "default", "variables", "stages", "include", "image", "services", "cache"}
    return {name: job for name, job in ci.items() if name not in reserved and not name.startswith(".")}


def ci_commands(job: dict[str, Any]) -> str:
    """Every command a job runs, as one string (GitHub steps or GitLab script)."""
    if "steps" in job:
        return "\n".join(step.get("run", "") for step in job["steps"])
    return "\n".join(job.get("script", []))


def ci_services(rendered: Rendered) -> dict[str, str]:
    """The test job's service containers: compose-style name to image."""
    test = ci_jobs(rendered)["test"]
    if rendered["ci"] == "github":
        found = {name: service["image"] for name, service in test.get("services", {}).items()}
    else:
        found = {service["alias"]: service["name"] for service in test.get("services", [])}
    return {("db" if name == "postgres" else name): image for name, image in found.items()}


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_ci_runs_lint_types_tests_and_hadolint(rendered: Rendered) -> None:
    jobs = ci_jobs(rendered)
    commands = {name: ci_commands(job) for name, job in jobs.items()}
    everything = "\n".join(commands.values())
    for command in ("ruff check", "ruff format --check", "mypy", "pytest", "hadolint Dockerfile", "scripts/audit.py"):
        assert command in everything, f"no CI job runs `{command}`"
    assert "pytest" in commands["test"]
    if rendered["ci"] == "github":
        uses = {step.get("uses", "").split("@")[0] for job in jobs.values() for step in job["steps"]}
        assert "astral-sh/setup-uv" in uses


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_ci_test_job_has_exactly_the_chosen_services_with_their_urls(rendered: Rendered) -> None:
    answers = rendered.answers
    assert set(ci_services(rendered)) == backing_services(answers)
    test = ci_jobs(rendered)["test"]
    env = test.get("env" if rendered["ci"] == "github" else "variables", {})
    assert {name for name in env if name.endswith("_URL")} == url_settings(answers)
    if rendered["ci"] == "github":
        for name, service in test.get("services", {}).items():
            assert "--health-cmd" in service.get("options", ""), f"service {name} has no health check"


@pytest.mark.parametrize(("framework", "combo"), CASES)
def test_ci_services_run_the_same_images_as_compose(rendered: Rendered) -> None:
    compose = rendered.compose["services"]
    assert {name: compose[name]["image"] for name in ci_services(rendered)} == ci_services(rendered)


@pytest.mark.parametrize("ci", ["github", "gitlab"])
def test_ci_has_no_dockerfile_job_without_docker(ci: str, tmp_path: Path) -> None:
    path = render(
        tmp_path / "service",
        {
            "framework": FRAMEWORKS[0],
            "database": "sqlite",
            "cache": "none",
            "task_queue": "none",
            "ci": ci,
            "docker": False,
        },
    )
    rendered = Rendered(path, {"ci": ci})
    assert not (path / "Dockerfile").exists() and not (path / "compose.yaml").exists()
    assert "hadolint" not in rendered.ci_file.read_text()
    schema = "vendor.github-workflows" if ci == "github" else "vendor.gitlab-ci"
    result = check_jsonschema(schema, rendered.ci_file)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        ("vendor.compose-spec", "services:\n  app:\n    image: x\n    restart_policy: always\n"),
        ("vendor.github-workflows", "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    stepz: []\n"),
        ("vendor.gitlab-ci", "test:\n  scrip: [pytest]\n"),
    ],
)
def test_schema_checks_reject_a_broken_file(schema: str, text: str, tmp_path: Path) -> None:
    """The validations above mean something: each schema refuses a misspelt key."""
    path = tmp_path / "file.yaml"
    path.write_text(text)
    assert check_jsonschema(schema, path).returncode != 0


# --- the dependency audit ------------------------------------------------------------------


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service with its uv.lock, and pip-audit in uv's cache: the audit can then run offline."""
    answers = {"framework": FRAMEWORKS[0], "database": "sqlite", "cache": "none", "task_queue": "none"}
    path = render(tmp_path_factory.mktemp("audit") / "service", {**answers, "ci": "github", "docker": False})
    run(["uv", "lock", "--quiet"], path, audit_env())
    run(["uvx", "--from", dependencies.IMAGES["pip-audit"], "pip-audit", "--version"], path, audit_env())
    return path


def audit_env(**env: str) -> dict[str, str]:
    return {**uv_env(), "UV_PYTHON": python_for("3.13"), **env}


def audit(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """What `make audit` and CI run, in ``project``, with ``env`` added to the environment."""
    command = ["uv", "run", "--no-project", "python", "scripts/audit.py"]
    return subprocess.run(
        command, cwd=project, env=audit_env(**env), capture_output=True, text=True, timeout=300, check=False
    )


def test_dependency_audit_fails_when_its_advisory_database_cannot_be_reached(audited: Path) -> None:
    """pip-audit behind a proxy that refuses every connection: a failure saying so, not a pass."""
    dead = f"http://127.0.0.1:{free_port()}"
    proxies = {name: dead for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")}
    result = audit(audited, **proxies, NO_PROXY="", no_proxy="", UV_OFFLINE="1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip-audit could not reach its advisory database" in result.stderr


def test_dependency_audit_fails_when_there_is_nothing_to_audit(audited: Path, tmp_path: Path) -> None:
    project = Path(shutil.copytree(audited, tmp_path / "service"))
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(re.sub(r"(?ms)^dependencies = \[.*?^\]", "dependencies = []", text, count=1))
    run(["uv", "lock", "--quiet", "--offline"], project, audit_env())
    result = audit(project, UV_OFFLINE="1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nothing to audit" in result.stderr


def test_dependency_audit_counts_a_skipped_package_as_a_failure(audited: Path) -> None:
    """pip-audit's own verdict on its JSON report: "No known vulnerabilities found", exit 0,
    whatever it skipped. The script's verdict, on reports as pip-audit writes them."""
    spec = importlib.util.spec_from_file_location("audit_script", audited / "scripts" / "audit.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    clean = {"name": "fastapi", "version": "0.1", "vulns": []}
    skipped = {"name": "starlette", "skip_reason": "Dependency not found on PyPI and could not be audited"}
    vulnerable = {"name": "h11", "version": "0.1", "vulns": [{"id": "GHSA-x", "fix_versions": ["0.16.0"]}]}
    assert script.verdict({"dependencies": [clean]})[0] == 0
    status, message = script.verdict({"dependencies": [clean, skipped]})
    assert status == 2 and "audited 1 of 2" in message and "starlette" in message
    assert script.verdict({"dependencies": []})[0] == 2
    status, message = script.verdict({"dependencies": [clean, vulnerable]})
    assert status == 1 and "GHSA-x" in message and "0.16.0" in message


# --- the production server ------------------------------------------------------------------


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def raw_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, HTTPMessage, str]:
    """One GET on the loopback, redirects not followed: status, headers and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode(errors="replace")
    finally:
        connection.close()


def assert_secure_behind_a_tls_proxy(port: int) -> None:
    """Django's production settings: plain HTTP redirected to HTTPS (probes excepted), and the
    collected static files served."""
    status, headers, _ = raw_get(port, "/api/v1/items")
    assert status == 301 and headers["Location"].startswith("https://"), (status, dict(headers))
    status, _, page = raw_get(port, "/docs", FORWARDED_HTTPS)
    assert status == 200
    assets = [part.split('"')[0] for part in page.split('src="')[1:]]
    assert assets and all(raw_get(port, asset, FORWARDED_HTTPS)[0] == 200 for asset in assets), assets


#: What the TLS-terminating proxy in front adds to a request it received over HTTPS.
FORWARDED_HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


def assert_security_headers(port: int) -> None:
    """The security headers on what the proxy forwards as HTTPS, and HSTS only there."""
    _, plain, _ = raw_get(port, "/api/v1/items")
    assert "Strict-Transport-Security" not in plain, dict(plain)
    status, headers, _ = raw_get(port, "/api/v1/items", FORWARDED_HTTPS)
    assert status == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000"), dict(headers)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def assert_metrics_served_apart(port: int, metrics_port: int) -> None:
    """The container's command serves the metrics on METRICS_PORT, and not on the API's port."""
    for _ in range(10):
        raw_get(port, "/api/v1/items", FORWARDED_HTTPS)
    status, _, _ = raw_get(port, "/metrics", FORWARDED_HTTPS)
    assert status == 404, "the API's port serves /metrics"
    status, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200
    counted = re.search(
        rb'^http_server_request_duration_seconds_count\{http_request_method="GET",'
        rb'http_response_status_code="200",http_route="/api/v1/items"\} (\d+)',
        body,
        re.MULTILINE,
    )
    assert counted and int(counted.group(1)) >= 10, body.decode()


def chunked_post(port: int, path: str, body: bytes) -> tuple[int, HTTPMessage, bytes]:
    """A POST on the loopback whose JSON body is sent in 8 KiB chunks, with no Content-Length."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    chunks = (body[start : start + 8192] for start in range(0, len(body), 8192))
    headers = {"Content-Type": "application/json", **FORWARDED_HTTPS}
    try:
        connection.request("POST", path, body=chunks, headers=headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def assert_chunked_bodies_are_read_up_to_the_limit(port: int, framework: str) -> None:
    """A chunked body (no length until its end) is read, and one past ``MAX_BODY_BYTES`` (64 KiB) is a 413 problem."""
    status, _, body = chunked_post(port, "/api/v1/items", b'{"name": "chunked"}')
    assert status == 201, body
    assert json.loads(body)["name"] == "chunked"
    status, headers, body = chunked_post(port, "/api/v1/items", b'{"name": "' + b"x" * 64 * 1024 + b'"}')
    assert (status, headers["Content-Type"]) == (413, "application/problem+json"), body


@contextmanager
def https_proxy(port: int) -> Iterator[int]:
    """A stand-in for the TLS-terminating proxy: GETs forwarded to the server on ``port`` as a
    proxy forwards what it received over HTTPS (``FORWARDED_HTTPS``). Yields its own port."""

    class Forward(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                headers = {name: value for name, value in self.headers.items() if name.lower() != "connection"}
                connection.request("GET", self.path, headers={**headers, **FORWARDED_HTTPS})
                response = connection.getresponse()
                body = response.read()
            finally:
                connection.close()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in {"connection", "content-length", "date", "server", "transfer-encoding"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=proxy.serve_forever, name="https-proxy", daemon=True)
    thread.start()
    try:
        yield proxy.server_address[1]
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()


#: Each framework's docs pages, and what shows in a page whose viewer drew the document.
DOCS_PAGES = {"/docs": 'class="opblock-tag'}
FASTAPI_DOCS_PAGES = {**DOCS_PAGES, "/redoc": 'menu-content"'}


def load_in_chromium(url: str, profile: Path) -> tuple[str, str]:
    """The page's DOM once its scripts have run, and the browser's console, from headless Chromium."""
    chromium = shutil.which("chromium") or unavailable("chromium is not installed (apt-get install chromium)")
    command = [
        chromium,
        "--headless",
        # As root (a CI container), Chromium starts only without its sandbox.
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        # The console (CSP violations included) on stderr.
        "--enable-logging=stderr",
        "--v=0",
        # Let the page fetch the document and draw it before the DOM is taken.
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, result.stderr


def assert_docs_work_in_a_browser(port: int, framework: str, profile: Path) -> None:
    """Each docs page, loaded through the proxy by Chromium: drawn, with no CSP violation or script error."""
    pages = FASTAPI_DOCS_PAGES if framework == "fastapi" else DOCS_PAGES
    with https_proxy(port) as proxy:
        for path, drawn in pages.items():
            dom, console = load_in_chromium(f"http://127.0.0.1:{proxy}{path}", profile)
            messages = [line for line in console.splitlines() if ":CONSOLE" in line]
            blocked = [line for line in messages if "Content Security Policy" in line or "Uncaught" in line]
            assert not blocked, "\n".join(blocked)
            assert drawn in dom and "/api/v1/items" in dom, f"{path} was not drawn:\n{dom[:3000]}"


def dockerignore_patterns(context: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """The .dockerignore rules as (is an exception, regex on the relative path), in order."""
    rules = []
    for line in (context / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        exception = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern)
        # Docker's syntax (Go's filepath.Match plus **): * and ? stay within one path segment.
        regex = regex.replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = re.sub(r"\\\[(.*?)\\\]", lambda m: "[" + m.group(1).replace("\\", "") + "]", regex)
        rules.append((exception, re.compile(regex)))
    return rules


def build_context(project: Path, destination: Path) -> Path:
    """Copy what `docker build` would send: the project minus what .dockerignore excludes."""
    rules = dockerignore_patterns(project)

    def excluded(relative: str) -> bool:
        # A path is out when it, or a directory above it, matches; the last matching rule wins.
        parts = relative.split("/")
        verdict = False
        for exception, regex in rules:
            if any(regex.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
                verdict = not exception
        return verdict

    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project).as_posix()
        if path.is_file() and not excluded(relative):
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination / relative)
    return destination


class Image:
    """What the Dockerfile builds, made without Docker: its build steps run on this machine.

    The build context is the project minus .dockerignore; the builder stage's ENV, COPY and
    RUN instructions run in order (RUN mounts dropped, /app standing for a directory here);
    the runtime stage contributes its ENV, HEALTHCHECK and CMD. Catches what the static
    checks cannot: a file the image needs but .dockerignore drops, a runtime import of a
    dev-only package, a project that does not install non-editably.
    """

    def __init__(self, project: Path, workdir: Path) -> None:
        self.rendered = Rendered(project, {})
        self.app = workdir / "app"
        self.app.mkdir(parents=True)
        context = build_context(project, workdir / "context")
        stages: list[list[tuple[str, str]]] = []
        for instruction, args in self.rendered.dockerfile():
            if instruction == "FROM":
                stages.append([])
            else:
                stages[-1].append((instruction, args))
        assert len(stages) == 2, "expected a builder and a runtime stage"
        builder, runtime = stages
        env = uv_env()
        env["UV_PYTHON"] = python_for("3.13")
        for instruction, args in builder:
            if instruction == "ENV":
                env.update(self._env(args, env))
            elif instruction == "COPY" and not args.startswith("--from="):
                *sources, _ = shlex.split(args)
                for source in sources:
                    if source in {".", "./"}:
                        shutil.copytree(context, self.app, dirs_exist_ok=True)
                        continue
                    for match in sorted(context.glob(source)):
                        assert match.is_file(), f"COPY of a directory ({source}) is not emulated"
                        shutil.copy2(match, self.app / match.name)
            elif instruction == "RUN":
                # Docker runs the shell form with `/bin/sh -c`: so does this, its mounts dropped.
                run(["sh", "-c", re.sub(r"--mount=\S+\s+", "", args)], self.app, env)
        self.env = uv_env()
        for instruction, args in runtime:
            if instruction == "ENV":
                self.env.update(self._env(args, self.env))
        self.cmd = self.rendered.cmd()
        self.healthcheck = self.rendered.healthcheck()

    def _env(self, args: str, current: dict[str, str]) -> dict[str, str]:
        values = dict(word.split("=", 1) for word in shlex.split(args))
        return {
            key: value.replace("$PATH", current.get("PATH", "")).replace("/app", str(self.app))
            for key, value in values.items()
        }


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, Image]]:
    """Per framework, the production image's stand-in, built on first use."""
    yield {}


@pytest.mark.parametrize(("name", "layer"), web_layer_params("container-server"))
def test_production_server_serves_health_and_stops_cleanly(
    name: str, layer: dict[str, str], tmp_path_factory: pytest.TempPathFactory, images: dict[str, Image]
) -> None:
    """The Dockerfile's CMD, with ENVIRONMENT=production, against real PostgreSQL and Redis."""
    redis = require_service("redis")
    framework = layer["framework"]
    if name not in images:
        workdir = tmp_path_factory.mktemp(f"image-{name}")
        answers = {"database": "postgresql", "cache": "redis", "task_queue": "celery", "broker": "redis", "ci": "none"}
        images[name] = Image(render(workdir / "service", {**BASE, **layer, **answers}), workdir)
    image = images[name]
    assert image.cmd == expected_server(framework)
    assert ".venv" in image.env["PATH"].split(os.pathsep)[0], "the image's PATH does not start with its venv"
    port, metrics_port = free_port(), free_port()

    with Database(database_name(f"container-{name}"), require_service("postgres")) as database:
        env = {
            **image.env,
            "ENVIRONMENT": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": database.url,
            "REDIS_URL": redis,
            "CELERY_BROKER_URL": redis.rsplit("/", 1)[0] + "/1",
            "WEB_CONCURRENCY": "2",
            # Off by default in production: on here, for the browser to load them.
            "API_DOCS": "true",
            "METRICS_PORT": str(metrics_port),
        }
        # What compose's migrate service runs, from the image's working directory.
        run(MIGRATE.get(framework, ALEMBIC_UPGRADE), image.app, env, timeout=120)
        log = image.app.parent / f"server-{port}.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                on_loopback(image.cmd, port), cwd=image.app, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    pytest.fail(f"the server exited {server.returncode} before serving:\n{log.read_text()}")
                try:
                    status, _ = http_get(f"{base}/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"no answer on {base}/healthz within 60 s:\n{log.read_text()}")
                    time.sleep(0.2)
            assert status == 200, log.read_text()
            status, body = http_get(f"{base}/readyz")
            readiness = json.loads(body)
            assert (status, readiness["status"]) == (200, "ok"), f"{body!r}\n{log.read_text()}"
            assert readiness["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}
            # The image's HEALTHCHECK, run as Docker would (only the port moved), passes too.
            probe = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in image.healthcheck]
            healthcheck = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
            assert healthcheck.returncode == 0, healthcheck.stderr
            if framework == "django":
                assert_secure_behind_a_tls_proxy(port)
            assert_security_headers(port)
            assert_metrics_served_apart(port, metrics_port)
            assert_chunked_bodies_are_read_up_to_the_limit(port, framework)
            assert_docs_work_in_a_browser(port, framework, image.app.parent / "chromium")
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
                pytest.fail(f"the server did not stop within 30 s of SIGTERM:\n{log.read_text()}")
        assert code == 0, f"the server exited {code} on SIGTERM:\n{log.read_text()}"
    # The server's own lines (start, workers, shutdown) are in the service's JSON format too.
    lines = log.read_text().splitlines()
    assert lines and all(line.startswith("{") and json.loads(line) for line in lines), log.read_text()
