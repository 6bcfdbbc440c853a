"""Every free-text answer is refused with a one-line message naming a valid fix, or renders clean files.

Property-based: hypothesis draws names, slugs, package names, descriptions, authors and emails,
printable or not, quoted or not, short or long. Each draw is either refused by the option rules
(the same function copier.yml's validators call) with one line that suggests an answer the
rules accept, or rendered; a rendered service's Python parses and is ruff- and format-clean,
and its pyproject.toml holds exactly the answers given. tests/test_generated.py runs whole
services; the tests at the end run whole services made from awkward answers.
"""

from __future__ import annotations

import ast
import re
import string
import tomllib
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml
from conftest import (
    BIN,
    REPO,
    SHORT_CONTRACT,
    database_name,
    mypy,
    options,
    require_service,
    run,
    snapshot,
    uv_env,
    uv_sync,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.harness import Database

RUFF = str(BIN / "ruff")
SUGGESTION = re.compile(r"e\.g\. ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")

#: Text as people type it (letters, digits, spaces, punctuation, quotes, accents, other
#: scripts), and now and then what they paste by mistake (line breaks, tabs, backslashes).
typed = st.text(
    alphabet=st.one_of(
        st.sampled_from(string.ascii_letters + string.digits + " -_.,:;!?'\"&()/@#%+"),
        st.sampled_from("ÄéøßñÜ東京Москва"),
        st.sampled_from("\\\n\t\x00\u2028"),
    ),
    max_size=90,
)
identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,55}", fullmatch=True)
slugs = st.from_regex(r"[a-z][a-z0-9]{0,20}(-[a-z0-9]{1,12}){0,4}", fullmatch=True)
emails = st.one_of(st.emails(), typed)
framework = st.sampled_from(options.CHOICES["framework"])


def assert_actionable(question: str, message: str) -> None:
    """One line, and where it suggests an answer ("e.g. '...'"), the rules accept that answer."""
    assert "\n" not in message, message
    match = SUGGESTION.search(message)
    assert match, f"no suggestion in {message!r}"
    suggestion = ast.literal_eval(match.group(1))
    if question in {"project_slug", "package_name", "project_name", "description", "author_name"}:
        assert options.answer_error(question, {question: suggestion}) == "", (message, suggestion)


_TEMPLATE: list[Path] = []


def copy(destination: Path, answers: dict[str, Any]) -> Path:
    """Render from a plain copy of the working tree, made once: no git clone per example."""
    if not _TEMPLATE:
        _TEMPLATE.append(snapshot(destination.parent.parent / "template-snapshot"))
    copier.run_copy(str(_TEMPLATE[0]), str(destination), data=answers, defaults=True, unsafe=True, quiet=True)
    return destination


def assert_clean(service: Path, answers: dict[str, Any]) -> None:
    """Python that ruff (which parses for the service's Python) finds clean and formatted; the metadata as given."""
    run([RUFF, "check", "--no-cache", "--quiet", "."], service)
    run([RUFF, "format", "--check", "--no-cache", "--quiet", "."], service)
    project = tomllib.loads((service / "pyproject.toml").read_text())["project"]
    assert project["description"] == answers["description"]
    assert project["authors"] == [{"name": answers["author_name"], "email": answers["author_email"]}]
    assert project["name"] == answers["project_slug"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=typed,
    description=typed,
    author=typed,
    email=emails,
    slug=st.one_of(slugs, typed),
    package=st.one_of(identifiers, typed),
    framework=framework,
)
def test_any_text_answers_are_refused_clearly_or_render_clean_files(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    description: str,
    author: str,
    email: str,
    slug: str,
    package: str,
    framework: str,
) -> None:
    answers = {
        "project_name": name,
        "project_slug": slug,
        "package_name": package,
        "description": description,
        "author_name": author,
        "author_email": email,
        "framework": framework,
        "database": "sqlite",
        # Where the web layer takes tokens, with them: the names reach its auth code too.
        "auth": "oidc",
    }
    errors = {q: options.answer_error(q, answers) for q in options.TEXT_QUESTIONS}
    for question, message in errors.items():
        if message and question != "author_email":
            assert_actionable(question, message)
    if any(errors.values()):
        return
    assert_clean(copy(tmp_path_factory.mktemp("answers") / "service", answers), answers)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=typed)
# A long name in another script, one word: its suggested shortening once never got shorter.
@example(name="Москва" * 30)
def test_a_name_alone_gives_valid_derived_answers_or_a_clear_refusal(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    """With only a name, copier derives slug, package and description: all valid, or refused with a fix."""
    slug = options.slugify(name)
    assert options.SLUG_RE.match(slug) and len(slug) <= options.MAX_NAME
    name_error = options.answer_error("project_name", {"project_name": name})
    if name_error:
        assert_actionable("project_name", name_error)
        return
    derived = {"project_slug": slug, "package_name": options.package_from_slug(slug)}
    errors = [options.answer_error(q, derived) for q in derived]
    for question, message in zip(derived, errors, strict=True):
        if message:
            assert_actionable(question, message)
    if any(errors):
        with pytest.raises(ValueError, match="Validation error for question"):
            copy(tmp_path_factory.mktemp("refused") / "service", {"project_name": name})
        return
    service = copy(tmp_path_factory.mktemp("derived") / "service", {"project_name": name, "database": "sqlite"})
    answers = {**derived, "description": "", "author_name": "Platform Team", "author_email": "platform@example.com"}
    answers["description"] = tomllib.loads((service / "pyproject.toml").read_text())["project"]["description"]
    assert options.answer_error("description", answers) == ""
    assert_clean(service, answers)


@pytest.mark.parametrize(
    ("package", "reason"),
    [
        ("type", "keyword"),
        ("match", "keyword"),
        ("json", "standard library"),
        ("email", "standard library"),
        ("asyncio", "standard library"),
        ("billiard", "'billiard' module"),
        ("manage", "'manage' module"),
        ("data_layer", "'data_layer' module"),
    ],
)
def test_package_names_that_would_shadow_a_module_are_refused_on_every_python(package: str, reason: str) -> None:
    assert reason in options.answer_error("package_name", {"package_name": package})


@pytest.mark.parametrize("slug", ["celery", "kombu", "django-ninja", "pydantic-core"])
def test_slugs_that_name_a_dependency_are_refused(slug: str) -> None:
    message = options.answer_error("project_slug", {"project_slug": slug})
    assert "a package the service depends on" in message
    assert_actionable("project_slug", message)


def test_every_select_option_ruled_out_by_earlier_answers_carries_its_own_validator() -> None:
    """Copier greys out a choice whose validator fails; without one, the prompt offers a broken service."""
    config = yaml.safe_load((REPO / "copier.yml").read_text())
    for question, value, earlier in [
        ("database", "none", {"framework": "django"}),
        ("cache", "none", {"database": "none"}),
    ]:
        assert options.answer_error(question, {**earlier, question: value})
        choice = next(c for c in config[question]["choices"].values() if isinstance(c, dict) and c["value"] == value)
        assert choice["validator"] == f"{{{{ answer_error('{question}', '{value}') }}}}"


#: Answers that are awkward but valid: quotes everywhere, the longest lengths, a package name
#: that is not the slug's.
AWKWARD = {
    "project_name": 'O\'Brien "Quoted" Orders & Co <Ltd> 東京 %s {x}',
    "project_slug": "obrien-orders",
    "package_name": "obrien_core",
    "description": 'Takes "orders" for O\'Brien & Co; 100% of them, {braces} and <tags> included.',
    "author_name": 'Team "Orders" O\'Brien',
    "author_email": "o'brien+orders@example.co.uk",
}


@pytest.mark.parametrize("framework", ["fastapi", "django"])
def test_awkward_answers_give_a_service_that_passes_its_own_checks(tmp_path: Path, framework: str) -> None:
    for question in options.TEXT_QUESTIONS:
        assert options.answer_error(question, AWKWARD) == "", question
    answers = {**AWKWARD, "framework": framework, "database": "postgresql", "cache": "none", "task_queue": "none"}
    answers["auth"] = "oidc"
    service = copy(tmp_path / "service", answers)
    assert_clean(service, answers)
    bin_dir = uv_sync(service, "3.13")
    mypy(service, bin_dir, "3.13")
    env = uv_env()
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    with Database(database_name(f"awkward-{framework}"), require_service("postgres")) as database:
        pytest_cmd = [str(bin_dir / "pytest"), "-q", "-p", "no:cacheprovider"]
        run(pytest_cmd, service, {**env, **SHORT_CONTRACT, "DATABASE_URL": database.url})


#: The longest package name the rules accept.
LONGEST_PACKAGE = ("orders_core_" * 5)[: options.MAX_NAME]
WEB_LAYERS = [
    *((framework, None) for framework in options.CHOICES["framework"] if framework != "django"),
    *(("django", api) for api in options.CHOICES["django_api"]),
]


@pytest.mark.parametrize(("framework", "django_api"), WEB_LAYERS, ids=[f"{f}-{a}" if a else f for f, a in WEB_LAYERS])
def test_the_longest_package_name_renders_clean_files_on_every_web_layer(
    tmp_path: Path, framework: str, django_api: str | None
) -> None:
    """Every import, path and string that names the package still fits ruff's line, wrapped as ruff wraps it."""
    answers = {
        "project_name": "Orders",
        "package_name": LONGEST_PACKAGE,
        "description": "Takes orders.",
        "author_name": "Platform Team",
        "author_email": "team@example.com",
        "framework": framework,
        **({"django_api": django_api} if django_api else {}),
        # The options that bring in most modules.
        "database": "postgresql",
        "cache": "redis",
        "task_queue": "celery",
        "auth": "oidc",
        "kubernetes": True,
    }
    assert options.answer_error("package_name", answers) == ""
    service = copy(tmp_path / "service", answers)
    assert_clean(service, {**answers, "project_slug": "orders"})
