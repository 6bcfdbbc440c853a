"""The option model: one source of truth, used consistently by copier.yml and the renders."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, options

COPIER = yaml.safe_load((REPO / "copier.yml").read_text())


def copier_choices(question: str) -> list[object]:
    choices = COPIER[question]["choices"]
    if isinstance(choices, list):
        return choices
    return [c["value"] if isinstance(c, dict) else c for c in choices.values()]


@pytest.mark.parametrize("question", [q for q in options.CHOICES if q not in {"framework", "docker"}])
def test_copier_yml_offers_exactly_the_model_choices(question: str) -> None:
    assert copier_choices(question) == list(options.CHOICES[question])


def test_copier_yml_lists_every_framework_and_the_model_enables_the_implemented_ones() -> None:
    assert copier_choices("framework") == sorted(options.FRAMEWORKS, key=list(options.FRAMEWORKS).index)
    assert set(options.CHOICES["framework"]) == {n for n, f in options.FRAMEWORKS.items() if f.implemented}
    for name, choice in COPIER["framework"]["choices"].items():
        assert f"answer_error('framework', '{choice['value']}')" in choice["validator"], name


def test_every_question_that_can_be_wrong_has_a_validator() -> None:
    for question in ("project_name", "project_slug", "package_name", "author_email", *options.CHOICES):
        if question in {"license", "python_version", "docker", "ci"}:
            continue  # closed choices copier enforces itself
        assert f"answer_error('{question}')" in COPIER[question]["validator"], question


def test_defaults_are_the_documented_ones() -> None:
    assert COPIER["framework"]["default"] == "fastapi"
    assert COPIER["python_version"]["default"] == "3.13"
    assert COPIER["database"]["default"] == "postgresql"
    assert COPIER["cache"]["default"] == "redis"
    assert COPIER["task_queue"]["default"] == "celery"
    assert COPIER["secret_key"]["secret"] is True


def test_full_set_is_the_product_minus_the_invalid() -> None:
    product = []
    for values in itertools.product(*(options.CHOICES[q] for q in options.RUNTIME_OPTIONS)):
        combo = dict(zip(options.RUNTIME_OPTIONS, values, strict=True))
        if combo["task_queue"] != "celery":
            combo.pop("broker")
        if combo["framework"] != "django":
            combo.pop("django_api")
        if options.is_valid(combo) and combo not in product:
            product.append(combo)
    assert options.runtime_combinations() == product
    assert all(not (c["database"] == "none" and c["cache"] == "none") for c in product)
    assert all(c["database"] != "none" for c in product if c["framework"] == "django")
    others = len([f for f in options.CHOICES["framework"] if f != "django"])
    # Django: two databases (none refused), two caches, three task queue choices, two API layers;
    # every row twice, once open and once with tokens.
    per_auth = others * (3 * 2 - 1) * 3 + 2 * 2 * 3 * len(options.CHOICES["django_api"])
    assert len(product) == per_auth * len(options.CHOICES["auth"])


def test_django_api_is_asked_for_django_only() -> None:
    assert copier_choices("django_api") == list(options.CHOICES["django_api"])
    assert COPIER["django_api"]["when"] == "{{ framework == 'django' }}"
    assert COPIER["django_api"]["default"] == "ninja"
    assert {c.get("django_api") for c in options.runtime_combinations(framework="django")} == {"ninja", "drf"}
    assert all("django_api" not in c for c in options.runtime_combinations(framework="flask"))


@pytest.mark.parametrize("question", sorted(options.ASKED_WITH))
def test_questions_asked_after_an_answer_follow_it_in_copier_yml_and_refuse_stray_answers(question: str) -> None:
    earlier, needed = options.ASKED_WITH[question]
    assert COPIER[question]["when"] == f"{{{{ {earlier} == '{needed}' }}}}"
    other = next(choice for choice in options.CHOICES[earlier] if choice != needed)
    value = options.CHOICES[question][-1]
    error = options.answer_error(question, {earlier: other, question: value})
    assert error == (
        f"{question} {value!r} does nothing with {earlier} {other!r}: leave {question} out of the answers, "
        f"or choose {earlier} {needed!r}."
    )
    assert options.answer_error(question, {earlier: needed, question: value}) == ""


@pytest.mark.parametrize("given", [True, False, "yes", "No", " on ", "off", "y", "n", "true", "FALSE", "1", "0", 1, 0])
def test_yes_no_questions_take_the_spellings_copier_reads(given: object) -> None:
    assert options.answer_error("docker", {"docker": given}) == ""


@pytest.mark.parametrize("given", ["maybe", "", "2", "sure", "none", None, 2, "yes please"])
def test_yes_no_questions_refuse_anything_copier_would_read_as_yes_silently(given: object) -> None:
    error = options.answer_error("docker", {"docker": given})
    assert error == f"docker {given!r} is not a yes or no: answer docker=true or docker=false."


def test_django_needs_a_database() -> None:
    error = options.answer_error("database", {"framework": "django", "database": "none"})
    assert "framework 'django' needs a database" in error
    assert "choose database 'postgresql' or 'sqlite'" in error
    assert options.answer_error("database", {"framework": "fastapi", "database": "none"}) == ""
    assert not options.is_valid({"framework": "django", "django_api": "ninja", "database": "none", "cache": "redis"})


def test_invalid_combinations_are_rejected_with_a_fix() -> None:
    error = options.answer_error("cache", {"database": "none", "cache": "none"})
    assert "nowhere to keep its data" in error
    assert "choose cache 'redis'" in error


def test_pairwise_set_covers_every_valid_pair_and_is_small() -> None:
    chosen = options.pairwise_combinations()
    covered = {
        pair for combo in chosen for pair in options._pairs(combo, options.RUNTIME_OPTIONS + options.STATIC_OPTIONS)
    }
    assert covered == options.required_pairs()
    assert len(chosen) < len(options.runtime_combinations())
    assert all(options.is_valid(c) for c in chosen)


def test_covering_renders_hold_every_interacting_combination_and_every_pair() -> None:
    renders = options.covering_renders()
    runtime = [{k: v for k, v in r.items() if k in options.RUNTIME_OPTIONS} for r in renders]
    interacting = options.interacting_combinations()
    # Then, for a pair with a static value the interacting set left out, the combination adding it.
    assert runtime[: len(interacting)] == interacting
    assert len(renders) - len(interacting) <= 2
    assert {values for combo in renders for values in options.interactions(combo)} == options.required_interactions()
    covered = {
        pair for combo in renders for pair in options._pairs(combo, options.RUNTIME_OPTIONS + options.STATIC_OPTIONS)
    }
    assert covered == options.required_pairs()
    assert all(options.is_valid(c) for c in renders)


def test_every_framework_data_cache_and_queue_combination_is_rendered_and_the_broker_by_stack() -> None:
    """What INTERACTIONS asks for, spelled out: the first group is every runtime combination but
    the broker's and auth's; the broker meets each stack with each database and cache, both
    brokers each; each web layer meets each value of auth."""
    renders = options.covering_renders()

    def without(combos: list[dict[str, Any]], *left_out: str) -> set[tuple[tuple[str, Any], ...]]:
        return {
            tuple(sorted((k, v) for k, v in c.items() if k in options.RUNTIME_OPTIONS and k not in left_out))
            for c in combos
        }

    every = options.runtime_combinations()
    assert without(renders, "broker", "auth") == without(every, "broker", "auth")
    layers = {(c["framework"], c.get("django_api"), c["auth"]) for c in every}
    assert {(c["framework"], c.get("django_api"), c["auth"]) for c in renders} == layers
    by_stack = {(options.facts(c)["stack"], c["database"], c["cache"], c["broker"]) for c in renders if "broker" in c}
    celery = [c for c in options.runtime_combinations() if c["task_queue"] == "celery"]
    assert by_stack == {(options.facts(c)["stack"], c["database"], c["cache"], c["broker"]) for c in celery}
    # Fewer renders than the runtime product: a broker is not tried with every framework's every row.
    assert len(renders) < len(options.runtime_combinations())


def test_filters_narrow_the_combinations() -> None:
    flask = options.runtime_combinations(framework="flask")
    assert flask and all(c["framework"] == "flask" for c in flask)
    assert options.runtime_combinations(framework="flask", database="none") == [
        c for c in flask if c["database"] == "none"
    ]


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Orders API", "orders-api"),
        ("  Billing -- Service 2 ", "billing-service-2"),
        ("ÜberCart Élan", "ubercart-elan"),
        # Taken: a dependency's distribution, and a module of the standard library.
        ("PyJWT", "pyjwt-service"),
        ("JSON", "json-service"),
    ],
)
def test_slugs_are_derived_from_names(name: str, slug: str) -> None:
    assert options.slugify(name) == slug
    assert options.answer_error("project_slug", {"project_slug": slug}) == ""
    assert options.answer_error("package_name", {"package_name": options.package_from_slug(slug)}) == ""


def test_rules_module_needs_only_the_standard_library() -> None:
    tree = ast.parse(Path(options.__file__).read_text())
    imports = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imports |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imports <= {
        "__future__",
        "itertools",
        "json",
        "sys",
        "keyword",
        "re",
        "unicodedata",
        "collections",
        "dataclasses",
        "typing",
    }
