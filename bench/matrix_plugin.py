"""A pytest plugin that splits tests/test_generated.py's time into phases, for bench/matrix.py.

Loaded with ``-p bench.matrix_plugin`` and BENCH_MATRIX_OUT set to a directory; each xdist
worker (or the single process) writes its own JSON file there at the end. Rendering and
environment setup are timed by wrapping test_generated's ``render`` and ``uv_sync``; the rest
of each test's time counts as a static check or as the generated service's tests, by test name.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

#: Tests that run the generated service's own suite; every other test is a static check.
GENERATED_TESTS = frozenset(
    {"test_own_test_suite_passes_against_the_chosen_services", "test_runs_with_no_external_service_at_all"}
)

_phases = {"environment": 0.0, "rendering": 0.0, "static checks": 0.0, "generated tests": 0.0}
_outcomes: dict[str, int] = {}
_combinations: set[str] = set()
_inside = 0.0  # render and uv_sync time spent inside the test being run


def _timed(phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _inside
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            _phases[phase] += elapsed
            _inside += elapsed

    return wrapper


def pytest_collection_finish(session: pytest.Session) -> None:
    module = sys.modules.get("test_generated")
    if module is not None:
        module.render = _timed("rendering", module.render)  # type: ignore[attr-defined]
        module.uv_sync = _timed("environment", module.uv_sync)  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    global _inside
    _inside = 0.0
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        elapsed = time.perf_counter() - started - _inside
        name = getattr(item, "originalname", item.name)
        _phases["generated tests" if name in GENERATED_TESTS else "static checks"] += elapsed
        if callspec := getattr(item, "callspec", None):
            _combinations.add(callspec.id)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _outcomes[report.outcome] = _outcomes.get(report.outcome, 0) + 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get("BENCH_MATRIX_OUT")
    if not out:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if worker == "main" and session.config.pluginmanager.hasplugin("dsession"):
        return  # the xdist controller ran no test
    data = {"phases": _phases, "outcomes": _outcomes, "combinations": sorted(_combinations)}
    (Path(out) / f"{worker}.json").write_text(json.dumps(data))
