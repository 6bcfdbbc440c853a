"""The newcomer path: what Copier's closing message and the generated README tell a newcomer to
run, run as written on a fresh render, reaches a working CRUD round trip with nothing else set up.

SQLite and the in-process stand-ins only: no external service, no environment variable naming
one. The server is `make run` itself, on a free port (`PORT=`, which the README documents).
Identity as copier's default has it (``oidc``): the requests carry the token that the README's
`make -s token` prints, as its curl commands do.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, python_for, render, run, uv_env

from bench.harness import free_port

#: One async framework, and the two sync ones (Flask's SQLAlchemy, Django's ORM).
FRAMEWORKS = ["fastapi", "flask", "django"]
#: What a newcomer answers; identity stays at copier's default.
NEWCOMER = {
    "database": "sqlite",
    "cache": "none",
    "task_queue": "none",
    "docker": False,
    "ci": "none",
    "auth": yaml.safe_load((REPO / "copier.yml").read_text())["auth"]["default"],
}
#: Asks for a name and a password: the newcomer types them; nothing later depends on it.
INTERACTIVE = {"make superuser"}


def closing_message_commands() -> list[str]:
    message = yaml.safe_load((REPO / "copier.yml").read_text())["_message_after_copy"]
    return re.findall(r"^\s+(make \w+)", message, re.MULTILINE)


def readme_commands(service: Path) -> list[str]:
    """The commands of the first shell block of the README's "Run it locally", comments dropped."""
    readme = (service / "README.md").read_text()
    section = readme.split("## Run it locally", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def newcomer_env() -> dict[str, str]:
    """This machine's environment without any service URL; uv told which Python to use."""
    env = uv_env()
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "ENVIRONMENT"):
        env.pop(name, None)
    env["UV_PYTHON"] = python_for("3.13")
    return env


def call(method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until_serving(base: str, server: subprocess.Popen[str], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`make run` exited {server.returncode}:\n{log.read_text()}")
        try:
            if call("GET", f"{base}/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"`make run` did not answer /healthz within {timeout:g}s:\n{log.read_text()}")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_written_steps_reach_a_crud_round_trip(framework: str, tmp_path: Path) -> None:
    service = render(tmp_path / "service", {"framework": framework, **NEWCOMER})
    steps = readme_commands(service)
    told = closing_message_commands()
    assert [step for step in steps if step in told] == told, "the README and the closing message disagree"
    assert steps[-1] == "make run"
    env = newcomer_env()
    for step in steps[:-1]:
        if step not in INTERACTIVE:
            run(shlex.split(step), service, env)

    port = free_port()
    log = tmp_path / "make-run.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [*shlex.split(steps[-1]), f"PORT={port}"],
            cwd=service,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server, log)
        assert call("GET", f"{base}/readyz")[0] == 200, log.read_text()
        token = None
        if NEWCOMER["auth"] == "oidc":
            assert 'export AUTH="Authorization: Bearer $(make -s token)"' in (service / "README.md").read_text()
            assert call("GET", f"{base}/api/v1/items")[0] == 401
            token = run(["make", "-s", "token"], service, env).strip()
        status, created = call("POST", f"{base}/api/v1/items", {"name": "Widget"}, token)
        assert status == 201, f"{created}\n{log.read_text()}"
        item = f"{base}/api/v1/items/{created['id']}"
        assert call("GET", item, token=token) == (200, created)
        status, changed = call("PATCH", item, {"name": "Gadget"}, token)
        assert (status, changed["name"]) == (200, "Gadget")
        assert call("GET", f"{base}/api/v1/items", token=token)[1]["items"] == [changed]
        assert call("DELETE", item, token=token)[0] == 204
        assert call("GET", item, token=token)[0] == 404
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
