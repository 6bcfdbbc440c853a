"""Rendering: one combination per framework, in-process and through `copier copy`; the whole set."""

from __future__ import annotations

import shutil
import warnings
from typing import Any

from bench import harness, stats
from bench.harness import Config

#: The combination rendered per framework: the defaults' services, explicitly.
ANSWERS = {"database": "postgresql", "cache": "redis", "task_queue": "celery", "broker": "redis"}


def measure(config: Config) -> dict[str, Any]:
    root = config.workdir / "render"
    warnings.filterwarnings("ignore", message="Dirty template changes")
    results: dict[str, Any] = {"frameworks": {}}
    for framework in config.frameworks:
        print(f"render: {framework}", flush=True)
        answers = harness.answers_for(framework, **ANSWERS)
        harness.render(root / "warm", answers)  # imports and the template's first read, untimed
        in_process, cli = [], []
        for repetition in range(config.repetitions):
            started = harness.clock()
            harness.render(root / f"in-process-{repetition}", answers)
            in_process.append(harness.clock() - started)
            destination = root / f"cli-{repetition}"
            shutil.rmtree(destination, ignore_errors=True)
            started = harness.clock()
            harness.run(harness.copier_cli(destination, answers), harness.REPO, harness.clean_env())
            cli.append(harness.clock() - started)
        results["frameworks"][framework] = {"in_process": stats.summary(in_process), "cli": stats.summary(cli)}
        shutil.rmtree(root, ignore_errors=True)

    combinations = harness.options.covering_renders()
    if config.frameworks != harness.implemented_frameworks():
        combinations = [c for c in combinations if c["framework"] in config.frameworks]
    print(f"render: the whole set ({len(combinations)} combinations)", flush=True)
    each = []
    started = harness.clock()
    for i, combination in enumerate(combinations):
        before = harness.clock()
        harness.render(root / f"set-{i}", {**harness.BASE_ANSWERS, **combination})
        each.append(harness.clock() - before)
    total = harness.clock() - started
    shutil.rmtree(root, ignore_errors=True)
    results["all"] = {"renders": len(combinations), "seconds": total, "each": stats.summary(each)}
    return results
