"""Bad answers are refused with a message naming the problem and the fix, and nothing is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, options

COPIER = Path(sys.executable).parent / "copier"

BAD_ANSWERS = [
    ({"project_name": ""}, "project_name is required"),
    ({"project_slug": "Orders_API"}, "is not kebab-case"),
    ({"project_slug": "-orders"}, "is not kebab-case"),
    ({"package_name": "orders-api"}, "is not a valid Python package name"),
    ({"package_name": "2orders"}, "is not a valid Python package name"),
    ({"package_name": "class"}, "is a Python keyword"),
    ({"package_name": "match"}, "is a Python keyword"),
    ({"package_name": "celery"}, "would shadow the 'celery' module"),
    ({"package_name": "fastapi"}, "would shadow the 'fastapi' module"),
    ({"package_name": "tests"}, "would shadow the 'tests' module"),
    ({"author_email": "not-an-email"}, "is not an email address"),
    *[
        ({"framework": name}, "is not available in this version of servicecraft yet")
        for name, framework in options.FRAMEWORKS.items()
        if not framework.implemented
    ],
    ({"framework": "pyramid"}, "'pyramid' is not in"),
    ({"database": "mysql"}, "'mysql' is not in"),
    ({"cache": "memcached"}, "'memcached' is not in"),
    ({"task_queue": "rq"}, "'rq' is not in"),
    ({"task_queue": "celery", "broker": "kafka"}, "'kafka' is not in"),
    ({"license": "GPL"}, "'GPL' is not in"),
    ({"python_version": "3.11"}, "'3.11' is not in"),
    ({"ci": "jenkins"}, "'jenkins' is not in"),
    ({"database": "none", "cache": "none"}, "nowhere to keep its data: choose cache 'redis'"),
    ({"framework": "django", "django_api": "graphene"}, "'graphene' is not in"),
    ({"framework": "django", "database": "none"}, "needs a database: its admin, users and sessions live there"),
    ({"docker": "maybe"}, "docker 'maybe' is not a yes or no: answer docker=true or docker=false"),
    ({"docker": ""}, "docker '' is not a yes or no"),
    ({"task_queue": "none", "broker": "rabbitmq"}, "broker 'rabbitmq' does nothing with task_queue 'none'"),
    ({"framework": "flask", "django_api": "drf"}, "django_api 'drf' does nothing with framework 'flask'"),
]


def copy(tmp_path: Path, answers: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    destination = tmp_path / "service"
    data = [
        arg for key, value in {"project_name": "Orders API", **answers}.items() for arg in ("--data", f"{key}={value}")
    ]
    result = subprocess.run(
        [str(COPIER), "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", *data, str(REPO), str(destination)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, destination


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS, ids=[str(a) for a, _ in BAD_ANSWERS])
def test_bad_answer_is_refused_with_its_message_and_nothing_is_written(
    tmp_path: Path, answers: dict[str, str], message: str
) -> None:
    result, destination = copy(tmp_path, answers)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert message in last_line, result.stderr
    assert not destination.exists()


def test_good_answers_are_accepted(tmp_path: Path) -> None:
    result, destination = copy(tmp_path, {"package_name": "orders_service", "author_email": "a.b@example.org"})
    assert result.returncode == 0, result.stderr
    assert (destination / "src" / "orders_service").is_dir()


def test_broker_is_not_asked_without_a_task_queue(tmp_path: Path) -> None:
    result, destination = copy(tmp_path, {"task_queue": "none"})
    assert result.returncode == 0, result.stderr
    assert "broker" not in (destination / ".copier-answers.yml").read_text()


def test_django_api_is_asked_for_django_only(tmp_path: Path) -> None:
    result, destination = copy(tmp_path, {"framework": "flask"})
    assert result.returncode == 0, result.stderr
    assert "django_api" not in (destination / ".copier-answers.yml").read_text()
    result, destination = copy(tmp_path / "django", {"framework": "django", "django_api": "drf"})
    assert result.returncode == 0, result.stderr
    assert "django_api: drf" in (destination / ".copier-answers.yml").read_text()


def test_all_defaults_give_the_documented_service(copie: Any) -> None:
    result = copie.copy(extra_answers={"project_name": "Orders API"})
    assert result.exit_code == 0, result.exception
    assert result.answers["framework"] == "fastapi"
    assert result.answers["database"] == "postgresql"
    assert result.answers["cache"] == "redis"
    assert result.answers["task_queue"] == "celery"
    assert result.answers["broker"] == "redis"
    assert result.answers["auth"] == "oidc"
    assert "secret_key" not in result.answers
    assert "auth_dev_key" not in result.answers and "identity_client_secret" not in result.answers
    assert (result.project_dir / "src" / "orders_api" / "main.py").is_file()


def test_validators_run_in_process_too(copie: Any) -> None:
    result = copie.copy(extra_answers={"project_name": "Orders API", "package_name": "import"})
    assert result.exit_code != 0
    assert "is a Python keyword" in str(result.exception)
