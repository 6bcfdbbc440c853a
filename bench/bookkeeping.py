"""Bookkeeping: what the request metrics cost in-process, per request, without a server.

One service (the framework's default combination) is rendered and run in its own environment.
Its ``metrics.request_started`` and ``request_finished`` (the gauge up and down, the histogram's
observation) are timed as shipped, beside the same updates through ``labels()`` on every
request, the way prometheus-client's documentation writes them, with in-memory values and in
multiprocess mode (values in memory-mapped files, as production runs). The two are timed in turn
within each repetition, so their ratio is taken in one run.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from bench import harness, stats
from bench.harness import Config

FRAMEWORK = "starlette"
CALLS = 100_000

#: Run by the service's interpreter; prints the µs per request of each variant, in turn.
SCRIPT = """
import json, sys, time, timeit
from {package} import metrics

ROUTE = "/api/v1/items/{{item_id}}"

def shipped():
    metrics.request_started("GET", "/api/v1/items/1")
    metrics.request_finished("GET", ROUTE, 200, time.perf_counter())

def labelled():
    label = metrics.method_label("GET")
    metrics.ACTIVE_REQUESTS.labels(label).inc()
    metrics.ACTIVE_REQUESTS.labels(label).dec()
    metrics.REQUEST_DURATION.labels(label, metrics.route_template(ROUTE), str(200)).observe(
        time.perf_counter() - time.perf_counter()
    )

calls, repetitions = int(sys.argv[1]), int(sys.argv[2])
shipped(), labelled()
times = {{"shipped": [], "labelled": []}}
for _ in range(repetitions):
    for name, function in (("shipped", shipped), ("labelled", labelled)):
        times[name].append(timeit.timeit(function, number=calls) / calls * 1e6)
print(json.dumps(times))
"""


def measure(config: Config) -> dict[str, Any]:
    print(f"bookkeeping: {FRAMEWORK}", flush=True)
    project = harness.render(config.workdir / "bookkeeping", harness.answers_for(FRAMEWORK))
    bin_dir = harness.uv_sync(project)
    calls = CALLS // 10 if config.quick else CALLS
    repetitions = max(config.repetitions, 1)
    modes: dict[str, Any] = {}
    for mode in ("memory", "multiprocess"):
        env = harness.clean_env()
        with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            script = SCRIPT.format(package=harness.PACKAGE)
            output = harness.run([str(bin_dir / "python"), "-c", script, str(calls), str(repetitions)], project, env)
        times = json.loads(output)
        modes[mode] = {
            "shipped": stats.summary(times["shipped"]),
            "labelled": stats.summary(times["labelled"]),
            "ratio": stats.paired_ratio(times["shipped"], times["labelled"]),
        }
    return {"framework": FRAMEWORK, "calls": calls, "modes": modes}
