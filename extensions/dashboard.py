"""The Grafana dashboard of a service's compose observability profile, built from its answers.

Written as a Jinja file, the dashboard's JSON would need a condition per section and PromQL
lines past the template's 120 characters. Built here, each panel is a few lines, each section
is chosen by one fact (a connection pool on PostgreSQL, cache-aside, Celery), and the service
gets plain JSON, as Grafana itself writes it: ``observability/grafana/dashboards/service.json``.

The metric names are those of the service's ``metrics.py`` (docs/observability.md); the data
source is the Prometheus that ``observability/grafana/datasources.yaml`` provisions, by its uid.
``tests/test_observability.py`` evaluates every expression here on a real Prometheus.
"""

from __future__ import annotations

import json
from typing import Any

#: The provisioned Prometheus data source (observability/grafana/datasources.yaml).
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
#: Grafana's rate window: at least four scrape intervals (the data source's timeInterval).
RATE = "[$__rate_interval]"
#: The dashboard JSON model these panels are written in; Grafana 12 and later read it as it is.
SCHEMA_VERSION = 41
#: The grid: 24 columns; a panel is 8 rows high.
COLUMNS, HEIGHT = 24, 8

REQUESTS = "http_server_request_duration_seconds"


def query(expr: str, legend: str = "__auto") -> dict[str, Any]:
    return {"expr": expr, "legendFormat": legend}


def panel(title: str, unit: str, description: str, *queries: dict[str, Any], width: int = 12) -> dict[str, Any]:
    """A time series of ``queries`` on Prometheus; its place on the grid is set by :func:`layout`."""
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "gridPos": {"h": HEIGHT, "w": width},
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {"refId": chr(ord("A") + number), "datasource": PROMETHEUS, "range": True, **target}
            for number, target in enumerate(queries)
        ],
    }


def rate(selector: str) -> str:
    return f"rate({selector}{RATE})"


def quantile(q: float, histogram: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) ({rate(histogram + '_bucket')}))"


def ratio(part: str, whole: str) -> str:
    """``part`` over ``whole``, both summed rates; 0, not nothing, while ``part`` has no series yet."""
    return f"(sum({rate(part)}) or vector(0)) / sum({rate(whole)})"


def requests() -> list[dict[str, Any]]:
    count = f"{REQUESTS}_count"
    latency = [
        panel(
            f"Latency p{round(q * 100)} by route",
            "s",
            f"{round(q * 100)}% of the requests to each route were answered within this time.",
            query(quantile(q, REQUESTS, "http_route"), "{{http_route}}"),
            width=8,
        )
        for q in (0.5, 0.95, 0.99)
    ]
    return [
        panel(
            "Requests per second by route",
            "reqps",
            "Requests answered, by method and route template; the probes are not counted.",
            query(
                f"sum by (http_request_method, http_route) ({rate(count)})", "{{http_request_method}} {{http_route}}"
            ),
        ),
        panel(
            "Error ratio",
            "percentunit",
            "Share of the answers that were server errors (5xx: the service or a dependency failed) and "
            "client errors (4xx: refused, not found, over the rate limit).",
            query(ratio(f'{count}{{http_response_status_code=~"5.."}}', count), "5xx"),
            query(ratio(f'{count}{{http_response_status_code=~"4.."}}', count), "4xx"),
        ),
        *latency,
        panel(
            "Responses per second by status",
            "reqps",
            "Answers by HTTP status code.",
            query(f"sum by (http_response_status_code) ({rate(count)})", "{{http_response_status_code}}"),
        ),
        panel(
            "Requests in flight",
            "short",
            "Requests being answered now, summed over the server's worker processes.",
            query("sum by (http_request_method) (http_server_active_requests)", "{{http_request_method}}"),
        ),
    ]


def database_pool() -> list[dict[str, Any]]:
    by = "job, pool_name"
    return [
        panel(
            "Pool connections",
            "short",
            "The database pools' connections, summed over the processes of each job (app, worker): "
            "used (lent to a request or task), idle, and the most the pools may open.",
            query(f"sum by ({by}, state) (db_client_connection_count)", "{{job}} {{pool_name}} {{state}}"),
            query(f"sum by ({by}) (db_client_connection_max)", "{{job}} {{pool_name}} max"),
        ),
        panel(
            "Waiting for a connection",
            "short",
            "Requests for a connection that the pool has not answered yet.",
            query(f"sum by ({by}) (db_client_connection_pending_requests)", "{{job}} {{pool_name}}"),
        ),
        panel(
            "Connection wait time",
            "s",
            "Time taken to get a connection from the pool (p50 and p99); long waits mean the pool is too small.",
            query(quantile(0.5, "db_client_connection_wait_time_seconds", by), "p50 {{job}} {{pool_name}}"),
            query(quantile(0.99, "db_client_connection_wait_time_seconds", by), "p99 {{job}} {{pool_name}}"),
        ),
        panel(
            "Pool timeouts per second",
            "ops",
            "Requests that gave up waiting for a connection (DB_POOL_TIMEOUT): the pool was exhausted.",
            query(f"sum by ({by}) ({rate('db_client_connection_timeouts_total')})", "{{job}} {{pool_name}}"),
        ),
    ]


def cache() -> list[dict[str, Any]]:
    return [
        panel(
            "Cache hit ratio",
            "percentunit",
            "Share of the cache-aside reads answered from Redis.",
            query(ratio('cache_lookups_total{result="hit"}', "cache_lookups_total"), "hits"),
        ),
        panel(
            "Cache lookups per second",
            "ops",
            "Cache-aside reads by result: hit, miss, or error (Redis failed; read as a miss).",
            query(f"sum by (result) ({rate('cache_lookups_total')})", "{{result}}"),
        ),
    ]


def tasks() -> list[dict[str, Any]]:
    return [
        panel(
            "Tasks sent per second",
            "ops",
            "Tasks the web processes published to the broker.",
            query(f"sum by (task) ({rate('celery_tasks_sent_total')})", "{{task}}"),
            width=8,
        ),
        panel(
            "Task runs per second by outcome",
            "ops",
            "Tasks the worker ran, by outcome: succeeded, failed or retried.",
            query(f"sum by (task, state) ({rate('celery_tasks_total')})", "{{task}} {{state}}"),
            width=8,
        ),
        panel(
            "Task duration",
            "s",
            "Time the worker took to run each task (p50 and p95).",
            query(quantile(0.5, "celery_task_duration_seconds", "task"), "p50 {{task}}"),
            query(quantile(0.95, "celery_task_duration_seconds", "task"), "p95 {{task}}"),
            width=8,
        ),
    ]


def sections(database: str, cache_aside: bool, task_queue: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """The dashboard's rows and their panels: the requests always, the rest as the service has them."""
    chosen = [
        ("Requests", requests(), True),
        ("Database pool", database_pool(), database == "postgresql"),
        ("Cache", cache(), cache_aside),
        ("Celery tasks", tasks(), task_queue == "celery"),
    ]
    return [(title, panels) for title, panels, present in chosen if present]


def layout(rows: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Each row's heading, then its panels left to right, wrapping at the grid's width; ids in order."""
    placed: list[dict[str, Any]] = []
    y = 0
    for title, panels in rows:
        placed.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": COLUMNS, "x": 0, "y": y},
                "panels": [],
            }
        )
        y, x = y + 1, 0
        for member in panels:
            if x + member["gridPos"]["w"] > COLUMNS:
                y, x = y + HEIGHT, 0
            member["gridPos"].update(x=x, y=y)
            x += member["gridPos"]["w"]
            placed.append(member)
        y += HEIGHT
    return [{"id": number, **member} for number, member in enumerate(placed, 1)]


def dashboard(title: str, database: str, cache_aside: bool, task_queue: str) -> str:
    """The dashboard as Grafana's JSON, for the service named ``title`` with these answers."""
    document = {
        "title": title,
        "uid": "service",
        "description": f"{title}: requests, errors and latency by route, and what the service's dependencies do.",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "tags": [],
        "links": [{"title": "Traces (Jaeger)", "type": "link", "url": "http://127.0.0.1:16686", "targetBlank": True}],
        "annotations": {"list": []},
        "templating": {"list": []},
        "panels": layout(sections(database, cache_aside, task_queue)),
    }
    return json.dumps(document, indent=2)
