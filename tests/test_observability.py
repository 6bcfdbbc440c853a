"""Compose's observability profile: its Prometheus configuration, its Grafana provisioning and
the dashboard, checked as far as this machine can run them.

Two combinations are rendered once each: one with every dependency (PostgreSQL, Redis, Celery)
and one with none (SQLite). Prometheus' own ``promtool check config`` checks the rendered
``prometheus.yml``; the dashboard is checked as Grafana reads it (schema version, grid, panels
on the provisioned data source's uid), type-checked against Grafana's published schema (npm's
``@grafana/schema``, with TypeScript's compiler), and must use only the metrics the service has.

Then the dashboard is evaluated for real: the generated service's production server runs on the
machine's PostgreSQL and Redis (with no broker, its tasks run in the server) with its metrics
port on a free loopback port, a private Prometheus (Debian's binary, its own port
and storage; never a shared instance) scrapes it every second with the rendered scrape
configuration pointed at that port, requests are sent in two rounds with a scrape after each,
and every expression of every panel is evaluated through Prometheus' query API. All must
evaluate; the request metrics' panels must have data.

Grafana and the OpenTelemetry Collector are not Debian packages and Docker is not here, so
neither runs in these tests: the collector's configuration is checked for consistency with
compose and the Makefile (tests/test_container_and_ci.py), the dashboard by Grafana's schema,
its structure and its queries.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import (
    UV,
    database_name,
    npm_packages,
    python_for,
    render,
    require_service,
    run,
    unavailable,
    uv_env,
    web_layer_params,
)
from test_load import PURGE

from bench.harness import (
    PROXY_HEADERS,
    Database,
    Server,
    free_port,
    http_get,
    http_patch,
    http_post,
    migrate,
    on_loopback,
    production_command,
    production_env,
)

BASE = {"framework": "fastapi", "docker": True, "ci": "none"}
COMBOS: dict[str, dict[str, Any]] = {
    "full": {"database": "postgresql", "cache": "redis", "task_queue": "celery", "broker": "redis"},
    "bare": {"database": "sqlite", "cache": "none", "task_queue": "none"},
}
CASES = [pytest.param(name, id=name, marks=pytest.mark.xdist_group(f"observability-{name}")) for name in COMBOS]
#: The metrics of issue 13's design (docs/observability.md), by family: the dashboard may use no
#: other. Each entry: its kind, and the answers under which the service has it.
METRICS: dict[str, tuple[str, str]] = {
    "http_server_request_duration_seconds": ("histogram", "always"),
    "http_server_active_requests": ("gauge", "always"),
    "db_client_connection_count": ("gauge", "pool"),
    "db_client_connection_max": ("gauge", "pool"),
    "db_client_connection_pending_requests": ("gauge", "pool"),
    "db_client_connection_wait_time_seconds": ("histogram", "pool"),
    "db_client_connection_timeouts_total": ("counter", "pool"),
    "cache_lookups_total": ("counter", "cache"),
    "celery_tasks_sent_total": ("counter", "celery"),
    "celery_tasks_total": ("counter", "celery"),
    "celery_task_duration_seconds": ("histogram", "celery"),
}
#: What the live test makes happen, so the panels of these must show data.
SERVED_METRICS = set(METRICS) - {"celery_tasks_sent_total", "db_client_connection_timeouts_total"}
#: Grafana's variables the panels may use, and what each is replaced by for the query API: a rate
#: window that spans the whole test, as Grafana's spans four scrapes.
GRAFANA_VARIABLES = {"$__rate_interval": "1m"}
#: PromQL's keywords, which the name pattern below would take for metric names.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
GRID_COLUMNS = 24


_RENDERS: dict[str, Path] = {}


@pytest.fixture
def service(combo: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One render per combination for the whole module."""
    if combo not in _RENDERS:
        _RENDERS[combo] = render(
            tmp_path_factory.mktemp(f"observability-{combo}") / "service", {**BASE, **COMBOS[combo]}
        )
    return _RENDERS[combo]


def binary(name: str) -> str:
    """Prometheus' binaries: Debian's `prometheus` package (.ci/run installs it)."""
    found = shutil.which(name)
    if not found:
        unavailable(f"{name} is not installed: apt-get install prometheus")
    return found


def dashboard(service: Path) -> dict[str, Any]:
    return json.loads((service / "observability" / "grafana" / "dashboards" / "service.json").read_text())


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (panel title, expression) of the dashboard."""
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: what is left once label matchers, range windows,
    grouping labels and calls are taken out."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    bare = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    names = {
        m[0] for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if not bare[m.end() :].lstrip().startswith("(")
    }
    return names - PROMQL_WORDS


def family(series: str) -> str:
    """The metric a series belongs to: a histogram's ``_bucket``, ``_count`` and ``_sum`` are its own."""
    for suffix in ("_bucket", "_count", "_sum"):
        stem = series.removesuffix(suffix)
        if stem != series and METRICS.get(stem, ("",))[0] == "histogram":
            return stem
    assert series in METRICS, f"{series} is not a metric of the design (docs/observability.md)"
    return series


def families(board: dict[str, Any]) -> set[str]:
    return {family(name) for _, expr in queries(board) for name in metric_names(expr)}


def expected_families(answers: dict[str, Any]) -> set[str]:
    has = {
        "always": True,
        "pool": answers["database"] == "postgresql",
        "cache": answers["cache"] == "redis" and answers["database"] != "none",
        "celery": answers["task_queue"] == "celery",
    }
    return {name for name, (_, where) in METRICS.items() if has[where]}


def compose_services(service: Path) -> dict[str, Any]:
    return yaml.safe_load((service / "compose.yaml").read_text())["services"]


# --- Prometheus' configuration --------------------------------------------------------------


@pytest.mark.parametrize("combo", CASES)
def test_promtool_checks_the_prometheus_config(service: Path, combo: str) -> None:
    config = service / "observability" / "prometheus.yml"
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # It scrapes the metrics port of each of the service's processes that serve one, by name.
    scrapes = yaml.safe_load(config.read_text())["scrape_configs"]
    jobs = {job["job_name"]: job["dns_sd_configs"] for job in scrapes}
    wanted = ["app", "worker"] if COMBOS[combo]["task_queue"] == "celery" else ["app"]
    assert jobs == {name: [{"names": [name], "type": "A", "port": 9464}] for name in wanted}
    assert set(wanted) <= set(compose_services(service))
    mounts = compose_services(service)["prometheus"]["volumes"]
    assert "./observability/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_promtool_refuses_a_broken_config(tmp_path: Path) -> None:
    """The check above means something: promtool refuses a misspelt key."""
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs:\n  - job_name: app\n    static_config: []\n")
    result = subprocess.run([binary("promtool"), "check", "config", str(config)], capture_output=True, check=False)
    assert result.returncode != 0


# --- Grafana's provisioning and the dashboard -----------------------------------------------


@pytest.mark.parametrize("combo", CASES)
def test_grafana_is_provisioned_with_prometheus_jaeger_and_the_dashboard(service: Path, combo: str) -> None:
    grafana = compose_services(service)["grafana"]
    mounts = dict(volume.removesuffix(":ro").split(":") for volume in grafana["volumes"])
    for source in mounts:
        assert (service / source).exists(), f"compose mounts {source}, which the service lacks"
    provisioning = {
        Path(target).parent.name: service / source for source, target in mounts.items() if "/provisioning/" in target
    }
    assert set(provisioning) == {"datasources", "dashboards"}

    sources = {
        source["type"]: source for source in yaml.safe_load(provisioning["datasources"].read_text())["datasources"]
    }
    assert set(sources) == {"prometheus", "jaeger"}
    assert sources["prometheus"]["isDefault"] is True
    assert urlsplit(sources["prometheus"]["url"]).netloc == "prometheus:9090"
    assert urlsplit(sources["jaeger"]["url"]).netloc == "jaeger:16686"
    scrape_interval = yaml.safe_load((service / "observability" / "prometheus.yml").read_text())["global"]
    assert sources["prometheus"]["jsonData"]["timeInterval"] == scrape_interval["scrape_interval"]

    # The provider reads the folder compose mounts the dashboards into; Grafana opens on ours.
    providers = yaml.safe_load(provisioning["dashboards"].read_text())["providers"]
    assert [provider["options"]["path"] for provider in providers] == [mounts["./observability/grafana/dashboards"]]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent == Path(providers[0]["options"]["path"])
    assert (service / "observability" / "grafana" / "dashboards" / Path(home).name).is_file()


@pytest.mark.parametrize("combo", CASES)
def test_dashboard_is_grafanas_json_on_the_provisioned_prometheus(service: Path, combo: str) -> None:
    board = dashboard(service)
    datasources = yaml.safe_load((service / "observability" / "grafana" / "datasources.yaml").read_text())
    prometheus = next(source for source in datasources["datasources"] if source["type"] == "prometheus")
    assert isinstance(board["schemaVersion"], int) and 36 <= board["schemaVersion"] <= 42
    assert board["title"] == "Orders API" and board["uid"]
    panels = board["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["h"] > 0 and grid["w"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel[
            "title"
        ]
        for cell in (
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        ):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]}"
            cells[cell] = panel["title"]
        if panel["type"] == "row":
            assert panel["panels"] == [] and not panel.get("targets"), panel["title"]
            continue
        assert panel["type"] == "timeseries" and panel["title"] and panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": prometheus["uid"]}, panel["title"]
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no query"
        assert len({target["refId"] for target in targets}) == len(targets)
        for target in targets:
            assert target["datasource"] == panel["datasource"] and target["expr"].strip()
    # Rows head their panels: the first panel is a row, and no row is left empty.
    kinds = [panel["type"] for panel in sorted(panels, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))]
    assert kinds[0] == "row" and kinds[-1] != "row" and "row,row" not in ",".join(kinds)


#: Grafana's schema as Grafana publishes it: TypeScript types generated from its CUE definitions,
#: the dashboard's and each panel plugin's, checked by TypeScript's compiler.
GRAFANA_SCHEMA_NPM = ["@grafana/schema@13.2.3", "typescript@5.9.3"]
SCHEMA_CHECK = """import type {{ Dashboard }} from "@grafana/schema/dist/esm/raw/dashboard/x/Dashboard_types.gen";
import type {{ FieldConfig, Options }} from
  "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

// The JSON as Grafana reads it: an enum written as its value, and a field left out taking
// Grafana's default (the types make fields with a default required).
type AsJson<T> = T extends string ? `${{T}}`
  : T extends readonly (infer U)[] ? AsJson<U>[]
  : T extends object ? {{ [K in keyof T]?: AsJson<T[K]> }}
  : T;

export const dashboard = {board} satisfies AsJson<Dashboard>;
export const options = {options} satisfies AsJson<Options>[];
export const custom = {custom} satisfies AsJson<FieldConfig>[];
"""
TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "module": "nodenext",
        "moduleResolution": "nodenext",
        "target": "es2022",
        "types": [],
    },
    "files": ["check.ts"],
}


def grafana_schema_errors(board: dict[str, Any], workdir: Path) -> str:
    """TypeScript's errors on the dashboard against Grafana's published types ("" if none):
    unknown keys (a misspelling), wrong types and enum values, in the dashboard, its panels
    and the time series panels' options and field configuration."""
    modules = npm_packages("grafana-schema", GRAFANA_SCHEMA_NPM, "typescript/bin/tsc")
    if modules is None:
        unavailable(f"node and npm are needed to install {' and '.join(GRAFANA_SCHEMA_NPM)} from the npm registry")
    series = [panel for panel in board["panels"] if panel["type"] == "timeseries"]
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "node_modules").symlink_to(modules)
    (workdir / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    (workdir / "check.ts").write_text(
        SCHEMA_CHECK.format(
            board=json.dumps(board, indent=1),
            options=json.dumps([panel.get("options", {}) for panel in series], indent=1),
            custom=json.dumps([panel["fieldConfig"]["defaults"].get("custom", {}) for panel in series], indent=1),
        )
    )
    tsc = [str(shutil.which("node")), str(modules / "typescript" / "bin" / "tsc"), "-p", str(workdir)]
    result = subprocess.run(tsc, capture_output=True, text=True, timeout=120, check=False)
    return result.stdout + result.stderr


@pytest.mark.parametrize("combo", CASES)
def test_dashboard_type_checks_against_grafanas_published_schema(service: Path, combo: str, tmp_path: Path) -> None:
    board = dashboard(service)
    assert grafana_schema_errors(board, tmp_path / "valid") == ""
    # The check finds what Grafana would not read: a misspelt key, a value outside an enum.
    broken = json.loads(json.dumps(board))
    broken["schemaVersoin"] = broken.pop("schemaVersion")
    legend = next(panel for panel in broken["panels"] if panel["type"] == "timeseries")["options"]["legend"]
    legend["displayMode"] = "lists"
    errors = grafana_schema_errors(broken, tmp_path / "broken")
    assert """'"schemaVersoin"' does not exist""" in errors, errors
    assert """Type '"lists"' is not assignable""" in errors, errors


@pytest.mark.parametrize("combo", CASES)
def test_dashboard_shows_exactly_the_metrics_the_service_has(service: Path, combo: str) -> None:
    board = dashboard(service)
    assert families(board) == expected_families(COMBOS[combo])
    for title, expr in queries(board):
        leftover = expr
        for variable in GRAFANA_VARIABLES:
            leftover = leftover.replace(variable, "")
        assert "$" not in leftover, f"{title}: a Grafana variable the tests do not know: {expr}"


# --- the dashboard's queries on a real Prometheus -------------------------------------------


class Prometheus:
    """A private Prometheus: its own port and storage, scraping what ``config`` says."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.port = free_port()
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.command = [
            binary("prometheus"),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.server = Server(self.command, workdir, {"PATH": "/usr/bin:/bin"}, workdir / "prometheus.log")

    def __enter__(self) -> Self:
        self.server.start().wait_until_serving(f"http://127.0.0.1:{self.port}/-/ready", timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def query(self, expr: str) -> dict[str, Any]:
        """The query API's whole answer for ``expr`` now; an error's too."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        return json.loads(http_get(url)[1])

    def scraped_after(self, moment: float, timeout: float = 30) -> None:
        """Waits until the app has been scraped once after ``moment`` (seconds since the epoch)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The time of the last scrape: timestamp() of a selector is its sample's; of anything
            # else (up == 1, say) it is the time of the query.
            scraped = self.query('timestamp(up{job="app"})')["data"]["result"]
            up = self.query('up{job="app"}')["data"]["result"]
            if scraped and float(scraped[0]["value"][1]) > moment and up[0]["value"][1] == "1":
                return
            time.sleep(0.2)
        raise AssertionError(f"Prometheus did not scrape the app within {timeout} s:\n{self.server.tail()}")


def scraping(service: Path, metrics_port: int) -> dict[str, Any]:
    """The rendered configuration, scraping every second the app's metrics port on this machine."""
    config = yaml.safe_load((service / "observability" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    (app,) = [job for job in config["scrape_configs"] if job["job_name"] == "app"]
    del app["dns_sd_configs"]
    app["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    config["scrape_configs"] = [app]
    return config


def send_requests(base: str) -> None:
    """A mix that reaches every route: creates, reads (one missing), a list, an update; sent as
    the TLS proxy forwards them (Django's production settings redirect plain HTTP)."""
    ids = []
    for name in ("Widget", "Gadget"):
        status, body = http_post(f"{base}/api/v1/items", json.dumps({"name": name}).encode(), PROXY_HEADERS)
        assert status == 201, body
        ids.append(json.loads(body)["id"])
    for item_id in (*ids, ids[0], 10**9):
        http_get(f"{base}/api/v1/items/{item_id}", PROXY_HEADERS)
    http_get(f"{base}/api/v1/items", PROXY_HEADERS)
    assert http_patch(f"{base}/api/v1/items/{ids[0]}", b'{"name": "Sprocket"}', PROXY_HEADERS)[0] == 200


@contextmanager
def scraped(service: Path, framework: str, label: str, workdir: Path, **settings: str) -> Iterator[Prometheus]:
    """A private Prometheus scraping the service's production server every second, after two
    rounds of ``send_requests``, each followed by a scrape (every series has two samples)."""
    redis = require_service("redis")
    run([UV, "sync", "--quiet", "--no-dev", "--python", python_for("3.13")], service, uv_env())
    namespace = f"observability-{secrets.token_hex(4)}"
    port, metrics_port = free_port(), free_port()
    with Database(database_name(label), require_service("postgres")) as database:
        # Cache keys of this run's own, removed below.
        env = production_env(
            DATABASE_URL=database.url,
            REDIS_URL=redis,
            CACHE_NAMESPACE=namespace,
            METRICS_PORT=str(metrics_port),
            **settings,
        )
        migrate(service, env)
        server = Server(on_loopback(production_command(framework), port), service, env, workdir / "server.log")
        prometheus_dir = workdir / "prometheus"
        prometheus_dir.mkdir()
        try:
            server.start().wait_until_serving(f"http://127.0.0.1:{port}/readyz")
            with Prometheus(scraping(service, metrics_port), prometheus_dir) as prometheus:
                prometheus.scraped_after(0)
                for _ in range(2):
                    send_requests(f"http://127.0.0.1:{port}")
                    prometheus.scraped_after(time.time())
                yield prometheus
        finally:
            server.stop()
            run([str(service / ".venv" / "bin" / "python"), "-c", PURGE, redis, f"{namespace}*"], service)


@pytest.mark.parametrize("combo", [pytest.param("full", marks=pytest.mark.xdist_group("observability-full"))])
def test_every_dashboard_query_evaluates_on_prometheus_scraping_the_service(
    service: Path, combo: str, tmp_path: Path
) -> None:
    answers: dict[str, dict[str, Any]] = {}
    # No broker: the tasks run in the server.
    with scraped(service, "fastapi", "observability", tmp_path) as prometheus:
        for title, expr in queries(dashboard(service)):
            evaluated = expr
            for variable, value in GRAFANA_VARIABLES.items():
                evaluated = evaluated.replace(variable, value)
            answers[f"{title}: {expr}"] = prometheus.query(evaluated) | {"metrics": metric_names(expr)}

    failed = {query: answer for query, answer in answers.items() if answer["status"] != "success"}
    assert not failed, json.dumps(failed, indent=2, default=sorted)
    assert all(answer["data"]["resultType"] == "vector" for answer in answers.values())
    # The panels of what this run makes happen show numbers: requests, pools, cache lookups, tasks
    # run (eagerly, in the server). Nothing was sent to a broker, and no pool wait timed out.
    for query, answer in answers.items():
        if {family(name) for name in answer["metrics"]} <= SERVED_METRICS:
            values = [float(sample["value"][1]) for sample in answer["data"]["result"]]
            assert values and all(math.isfinite(value) for value in values), f"{query}: {answer['data']}"


@pytest.mark.parametrize(("name", "answers"), web_layer_params("observability-scraped"))
def test_prometheus_answers_each_web_layers_request_rate_by_route(
    name: str, answers: dict[str, Any], tmp_path: Path
) -> None:
    """A real Prometheus scrapes each web layer's production server (two workers) and answers
    the request rate by route template, as the dashboard's first panel asks it."""
    layer = {"database": "postgresql", "cache": "redis", "task_queue": "none"}
    service = render(tmp_path / "service", {**BASE, **layer, **answers})
    with scraped(service, answers["framework"], f"scraped-{name}", tmp_path, WEB_CONCURRENCY="2") as prometheus:
        answer = prometheus.query(
            "sum by (http_route, http_request_method) (rate(http_server_request_duration_seconds_count[1m]))"
        )
    rates = {
        (r["metric"]["http_request_method"], r["metric"]["http_route"]): float(r["value"][1])
        for r in answer["data"]["result"]
    }
    assert {("POST", "/api/v1/items"), ("GET", "/api/v1/items/{item_id}"), ("GET", "/api/v1/items")} <= set(rates), (
        rates
    )
    assert all(rate > 0 for rate in rates.values()), rates
    assert not any(route.startswith(("/healthz", "/readyz")) for _, route in rates), rates
