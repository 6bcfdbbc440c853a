"""Every framework has each of the places docs/architecture.md lists for adding one.

Adding a framework means: its ``Framework`` entry in extensions/options.py, its dependencies in
extensions/dependencies.py, its web-layer folder, its test-client partial, its "What is where"
rows for the generated README, its docs page and its rows in README.md and
docs/options/framework.md. A test per place, so a failure names the place that is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, options

from extensions import dependencies

TEMPLATE = REPO / "template"
COPIER = yaml.safe_load((REPO / "copier.yml").read_text())
FRAMEWORKS = list(options.FRAMEWORKS)


def folder(fact: str, value: str) -> Path:
    """A folder of template/src/ rendered into the package when ``fact == value``."""
    return TEMPLATE / "src" / f"{{% if {fact} == '{value}' %}}{{{{ package_name }}}}{{% endif %}}"


def web_layer_folders(name: str) -> list[Path]:
    """The framework's web layer: one folder, or for Django one per API layer (``api_layer``)."""
    if name == "django":
        return [folder("api_layer", api) for api in options.CHOICES["django_api"]]
    return [folder("framework", name)]


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_framework_has_its_dependencies(name: str) -> None:
    assert dependencies.FRAMEWORK_PACKAGES.get(name), f"add {name}'s packages to FRAMEWORK_PACKAGES"
    assert all(package in dependencies.PINS for package in dependencies.FRAMEWORK_PACKAGES[name])


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_framework_has_its_web_layer_folder(name: str) -> None:
    missing = [str(p.relative_to(REPO)) for p in web_layer_folders(name) if not p.is_dir()]
    assert not missing


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_framework_has_its_test_client_partial(name: str) -> None:
    partial = TEMPLATE / "tests" / "_clients" / f"{name}.py.jinja"
    assert partial.is_file()
    assert "{% macro serve() %}" in partial.read_text()


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_framework_has_its_rows_in_the_generated_readme(name: str) -> None:
    assert (TEMPLATE / "_readme" / "frameworks" / f"{name}.md.jinja").is_file()


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_framework_has_its_docs_page(name: str) -> None:
    page = REPO / "docs" / "frameworks" / f"{name}.md"
    assert page.is_file()
    assert page.read_text().startswith("# ")


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_framework_has_its_row_in_the_readme_framework_table(name: str) -> None:
    label = options.FRAMEWORKS[name].label
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"README.md's framework table needs one row '| {label} | ...'"
    assert f"(docs/frameworks/{name}.md)" in rows[0]


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_framework_has_its_row_in_the_framework_option_page(name: str) -> None:
    lines = (REPO / "docs" / "options" / "framework.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith(f"| `{name}`")]
    assert len(rows) == 1
    assert f"(../frameworks/{name}.md)" in rows[0]


@pytest.mark.parametrize("server", sorted({f.server for f in options.FRAMEWORKS.values()}))
def test_every_server_has_its_command_and_readme_row(server: str) -> None:
    assert server in options.SERVER_COMMANDS
    assert (TEMPLATE / "_readme" / "servers" / f"{server}.md.jinja").is_file()


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_server_modules_are_selected_by_the_server_fact(server: str) -> None:
    assert (folder("server", server) / "server.py.jinja").is_file()


def test_every_computed_answer_is_a_fact_from_options_and_every_fact_is_one() -> None:
    """Recomputed on every render and update (never stored), from options.facts() alone."""
    computed = {
        name: question["default"]
        for name, question in COPIER.items()
        if isinstance(question, dict) and question.get("when") is False and not question.get("secret")
    }
    sample = options.facts({"framework": "fastapi", "database": "postgresql", "cache": "redis", "task_queue": "none"})
    assert computed == {name: f"{{{{ fact('{name}') }}}}" for name in sample}


@pytest.mark.parametrize("combo", options.runtime_combinations(), ids=lambda c: "-".join(map(str, c.values())))
def test_facts_follow_the_answers(combo: dict[str, Any]) -> None:
    facts = options.facts(combo)
    framework = options.FRAMEWORKS[combo["framework"]]
    assert (facts["stack"], facts["server"], facts["toolkit"]) == (framework.stack, framework.server, framework.toolkit)
    assert facts["io"] == ("async" if framework.stack == "async" else "sync")
    assert facts["api_layer"] == combo.get("django_api", "")
    assert facts["cache_aside"] == (combo["cache"] == "redis" and combo["database"] != "none")
    broker = combo.get("broker")
    assert facts["redis_server"] == (combo["cache"] == "redis" or broker == "redis")
    assert facts["rabbitmq_server"] == (broker == "rabbitmq")
    expected = [
        ("db", combo["database"] == "postgresql"),
        ("redis", facts["redis_server"]),
        ("rabbitmq", facts["rabbitmq_server"]),
    ]
    assert facts["backing_services"] == [name for name, used in expected if used]
    urls = {"DATABASE_URL": combo["database"] == "postgresql", "REDIS_URL": combo["cache"] == "redis"}
    urls["CELERY_BROKER_URL"] = combo["task_queue"] == "celery"
    assert facts["service_urls"] == [name for name, used in urls.items() if used]
    for docker in (True, False):
        kubernetes = options.facts({**combo, "docker": docker})["kubernetes"]
        assert kubernetes == (docker and combo["database"] != "sqlite")


def test_no_folder_or_file_name_tests_a_list_of_frameworks() -> None:
    names = [str(p.relative_to(TEMPLATE)) for p in TEMPLATE.rglob("*")]
    assert not [n for n in names if "framework in" in n or "framework not in" in n]
