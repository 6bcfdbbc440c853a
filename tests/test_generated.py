"""Every combination of the options that act together rendered, checked statically, and tested for real.

Every combination of the framework, database, cache and task queue is rendered, and the broker
meets each stack's Celery code (async, sync, Django) with every database and cache
(``options.INTERACTIONS``); the rest ride along so that every pair of values of all the options
appears at least once (``options.covering_renders``). Each combination's tests form one xdist
group, so one worker renders it once and runs all its checks.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    SHORT_CONTRACT,
    combo_id,
    database_name,
    mypy,
    options,
    render,
    require_service,
    run,
    service_env,
    unavailable,
    uv_env,
    uv_sync,
)

from bench.harness import Database

RENDERS = options.covering_renders()
PARAMS = [pytest.param(c, id=combo_id(c), marks=pytest.mark.xdist_group(combo_id(c))) for c in RENDERS]


def api_of(combo: dict[str, Any]) -> tuple[str, str, str]:
    """What the API's contract depends on: the web layer and the database (bounds, store)."""
    return combo["framework"], combo.get("django_api", ""), combo["database"]


#: Each service's tests/test_contract.py explores its API with schemathesis. The API changes with
#: the web layer and the database only, so one combination of each pair gets the full run
#: (CONTRACT_EXAMPLES=50, the generated default) and the others a short one, which still sends
#: every operation its boundary values and runs the stateful test.
CONTRACT_FULL = {api_of(c): combo_id(c) for c in reversed(RENDERS)}


def contract_examples(combo: dict[str, Any]) -> str:
    return "50" if CONTRACT_FULL[api_of(combo)] == combo_id(combo) else SHORT_CONTRACT["CONTRACT_EXAMPLES"]


#: Jinja delimiters; ``${{`` is GitHub Actions' own syntax and allowed.
RESIDUE = re.compile(r"(?<!\$)\{\{|\{%|%\}|\{#|#\}")
TEXT_SUFFIXES = {".py", ".toml", ".yml", ".yaml", ".md", ".ini", ".cfg", ".txt", ".mako", ".example", ""}


class Project:
    """One rendered combination, its environment made on first use."""

    def __init__(self, path: Path, combo: dict[str, Any]) -> None:
        self.path = path
        self.combo = combo
        self._bin: Path | None = None

    @property
    def bin(self) -> Path:
        if self._bin is None:
            self._bin = uv_sync(self.path, self.combo["python_version"])
        return self._bin

    def files(self) -> list[Path]:
        skip = {".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
        return sorted(p for p in self.path.rglob("*") if p.is_file() and not skip.intersection(p.parts))

    def text_files(self) -> dict[Path, str]:
        return {
            p: p.read_text() for p in self.files() if p.suffix in TEXT_SUFFIXES or p.name in {"Makefile", "Dockerfile"}
        }


_PROJECTS: dict[str, Project] = {}


@pytest.fixture
def project(combo: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Project:
    key = combo_id(combo)
    if key not in _PROJECTS:
        path = render(tmp_path_factory.mktemp(key) / "service", combo)
        _PROJECTS[key] = Project(path, combo)
    return _PROJECTS[key]


@pytest.mark.parametrize("combo", PARAMS)
def test_no_jinja_residue(project: Project) -> None:
    leftovers = {
        str(p.relative_to(project.path)): m.group(0)
        for p, text in project.text_files().items()
        if (m := RESIDUE.search(text))
    }
    assert not leftovers
    assert not [p for p in project.files() if p.suffix == ".jinja" or "{" in str(p)]


@pytest.mark.parametrize("combo", PARAMS)
def test_no_blank_line_debris(project: Project) -> None:
    debris = [
        str(p.relative_to(project.path))
        for p, text in project.text_files().items()
        if "\n\n\n\n" in text
        or (p.suffix not in {".py", ".mako"} and "\n\n\n" in text)
        or text.endswith("\n\n")
        or text.startswith("\n")
    ]
    assert not debris


@pytest.mark.parametrize("combo", PARAMS)
def test_no_trace_of_other_frameworks(project: Project) -> None:
    chosen = project.combo["framework"]
    # FastAPI is built on Starlette; its imports of Starlette are its own.
    allowed = {"fastapi": {"starlette"}}.get(chosen, set())
    # Quart's tests serve the app through Starlette's TestClient: a sync httpx2 client that runs
    # the ASGI lifespan, so Quart's serving hooks run (Quart's own client is async and skips
    # them). Starlette is a dev dependency there, so it may be named in tests/ and pyproject.toml only.
    in_tests = allowed | {"quart": {"starlette"}}.get(chosen, set())

    def pattern(exempt: set[str]) -> re.Pattern[str]:
        others = [name for name in options.FRAMEWORKS if name != chosen and name not in exempt]
        return re.compile(r"\b(" + "|".join(others) + r")\b", re.IGNORECASE)

    anywhere, test_side = pattern(allowed), pattern(in_tests)
    traces: dict[str, str] = {}
    for path, text in project.text_files().items():
        relative = str(path.relative_to(project.path))
        dev_only = relative.startswith("tests/") or relative == "pyproject.toml"
        if m := (test_side if dev_only else anywhere).search(text):
            traces[relative] = m.group(0)
    assert not traces


@pytest.mark.parametrize("combo", PARAMS)
def test_only_chosen_options_leave_files(project: Project) -> None:
    names = {str(p.relative_to(project.path)) for p in project.files()}
    combo = project.combo
    django = combo["framework"] == "django"
    # Django brings its own ORM and migrations (manage.py migrate), not SQLAlchemy's and Alembic's.
    assert ("alembic.ini" in names) == (combo["database"] != "none" and not django)
    assert ("src/orders_api/migrations/0001_initial.py" in names) == django
    assert ("manage.py" in names) == django
    assert ("src/orders_api/settings/production.py" in names) == django
    assert ("src/orders_api/db.py" in names) == (combo["database"] != "none" and not django)
    assert ("src/orders_api/api.py" in names) == (combo.get("django_api") == "ninja")
    assert ("src/orders_api/serializers.py" in names) == (combo.get("django_api") == "drf")
    for celery_module in ("worker.py", "run_worker.py", "task_metrics.py"):
        assert (f"src/orders_api/{celery_module}" in names) == (combo["task_queue"] == "celery")
    assert ("src/orders_api/pool_metrics.py" in names) == (combo["database"] != "none")
    assert ("src/orders_api/cache.py" in names) == (combo["cache"] == "redis" and combo["database"] != "none")
    assert ("Dockerfile" in names) == combo["docker"]
    assert ("observability/grafana/dashboards/service.json" in names) == combo["docker"]
    # Kubernetes manifests go with the image, except for SQLite, whose file one pod owns.
    assert ("k8s/base/kustomization.yaml" in names) == (combo["docker"] and combo["database"] != "sqlite")
    assert (".github/workflows/ci.yml" in names) == (combo["ci"] == "github")
    assert (".gitlab-ci.yml" in names) == (combo["ci"] == "gitlab")
    assert not [n for n in names if "_clients" in n]


@pytest.mark.parametrize("combo", PARAMS)
def test_config_files_parse_and_answers_hold_no_secret(project: Project) -> None:
    for path in project.files():
        if path.suffix == ".toml":
            tomllib.loads(path.read_text())
        elif path.suffix in {".yml", ".yaml"}:
            list(yaml.safe_load_all(path.read_text()))
        elif path.suffix == ".json":
            json.loads(path.read_text())
    answers = yaml.safe_load((project.path / ".copier-answers.yml").read_text())
    assert "secret_key" not in answers
    assert answers["framework"] == project.combo["framework"]
    env = (project.path / ".env").read_text()
    secret = re.search(r"^SECRET_KEY=(.+)$", env, re.MULTILINE)
    assert secret and len(secret.group(1)) >= 32
    pyproject = tomllib.loads((project.path / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={project.combo['python_version']}"


@pytest.mark.parametrize("combo", PARAMS)
def test_ruff_check_and_format_are_clean(project: Project) -> None:
    run([str(project.bin / "ruff"), "check", "--no-cache", "."], project.path)
    run([str(project.bin / "ruff"), "format", "--check", "--no-cache", "."], project.path)


@pytest.mark.parametrize("combo", PARAMS)
def test_mypy_strict_is_clean(project: Project) -> None:
    mypy(project.path, project.bin, project.combo["python_version"])


def psql(url: str, sql: str) -> str:
    """One query's result, unaligned, through psql."""
    psql_bin = shutil.which("psql")
    if not psql_bin:
        unavailable("psql is needed: `apt-get install postgresql-client`")
    return run([psql_bin, url, "-v", "ON_ERROR_STOP=1", "-tAc", sql], Path.cwd()).strip()


@pytest.mark.parametrize("combo", PARAMS)
def test_own_test_suite_passes_against_the_chosen_services(project: Project) -> None:
    """The service's tests pass, and on PostgreSQL leave the database DATABASE_URL names as they found it.

    The team's table survives, no migration ran there, and the database the run made is gone.
    """
    combo = project.combo
    pytest_cmd = [str(project.bin / "pytest"), "-q", "-p", "no:cacheprovider"]
    if combo["database"] == "postgresql":
        with Database(database_name(combo_id(combo)), require_service("postgres")) as database:
            psql(database.url, "CREATE TABLE team_data (id integer); INSERT INTO team_data VALUES (1)")
            env = {**service_env(combo, database), "CONTRACT_EXAMPLES": contract_examples(combo)}
            run(pytest_cmd, project.path, env)
            left = psql(
                database.url,
                "SELECT (SELECT count(*) FROM team_data), to_regclass('alembic_version') IS NULL,"
                f" (SELECT count(*) FROM pg_database WHERE datname LIKE 'test\\_{database.name}\\_%')",
            )
            assert left == "1|t|0", "the tests touched the team's database, or left theirs behind"
    else:
        run(pytest_cmd, project.path, {**service_env(combo, None), "CONTRACT_EXAMPLES": contract_examples(combo)})


#: The top-level modules and the distributions of the running environment, as JSON.
INSTALLED = (
    "import importlib.metadata as m, json; d = m.packages_distributions(); "
    "print(json.dumps([sorted(d), sorted({name for names in d.values() for name in names})]))"
)


@pytest.mark.parametrize("combo", PARAMS)
def test_no_name_the_service_installs_is_accepted_for_its_package_or_slug(project: Project) -> None:
    """A package of such a name would shadow a module; a slug of such a name makes uv resolve the service into itself.

    The rules keep the list (options.SERVICE_MODULES and SERVICE_DISTRIBUTIONS); a release of a
    dependency that brings a new one in fails here, naming it.
    """
    modules, distributions = json.loads(run([str(project.bin / "python"), "-c", INSTALLED], project.path))
    packages = [m for m in modules if m.isidentifier() and not m.startswith("_") and m != "orders_api"]
    assert not [m for m in packages if not options.answer_error("package_name", {"package_name": m})]
    slugs = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions} - {"orders-api"}
    assert not [d for d in sorted(slugs) if not options.answer_error("project_slug", {"project_slug": d})]


DJANGO = [
    pytest.param(c, id=combo_id(c), marks=pytest.mark.xdist_group(combo_id(c)))
    for c in RENDERS
    if c["framework"] == "django"
]


@pytest.mark.parametrize("combo", DJANGO)
def test_django_deploy_checks_and_migrations_are_clean(project: Project) -> None:
    """``check --deploy`` with the production settings, and no model change without its migration."""
    env = uv_env()
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    production = {**env, "ENVIRONMENT": "production", "SECRET_KEY": secrets.token_urlsafe(48)}
    if project.combo["database"] == "postgresql":
        production["DATABASE_URL"] = "postgresql://db.invalid/app"
    if project.combo["auth"] == "oidc":
        # A provider, as production needs one; .env's development key is refused there.
        production |= {"OIDC_ISSUER": "https://id.example.com/realms/platform", "AUTH_DEV_KEY": ""}
    python = str(project.bin / "python")
    run([python, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], project.path, production)
    run(
        [python, "manage.py", "makemigrations", "--check", "--dry-run"],
        project.path,
        {**env, "DATABASE_URL": "sqlite://:memory:"},
    )


FULL = [
    pytest.param(c, id=combo_id(c), marks=pytest.mark.xdist_group(combo_id(c)))
    for c in RENDERS
    if c["database"] == "postgresql" and c["cache"] == "redis" and c["task_queue"] == "celery"
]


@pytest.mark.parametrize("combo", FULL)
def test_runs_with_no_external_service_at_all(project: Project) -> None:
    """With no URL set: SQLite, in-memory cache and eager tasks, even where production uses servers."""
    env = uv_env()
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    # The contract's full run is on SQLite's own combination (CONTRACT_FULL); a short one here.
    env.update(SHORT_CONTRACT)
    run([str(project.bin / "pytest"), "-q", "-p", "no:cacheprovider"], project.path, env)
