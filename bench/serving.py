"""Serving: each framework's production command under load, against the bare framework.

Per framework, up to five servers run side by side, all pinned to the server CPU with the
same worker count: the bare hello-world (bench/hello) under the service's own server command
and config file; the service rendered with ``cache=redis`` (cached reads, ``/healthz``, and
``/healthz`` again with ``ACCESS_LOG=false``, and cached reads again with the per-client rate
limit counting in Redis, and cached reads again without the security headers, and without the
request metrics, their hooks made no-ops by ``bench/without``, and cached reads again traced:
OpenTelemetry on, its spans sent by OTLP to a local receiver the harness runs); where the web
layer takes ``auth=oidc``, the service rendered with it, its cached reads carrying a bearer
token of an identity provider the harness runs; and the service
rendered with ``cache=none``, whose item read goes to PostgreSQL every time, with its pool and
with ``DB_POOL_DISABLED=true``.
wrk runs on the other CPU. Repetitions go round the scenarios in turn, so a change in the
machine's load touches them all alike, and ratios are taken between neighbouring measurements.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import harness, stats, wrk
from bench.harness import Config, Database, Server

ITEM = "/api/v1/items/{item_id}"
WITHOUT = Path(__file__).resolve().parent / "without"


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    server: str
    path: str


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("hello", "bare hello-world", "hello", "/"),
    Scenario("healthz", "/healthz", "cached", "/healthz"),
    Scenario("healthz_quiet", "/healthz, ACCESS_LOG=false", "quiet", "/healthz"),
    Scenario("cached", "item read, cache hit (Redis)", "cached", ITEM),
    Scenario("limited", "item read, cache hit, RATE_LIMIT on (counters in Redis)", "limited", ITEM),
    Scenario("unsecured", "item read, cache hit, no security headers", "unsecured", ITEM),
    Scenario("unmeasured", "item read, cache hit, no request metrics", "unmeasured", ITEM),
    Scenario("traced", "item read, cache hit, traced (OTLP to a local receiver)", "traced", ITEM),
    Scenario("authenticated", "item read, cache hit, auth=oidc (a bearer token checked)", "authenticated", ITEM),
    Scenario("database", "item read, cache=none (PostgreSQL, pooled)", "database", ITEM),
    Scenario("unpooled", "item read, cache=none, DB_POOL_DISABLED=true", "unpooled", ITEM),
)

#: The ratios reported, as (name, label, numerator scenario, denominator scenario).
RATIOS: tuple[tuple[str, str, str, str], ...] = (
    ("template_overhead", "cached read ÷ bare hello-world", "cached", "hello"),
    ("healthz_vs_hello", "/healthz ÷ bare hello-world", "healthz", "hello"),
    ("cache_speedup", "cached read ÷ database read", "cached", "database"),
    ("pool_speedup", "pooled ÷ unpooled database read", "database", "unpooled"),
    ("access_log", "/healthz with ÷ without access log", "healthz", "healthz_quiet"),
    ("rate_limit", "cached read with ÷ without the rate limit", "limited", "cached"),
    ("security_headers", "cached read with ÷ without the security headers", "cached", "unsecured"),
    ("metrics", "cached read with ÷ without the request metrics", "cached", "unmeasured"),
    ("tracing", "cached read traced ÷ untraced", "traced", "cached"),
    ("authentication", "cached read with ÷ without a bearer token checked", "authenticated", "cached"),
)

SERVICE_ANSWERS = {"database": "postgresql", "task_queue": "none", "docker": False, "ci": "none"}


def selected(config: Config) -> list[Scenario]:
    """The scenarios asked for (``--scenarios``), or every one."""
    return [s for s in SCENARIOS if not config.scenarios or s.key in config.scenarios]


def versions(project: Path, framework: str, command: list[str]) -> dict[str, str]:
    names = [framework] + ([command[0]] if command[0] != "python" else [])
    code = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    try:
        out = harness.run([str(project / ".venv" / "bin" / "python"), "-c", code, *names], project)
        return dict(json.loads(out))
    except (RuntimeError, ValueError):
        return {}


def measure(config: Config) -> dict[str, Any]:
    if not wrk.available():
        raise SystemExit(wrk.INSTALL_HINT)
    results: dict[str, Any] = {
        "settings": {
            "seconds": config.seconds,
            "warmup": config.warmup,
            "repetitions": config.repetitions,
            "connections": config.connections,
            "wrk_threads": 1,
            "workers": config.workers,
            "server_cpus": config.server_cpus,
            "client_cpus": config.client_cpus,
            "server_env": config.server_env,
        },
        "scenarios": {s.key: s.label for s in SCENARIOS},
        "ratios": {name: label for name, label, _, _ in RATIOS},
        "frameworks": {},
    }
    for framework in config.frameworks:
        print(f"serving: {framework}", flush=True)
        try:
            results["frameworks"][framework] = measure_framework(framework, config)
        except Exception as error:  # noqa: BLE001 - one framework's failure must not lose the others
            print(f"serving: {framework} failed: {error}", flush=True)
            results["frameworks"][framework] = {"error": str(error)}
    return results


def measure_framework(framework: str, config: Config) -> dict[str, Any]:
    root = config.workdir / f"serving-{framework}"
    logs = root / "logs"
    scenarios = selected(config)
    wanted = {s.server for s in scenarios}
    cached = harness.render(root / "cached", harness.answers_for(framework, cache="redis", **SERVICE_ANSWERS))
    harness.uv_sync(cached)
    authenticated = None
    if "authenticated" in wanted:
        answers = harness.answers_for(framework, cache="redis", auth="oidc", **SERVICE_ANSWERS)
        authenticated = harness.render(root / "authenticated", answers)
        harness.uv_sync(authenticated)
    database_project = None
    if wanted & {"database", "unpooled"}:
        database_project = harness.render(
            root / "database", harness.answers_for(framework, cache="none", **SERVICE_ANSWERS)
        )
        harness.uv_sync(database_project)
    logs.mkdir(parents=True, exist_ok=True)
    command = harness.production_command(framework)
    load_before = harness.load_average()

    with Database(f"bn_{framework}_{os.getpid()}") as database, contextlib.ExitStack() as stack:
        env = harness.production_env(
            WEB_CONCURRENCY=str(config.workers), DATABASE_URL=database.url, **config.server_env
        )
        harness.migrate(cached, env)
        redis = {"REDIS_URL": harness.SERVICES["redis"], "CACHE_NAMESPACE": f"bn_{framework}_{os.getpid()}"}
        # Where the traced server sends its spans: a receiver in this process, which counts them.
        sink = stack.enter_context(harness.OtlpSink(keep=False))
        # Whose tokens the auth=oidc server accepts: a provider in this process, as an IdP's keys.
        provider = stack.enter_context(harness.Provider())
        plans: dict[str, tuple[list[str], Path | None, dict[str, str]]] = {
            "hello": (harness.hello_command(framework), cached, {**env, "PYTHONPATH": str(harness.HELLO)}),
            "cached": (command, cached, {**env, **redis}),
            "quiet": (command, cached, {**env, **redis, "ACCESS_LOG": "false"}),
            # A budget no load here reaches: every request pays for the counting, none is refused.
            "limited": (command, cached, {**env, **redis, "RATE_LIMIT": "1000000000/minute"}),
            "unsecured": (command, cached, {**env, **redis, **without("security_headers")}),
            "unmeasured": (command, cached, {**env, **redis, **without("metrics")}),
            "traced": (command, cached, {**env, **redis, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}),
            "authenticated": (command, authenticated, {**env, **redis, **provider.settings}),
            "database": (command, database_project, env),
            "unpooled": (command, database_project, {**env, "DB_POOL_DISABLED": "true"}),
        }
        bases: dict[str, str] = {}
        running: dict[str, Server] = {}
        metrics_ports: dict[str, int] = {}
        for name in sorted(wanted):
            cmd, project, server_env = plans[name]
            assert project is not None
            port, metrics_ports[name] = harness.free_port(), harness.free_port()
            # Metrics served, as in production: the workers count in files the main process reads.
            server_env = {**server_env, "METRICS_PORT": str(metrics_ports[name])}
            server = Server(
                harness.on_loopback(cmd, port), project, server_env, logs / f"{name}.log", cpus=config.server_cpus
            )
            stack.callback(server.stop)
            running[name] = server.start()
            bases[name] = f"http://127.0.0.1:{port}"
        for name, server in running.items():
            server.wait_until_serving(bases[name] + ("/" if name == "hello" else "/healthz"))

        item_id = seed(bases.get("cached") or bases.get("database")) if any(s.path == ITEM for s in scenarios) else 0
        if item_id:
            # A write marks the item's cache key invalid for a grace period, during which reads
            # are not cached: let it pass.
            time.sleep(invalidation_grace((cached / "src" / harness.PACKAGE / "cache.py").read_text()) + 0.5)
        urls = {s.key: bases[s.server] + s.path.format(item_id=item_id) for s in scenarios}
        token = provider.headers()
        headers = {
            s.key: {**harness.PROXY_HEADERS, **(token if s.server == "authenticated" else {})} for s in scenarios
        }
        for scenario in scenarios:
            for _ in range(3):  # fills the cache; any error shows before the load does
                status, body = harness.http_get(urls[scenario.key], headers[scenario.key])
            if status != 200:
                raise RuntimeError(f"{scenario.key}: {urls[scenario.key]} answered {status}: {body[:300]!r}")
        if {"cached", "unmeasured"} <= {s.key for s in scenarios}:
            for key, expected in (("cached", True), ("unmeasured", False)):
                if measured(metrics_ports[key]) != expected:
                    raise RuntimeError(f"{key}: the requests are {'not ' if expected else ''}counted")
        if "authenticated" in urls and harness.http_get(urls["authenticated"], harness.PROXY_HEADERS)[0] != 401:
            raise RuntimeError("authenticated: a read without a token was not refused")
        if {"cached", "unsecured"} <= {s.key for s in scenarios}:
            # The two differ by the headers only: check that the hooks are off in one, on in the other.
            for key, expected in (("cached", True), ("unsecured", False)):
                if secured(urls[key]) != expected:
                    raise RuntimeError(f"{key}: the security headers are {'missing' if expected else 'still sent'}")

        runs: dict[str, list[wrk.WrkResult]] = {s.key: [] for s in scenarios}
        cpu_per_request: dict[str, list[float]] = {s.key: [] for s in scenarios}
        load = {"seconds": config.seconds, "connections": config.connections, "cpus": config.client_cpus}
        for repetition in range(config.repetitions):
            for scenario in scenarios:
                scenario_load = {**load, "headers": headers[scenario.key]}
                if config.warmup:
                    wrk.run(urls[scenario.key], **{**scenario_load, "seconds": config.warmup})
                server = running[scenario.server]
                cpu_before = server.cpu_seconds()
                result = wrk.run(urls[scenario.key], **scenario_load)
                cpu = server.cpu_seconds() - cpu_before
                runs[scenario.key].append(result)
                cpu_per_request[scenario.key].append(cpu / max(result.requests, 1) * 1e6)
                print(
                    f"  {framework} {scenario.key} #{repetition + 1}: {result.requests_per_s:,.0f} req/s, "
                    f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                    f"{cpu_per_request[scenario.key][-1]:.0f} µs CPU/request"
                    + (f", {result.errors} errors" if result.errors else ""),
                    flush=True,
                )
        if "traced" in wanted and not sink.received:
            raise RuntimeError("traced: no span reached the OTLP receiver")
        failed = {
            name: server.tail()
            for name, server in running.items()
            if server.process and server.process.poll() is not None
        }

    outcome = {
        "command": " ".join(command),
        "hello_command": " ".join(harness.hello_command(framework)),
        "versions": versions(cached, framework, command),
        "load_before": load_before,
        "load_after": harness.load_average(),
        "scenarios": {key: summarise(results, cpu_per_request[key]) for key, results in runs.items()},
        "ratios": ratios(runs),
    }
    if failed:
        outcome["server_failures"] = failed
    shutil.rmtree(root, ignore_errors=True)
    return outcome


def invalidation_grace(cache_module: str) -> float:
    """``INVALIDATION_GRACE`` of a generated service's cache.py: the service's own figure, not a copy."""
    match = re.search(r"^INVALIDATION_GRACE = (\d+(?:\.\d+)?)$", cache_module, re.MULTILINE)
    if match is None:
        raise RuntimeError("the service's cache.py defines no INVALIDATION_GRACE: teach invalidation_grace() its form")
    return float(match.group(1))


def without(feature: str) -> dict[str, str]:
    """The environment of a server whose ``feature`` hooks are no-ops (``bench/without``)."""
    return {"PYTHONPATH": str(WITHOUT), "BENCH_PACKAGE": harness.PACKAGE, "BENCH_WITHOUT": feature}


def measured(metrics_port: int) -> bool:
    """Whether the server whose metrics are on ``metrics_port`` counted any request."""
    status, body = harness.http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    return status == 200 and b"http_server_request_duration_seconds_count{" in body


def secured(url: str) -> bool:
    """Whether the answer at ``url`` carries the security headers (their first, nosniff, stands for all)."""
    request = urllib.request.Request(url, headers=harness.PROXY_HEADERS)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("X-Content-Type-Options") == "nosniff"


def seed(base: str | None) -> int:
    """One item to read, created through the API; returns its id."""
    assert base is not None
    body = json.dumps({"name": "Widget", "description": "A small widget, read under load."}).encode()
    status, answer = harness.http_post(f"{base}/api/v1/items", body, harness.PROXY_HEADERS)
    if status != 201:
        raise RuntimeError(f"creating the item to read answered {status}: {answer[:300]!r}")
    return int(json.loads(answer)["id"])


def summarise(results: list[wrk.WrkResult], cpu_per_request: list[float]) -> dict[str, Any]:
    return {
        "cpu_us_per_request": stats.summary(cpu_per_request),
        "requests_per_s": stats.summary([r.requests_per_s for r in results]),
        "p50_ms": stats.summary([r.p50_ms for r in results]),
        "p99_ms": stats.summary([r.p99_ms for r in results]),
        "requests": sum(r.requests for r in results),
        "errors": sum(r.errors for r in results),
    }


def ratios(runs: dict[str, list[wrk.WrkResult]]) -> dict[str, Any]:
    """Throughput ratios between scenarios, paired repetition by repetition."""
    throughput = {key: [r.requests_per_s for r in results] for key, results in runs.items()}
    found = {}
    for name, _, numerator, denominator in RATIOS:
        if numerator in throughput and denominator in throughput:
            found[name] = stats.paired_ratio(throughput[numerator], throughput[denominator])
    return found
