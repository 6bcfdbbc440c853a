"""Time to first request: `copier copy --defaults`, `uv sync` (warm cache), `make run`, first 200.

The development server is what the generated README's `make run` starts (``uv run`` plus the
framework's ``dev_server``), on a free port rather than 8000; no environment variable
points it at a service, so it runs on SQLite and in-process stand-ins, as after a fresh copy.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

from bench import harness, stats
from bench.harness import Config, Server


def dev_command(framework: str, port: int) -> list[str]:
    command = harness.options.FRAMEWORKS[framework].dev_server.format(package=harness.PACKAGE, port=port)
    return [harness.UV, "run", *shlex.split(command)]


def measure(config: Config) -> dict[str, Any]:
    root = config.workdir / "first-request"
    results: dict[str, Any] = {"frameworks": {}}
    for framework in config.frameworks:
        print(f"first-request: {framework}", flush=True)
        try:
            results["frameworks"][framework] = measure_framework(framework, config, root)
        except Exception as error:  # noqa: BLE001 - one framework's failure must not lose the others
            print(f"first-request: {framework} failed: {error}", flush=True)
            results["frameworks"][framework] = {"error": str(error)}
        shutil.rmtree(root, ignore_errors=True)
    return results


def measure_framework(framework: str, config: Config, root: Path) -> dict[str, Any]:
    answers = {"project_name": "Orders API", "framework": framework}
    # Warms uv's cache with this framework's dependencies; not timed.
    harness.uv_sync(harness.render(root / "warm", harness.answers_for(framework)))
    phases: dict[str, list[float]] = {"copy": [], "sync": [], "serve": []}
    totals = []
    for repetition in range(config.repetitions):
        destination = root / f"service-{repetition}"
        started = harness.clock()
        harness.run(harness.copier_cli(destination, answers), harness.REPO, harness.clean_env())
        copied = harness.clock()
        harness.run(
            [harness.UV, "sync", "--quiet", "--python", harness.python_for("3.13")], destination, harness.clean_env()
        )
        synced = harness.clock()
        port = harness.free_port()
        server = Server(
            dev_command(framework, port), destination, harness.clean_env(), root / f"server-{repetition}.log"
        )
        try:
            server.start()
            server.wait_until_serving(f"http://127.0.0.1:{port}/healthz")
            served = harness.clock()
        finally:
            server.stop()
        phases["copy"].append(copied - started)
        phases["sync"].append(synced - copied)
        phases["serve"].append(served - synced)
        totals.append(served - started)
    return {
        "command": " ".join(dev_command(framework, 8000)[1:]),
        "total": stats.summary(totals),
        "phases": {name: stats.summary(values) for name, values in phases.items()},
    }
