"""Jinja extension that gives copier.yml and the template access to the option rules.

copier-template-extensions loads this file by path; it loads ``options.py`` beside it the
same way, so the rules need no installation and stay the single source of truth.
"""

from __future__ import annotations

import importlib.util
import secrets
import sys
from pathlib import Path
from typing import Any

from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context


def _load(module: str) -> Any:
    """Load a module beside this file under a private name (no install, no sys.path change)."""
    name = f"servicecraft_{module}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{module}.py"))
        assert spec and spec.loader
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        spec.loader.exec_module(loaded)
    return sys.modules[name]


options = _load("options")
dependencies = _load("dependencies")


@pass_context
def answer_error(context: Context, question: str, *value: Any) -> str:
    """The validator of one question: the rule function's message, or "" when valid.

    With a ``value``, checks that value instead of the answer (copier's per-choice
    validators run before the question is answered, to show which choices are disabled).
    """
    answers = {key: context.get(key) for key in QUESTIONS}
    if value:
        answers[question] = value[0]
    return options.answer_error(question, answers)


QUESTIONS = ("project_name", "project_slug", "package_name", "author_email", *options.CHOICES)


@pass_context
def requirements(context: Context) -> list[str]:
    return list(dependencies.requirements(context, context["stack"]))


@pass_context
def dev_requirements(context: Context) -> list[str]:
    return list(dependencies.dev_requirements(context))


class ServicecraftExtension(Extension):
    """Registers the rule function and the helpers copier.yml and the template use."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.globals.update(
            answer_error=answer_error,
            requirements=requirements,
            dev_requirements=dev_requirements,
            frameworks=options.FRAMEWORKS,
            images=dependencies.IMAGES,
            new_secret=lambda: secrets.token_urlsafe(48),
        )
        environment.filters.update(
            slugify=options.slugify,
            package_from_slug=options.package_from_slug,
            stack=lambda framework: options.FRAMEWORKS[framework].stack,
            io=lambda framework: options.FRAMEWORKS[framework].io,
        )
