"""The test matrix: tests/test_generated.py as `uv run pytest` runs it, timed by phase.

Rendering plus every check of every combination the tests render (or of a ``-k`` selection): the wall
time of the whole run, and where it goes, summed over the xdist workers (see matrix_plugin).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench import harness
from bench.harness import Config


def quick_selection(frameworks: list[str]) -> str:
    """PostgreSQL, Redis and Celery on Redis, per framework (and per API flavour of Django)."""
    return f"({' or '.join(frameworks)}) and postgresql-redis-celery-redis"


def measure(config: Config) -> dict[str, Any]:
    out = config.workdir / "matrix"
    out.mkdir(parents=True, exist_ok=True)
    select = config.matrix_select
    if select is None and config.quick:
        select = quick_selection(config.frameworks)
    elif select is None and config.frameworks != harness.implemented_frameworks():
        select = " or ".join(config.frameworks)
    command = [sys.executable, "-m", "pytest", "tests/test_generated.py", "-p", "bench.matrix_plugin"]
    command += ["-q", "-p", "no:cacheprovider", "-n", str(config.matrix_workers), "--basetemp", str(out / "tmp")]
    if select:
        command += ["-k", select]
    env = {**os.environ, "BENCH_MATRIX_OUT": str(out), "PYTHONPATH": str(harness.REPO)}
    print(f"matrix: {' '.join(command[1:])}", flush=True)
    started = harness.clock()
    result = subprocess.run(command, cwd=harness.REPO, env=env, capture_output=True, text=True, check=False)
    wall = harness.clock() - started
    phases: dict[str, float] = {}
    outcomes: dict[str, int] = {}
    combinations: set[str] = set()
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        for name, value in data["phases"].items():
            phases[name] = phases.get(name, 0.0) + value
        for name, count in data["outcomes"].items():
            outcomes[name] = outcomes.get(name, 0) + count
        combinations.update(data["combinations"])
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print(f"matrix: {summary} in {wall:.0f} s", flush=True)
    return {
        "select": select,
        "workers": config.matrix_workers,
        "exit_code": result.returncode,
        "summary": summary,
        "wall": wall,
        "combinations": len(combinations),
        "phases": phases,
        "outcomes": outcomes,
    }
