"""The load test every service ships, run as its README says against the production server.

Per framework (Django with each API layer), on PostgreSQL, Redis and Celery with a Redis
broker: the service is rendered and installed with `uv sync` (which leaves Locust out), its
migrations applied, its production command started with ENVIRONMENT=production on a free
loopback port, and `make loadtest` run headless for a few seconds with a few users. Locust
must exit 0 with every route it used in its CSV statistics, grouped by route and not by id,
no failure, and its reports ignored by git; the server must then stop cleanly on SIGTERM.
The server's metrics, summed over its two workers, must count what Locust counted.

The Celery worker runs beside it as deployed (`python -m <package>.run_worker`, two task
processes): it must run every task the web process sent, as the two sides' metrics count them.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import UV, database_name, python_for, render, require_service, run, uv_env, web_layer_params

from bench.harness import (
    PACKAGE,
    Database,
    Server,
    free_port,
    http_get,
    migrate,
    on_loopback,
    production_command,
    production_env,
)
from extensions import options

ITEMS = "/api/v1/items"
ITEM = "/api/v1/items/{item_id}"
#: What a few seconds of the mix always reach: the creates of on_start, reads by id, lists.
ALWAYS_USED = {("POST", ITEMS), ("GET", ITEM), ("GET", ITEMS)}
ROUTES = (ITEMS, ITEM)
PROCESS_ITEM = f"{PACKAGE}.tasks.process_item"
ANSWERS = {"database": "postgresql", "cache": "redis", "task_queue": "celery", "broker": "redis", "ci": "none"}
CASES = web_layer_params("load")
#: Deletes the keys matching each pattern (argument pairs: Redis URL, pattern), with the service's redis client.
PURGE = """import sys, redis
for url, pattern in zip(sys.argv[1::2], sys.argv[2::2]):
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=pattern):
        client.delete(key)
"""


def worker_runs(worker: Server, url: str, *, until: float, timeout: float = 60) -> dict[str, float]:
    """The worker's runs of the item processing by outcome, once it has run ``until`` of them
    (or ``timeout`` has passed): its metrics port sums its task processes' counts."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            metrics = http_get(url)[1].decode()
            runs = {
                state: sample(metrics, "celery_tasks_total", state=state, task=PROCESS_ITEM)
                for state in ("succeeded", "failed", "retried")
            }
            if sum(runs.values()) >= until or time.monotonic() > deadline:
                return runs
        assert worker.process is not None
        assert worker.process.poll() is None, f"the worker exited:\n{worker.tail()}"
        if time.monotonic() > deadline:
            pytest.fail(f"the worker's metrics port did not answer:\n{worker.tail()}")
        time.sleep(0.2)


def stop_as_docker_does(server: Server) -> int | None:
    """SIGTERM to the main process alone, as `docker stop` sends it; its exit code (None: not started).

    Whatever is left of the process group after 30 s is killed.
    """
    if server.process is None:
        return None
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.stop()
        return server.process.returncode


COUNT = re.compile(
    r'^http_server_request_duration_seconds_count\{http_request_method="(\w+)",'
    r'http_response_status_code="\d+",http_route="([^"]*)"\} ([\d.]+)$',
    re.MULTILINE,
)


def requests_by_route(metrics: str) -> dict[tuple[str, str], int]:
    """The server's count of requests per method and route template, all statuses together."""
    served: dict[tuple[str, str], int] = {}
    for method, route, count in COUNT.findall(metrics):
        served[method, route] = served.get((method, route), 0) + int(float(count))
    return served


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one series in a scrape (0 when it is not there)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    series = f"{name}{{{wanted}}}" if labels else name
    for line in metrics.splitlines():
        if line.startswith(f"{series} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def settled_metrics(url: str, patience: float = 10) -> tuple[int, bytes]:
    """The metrics once no request is in flight and two scrapes agree: a server records a request
    after its answer has gone, and Locust may have counted it already."""
    deadline = time.monotonic() + patience
    status, previous = http_get(url)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        status, metrics = http_get(url)
        in_flight = re.findall(rb"^http_server_active_requests\{[^}]*\} ([\d.]+)$", metrics, re.MULTILINE)
        if metrics == previous and not any(float(value) for value in in_flight):
            break
        previous = metrics
    return status, previous


def stats_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize(("name", "answers"), CASES)
def test_make_loadtest_runs_the_mix_against_the_production_server_without_failure(
    name: str, answers: dict[str, Any], tmp_path: Path
) -> None:
    redis = require_service("redis")
    broker = redis.rsplit("/", 1)[0] + "/1"
    service = render(tmp_path / "service", {**ANSWERS, **answers, "docker": False})
    run([UV, "sync", "--quiet", "--python", python_for("3.13")], service, uv_env())
    assert not (service / ".venv" / "bin" / "locust").exists(), "`uv sync` installed the load group"

    namespace = f"loadtest-{secrets.token_hex(4)}"
    port, metrics_port, worker_metrics_port = free_port(), free_port(), free_port()
    with Database(database_name(f"load-{name}"), require_service("postgres")) as database:
        env = production_env(
            DATABASE_URL=database.url,
            REDIS_URL=redis,
            CELERY_BROKER_URL=broker,
            # Keys and a queue of this run's own, removed below.
            CACHE_NAMESPACE=namespace,
            CELERY_QUEUE=namespace,
            WEB_CONCURRENCY="2",
            METRICS_PORT=str(metrics_port),
        )
        migrate(service, env)
        command = on_loopback(production_command(answers["framework"]), port)
        server = Server(command, service, env, tmp_path / "server.log")
        # The worker's processes count into a directory of the test's, to see which of them ran tasks.
        counted_in = tmp_path / "worker-metrics"
        worker_env = {**env, "METRICS_PORT": str(worker_metrics_port), "PROMETHEUS_MULTIPROC_DIR": str(counted_in)}
        worker_command = ["python", "-m", f"{PACKAGE}.run_worker", "--loglevel", "INFO", "--concurrency", "2"]
        worker = Server(worker_command, service, worker_env, tmp_path / "worker.log")
        try:
            worker.start()
            server.start().wait_until_serving(f"http://127.0.0.1:{port}/readyz")
            # Locust's final statistics as JSON: its CSV files are rewritten once a second while it
            # runs and not at the end, so they can miss the last second's requests.
            final = tmp_path / "final"
            variables = [
                f"HOST=http://127.0.0.1:{port}",
                "USERS=8",
                "SPAWN_RATE=8",
                "DURATION=5s",
                f"LOCUST_ARGS=--json-file {final}",
            ]
            locust = subprocess.run(
                ["make", "loadtest", *variables],
                check=False,
                cwd=service,
                env=uv_env(),
                capture_output=True,
                text=True,
                timeout=180,
            )
            status, metrics = settled_metrics(f"http://127.0.0.1:{metrics_port}/metrics")
            sent = sample(metrics.decode(), "celery_tasks_sent_total", task=PROCESS_ITEM)
            ran = worker_runs(worker, f"http://127.0.0.1:{worker_metrics_port}/metrics", until=sent)
        finally:
            worker_stopped = stop_as_docker_does(worker)
            stopped = stop_as_docker_does(server)
            purge = [redis, f"{namespace}*", broker, f"*{namespace}*"]
            run([str(service / ".venv" / "bin" / "python"), "-c", PURGE, *purge], service)
    assert stopped == 0, f"the server exited {stopped} on SIGTERM:\n{server.tail()}"
    output = f"{locust.stdout}\n{locust.stderr}\nserver:\n{server.tail()}"
    assert locust.returncode == 0, output

    report = service / "loadtest" / "report"
    rows = stats_rows(report / "locust_stats.csv")
    counts = {(entry["method"], entry["name"]): entry for entry in json.loads(final.with_suffix(".json").read_text())}
    # Grouped by route: a row per method and route template, none per item id. The CSV file may
    # lack a route first used in the last second.
    routes = {(method, path) for method in ("GET", "POST", "PATCH", "DELETE") for path in ROUTES}
    assert ALWAYS_USED <= set(counts) <= routes, output
    assert {(row["Type"], row["Name"]) for row in rows if row["Name"] != "Aggregated"} <= set(counts)
    assert (report / "locust.html").stat().st_size > 0
    assert sum(entry["num_requests"] for entry in counts.values()) > 0, output
    assert sum(entry["num_failures"] for entry in counts.values()) == 0, (report / "locust_failures.csv").read_text()

    # Both workers' requests, summed: at least Locust's count of each route (one worker's alone
    # would be about half), and at most the requests in flight more (Locust stops its 8 users
    # without waiting for their answers, and counts none of those).
    assert status == 200
    served = requests_by_route(metrics.decode())
    in_flight = sum(served.values()) - sum(entry["num_requests"] for entry in counts.values())
    assert 0 <= in_flight <= 8, (served, counts)
    for key, entry in counts.items():
        assert entry["num_requests"] <= served.get(key, 0), (key, entry["num_requests"], served)

    # The pools of both workers, summed; the reads through the cache.
    scraped = metrics.decode()
    per_process = 10 if options.FRAMEWORKS[answers["framework"]].stack == "django" else 20
    assert sample(scraped, "db_client_connection_max", pool_name="primary") == 2 * per_process
    assert sample(scraped, "db_client_connection_count", pool_name="primary", state="idle") >= 1
    # One lookup per read by id, a hit or a miss. Not necessarily a hit: in a run this short, on a
    # slow machine, every read can fall in its item's invalidation grace (2 s after its creation,
    # and again after the worker processed it), when the cache is not filled (seen once, Sanic).
    lookups = {result: sample(scraped, "cache_lookups_total", result=result) for result in ("hit", "miss", "error")}
    assert lookups["hit"] + lookups["miss"] == served[("GET", ITEM)] > 0, (lookups, served)
    assert lookups["error"] == 0

    # Every task the web process sent, run by the worker's two task processes, which both counted
    # (the main process, which imported the tasks, has files of its own).
    assert sent > 0
    assert ran == {"succeeded": sent, "failed": 0, "retried": 0}, worker.tail()
    assert worker.process is not None
    counting = {int(path.stem.rpartition("_")[2]) for path in counted_in.glob("counter_*.db")}
    assert len(counting - {worker.process.pid}) == 2, worker.tail()
    assert worker_stopped == 0, f"the worker exited {worker_stopped} on SIGTERM:\n{worker.tail()}"

    run(["git", "init", "--quiet"], service)
    untracked = run(["git", "status", "--porcelain", "--untracked-files=all"], service)
    assert "loadtest/report" not in untracked and "loadtest/locustfile.py" in untracked
