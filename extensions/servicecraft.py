"""Jinja extension that gives copier.yml and the template access to the option rules.

copier-template-extensions loads this file by path; the extension loads ``options.py``,
``dependencies.py`` and ``dashboard.py`` beside it the same way, so the rules need no
installation and stay the single source of truth.

``copier update`` renders the service's old template version and then the new one in the same
process. Each Jinja environment therefore gets the modules of the template it renders,
loaded under names that hold their file's path and content: a module loaded by an earlier
render (another version) is never reused, so the new version's option rules, server commands
and dependency pins are the ones rendered (docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import secrets
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context


def _extensions_folder(environment: Environment) -> Path:
    """The ``extensions/`` folder of the template that ``environment`` renders.

    Found through the environment's loader, as copier-template-extensions found this file, so
    the modules are that template's even if this module were reused from an earlier render;
    an environment without a template folder (a plain Jinja one) gets this file's folder.
    """
    for root in getattr(environment.loader, "searchpath", ()):
        folder = Path(root) / "extensions"
        if (folder / "servicecraft.py").is_file():
            return folder
    return Path(__file__).parent


def _load(path: Path) -> ModuleType:
    """The module in ``path``, executed once per resolved path and content.

    Loaded under a private name (no install, no sys.path change) that holds a hash of both, so
    no render gets a module that a render of another version loaded, and a template folder
    edited between two renders gets its edit. The bytes hashed are the bytes executed (no
    bytecode cache read or written). The module is in sys.modules while it executes, as the
    dataclasses in it need.
    """
    path = path.resolve()
    source = path.read_bytes()
    digest = hashlib.sha256(os.fsencode(path) + b"\0" + source).hexdigest()[:16]
    name = f"servicecraft_{path.stem}_{digest}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - the template's own file, as hashed
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


class ServicecraftExtension(Extension):
    """Registers the rule function and the helpers copier.yml and the template use, from the
    ``options.py`` and ``dependencies.py`` of the template this environment renders."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        folder = _extensions_folder(environment)
        options = _load(folder / "options.py")
        dependencies = _load(folder / "dependencies.py")
        dashboard = _load(folder / "dashboard.py")
        questions = (*options.TEXT_QUESTIONS, *options.CHOICES)

        @pass_context
        def answer_error(context: Context, question: str, *value: Any) -> str:
            """The validator of one question: the rule function's message, or "" when valid.

            With a ``value``, checks that value instead of the answer (copier's per-choice
            validators run before the question is answered, to show which choices are disabled).
            """
            answers = {key: context.get(key) for key in questions}
            if value:
                answers[question] = value[0]
            elif question in options.YES_NO_QUESTIONS:
                # Copier has already cast the answer to a bool; the text given with --data
                # says whether it was a yes or no at all.
                given = context.get("_copier_conf", {}).get("data", {})
                answers[question] = given.get(question, answers[question])
            return options.answer_error(question, answers)

        @pass_context
        def fact(context: Context, name: str) -> Any:
            """One of ``options.facts`` for the answers so far: copier.yml's computed answers."""
            return options.facts({key: context.get(key) for key in questions})[name]

        @pass_context
        def grafana_dashboard(context: Context) -> str:
            """The observability profile's Grafana dashboard for these answers (``dashboard.py``)."""
            return dashboard.dashboard(
                context["project_name"], context["database"], context["cache_aside"], context["task_queue"]
            )

        @pass_context
        def requirements(context: Context) -> list[str]:
            return list(dependencies.requirements(context, context["stack"]))

        @pass_context
        def dev_requirements(context: Context) -> list[str]:
            return list(dependencies.dev_requirements(context))

        environment.globals.update(
            answer_error=answer_error,
            fact=fact,
            requirements=requirements,
            dev_requirements=dev_requirements,
            grafana_dashboard=grafana_dashboard,
            load_requirements=dependencies.load_requirements,
            frameworks=options.FRAMEWORKS,
            images=dependencies.IMAGES,
            new_secret=lambda: secrets.token_urlsafe(48),
            import_from=options.import_from,
        )
        environment.filters.update(
            slugify=options.slugify,
            package_from_slug=options.package_from_slug,
            py_str=options.py_str,
            toml_str=options.toml_str,
            docstring=options.docstring_text,
        )
