"""The benchmark harness's pure parts: wrk's report, medians and ratios, the tables and files.

Nothing here runs a server or asserts a timing: bench/ measures, these tests only check that
it reads and writes what it measures correctly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jwt
import pytest

from bench import bookkeeping, harness, report, serving, stats, verification, wrk

WRK_REPORT = """Running 8s test @ http://127.0.0.1:8000/healthz
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.91ms  512.33us  12.20ms   91.02%
    Req/Sec    11.07k   402.11    11.60k    87.50%
  Latency Distribution
     50%    2.74ms
     75%    2.98ms
     90%    3.20ms
     99%    1.05s
  88123 requests in 8.00s, 12.52MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  11015.37
Transfer/sec:      1.56MB
"""


def test_wrk_report_is_read_with_units_and_errors() -> None:
    result = wrk.parse(WRK_REPORT)
    assert result.requests == 88123
    assert result.seconds == pytest.approx(8.0)
    assert result.requests_per_s == pytest.approx(11015.37)
    assert result.p50_ms == pytest.approx(2.74)
    assert result.p99_ms == pytest.approx(1050.0)
    assert result.errors == 2 + 3 + 7


def test_wrk_latency_in_microseconds_and_a_clean_run() -> None:
    clean = WRK_REPORT.replace("2.74ms", "912.00us").split("  Socket errors")[0] + "Requests/sec:  5.00\n"
    result = wrk.parse(clean)
    assert result.p50_ms == pytest.approx(0.912)
    assert result.errors == 0


def test_wrk_output_that_is_not_a_report_is_refused() -> None:
    with pytest.raises(ValueError, match="not a wrk --latency report"):
        wrk.parse("unable to connect to 127.0.0.1:8000 Connection refused\n")


def test_wrk_command_is_pinned_bounded_and_carries_headers() -> None:
    command = wrk.command(
        "http://127.0.0.1:9/x", seconds=8, connections=32, headers={"X-Forwarded-Proto": "https"}, cpus="1"
    )
    assert command[:3] == ["taskset", "-c", "1"]
    assert "-d8s" in command and "-c32" in command and "--latency" in command
    assert command[command.index("-H") + 1] == "X-Forwarded-Proto: https"
    assert command[-1] == "http://127.0.0.1:9/x"
    assert wrk.command("http://h/", seconds=0.2, connections=1)[0] == "wrk"  # no pinning asked; at least 1 s


def test_summary_is_median_with_min_and_max() -> None:
    assert stats.summary([3.0, 1.0, 2.0, 10.0]) == {
        "median": 2.5,
        "min": 1.0,
        "max": 10.0,
        "runs": [3.0, 1.0, 2.0, 10.0],
    }
    with pytest.raises(ValueError):
        stats.summary([])


def test_ratios_pair_repetitions_and_refuse_what_cannot_be_paired() -> None:
    ratio = stats.paired_ratio([200.0, 90.0, 330.0], [100.0, 100.0, 300.0])
    assert ratio is not None
    assert ratio["median"] == pytest.approx(1.1)
    assert (ratio["min"], ratio["max"]) == (pytest.approx(0.9), pytest.approx(2.0))
    assert stats.paired_ratio([1.0], [1.0, 2.0]) is None
    assert stats.paired_ratio([1.0], [0.0]) is None


@pytest.mark.parametrize("framework", harness.implemented_frameworks())
def test_every_implemented_framework_has_a_hello_world_its_server_can_load(framework: str) -> None:
    command = harness.hello_command(framework)
    assert (harness.HELLO / f"hello_{framework}.py").is_file()
    assert not [part for part in command if "{package}" in part]
    assert [part for part in command if part.startswith(f"hello_{framework}")], command
    assert command[0] == options_server(framework)[0], "the hello-world runs under the service's own server"


def options_server(framework: str) -> tuple[str, ...]:
    return harness.options.FRAMEWORKS[framework].command


@pytest.mark.parametrize(
    ("command", "moved"),
    [
        (
            ["uvicorn", "--host", "0.0.0.0", "--port", "8000", "app:x"],
            ["uvicorn", "--host", "127.0.0.1", "--port", "7"],
        ),
        (["hypercorn", "--bind", "0.0.0.0:8000", "app:x"], ["hypercorn", "--bind", "127.0.0.1:7"]),
    ],
)
def test_production_commands_move_to_a_loopback_port(command: list[str], moved: list[str]) -> None:
    assert harness.on_loopback(command, 7)[: len(moved)] == moved


def fake_results() -> dict[str, Any]:
    def s(*values: float) -> dict[str, Any]:
        return stats.summary(list(values))

    scenario = {
        "requests_per_s": s(1000.0, 1100.0, 900.0),
        "p50_ms": s(2.0),
        "p99_ms": s(9.5),
        "cpu_us_per_request": s(420.0),
        "requests": 9,
        "errors": 0,
    }
    return {
        "started": "2026-11-21T00:00:00+00:00",
        "command": "python -m bench",
        "commit": "abc1234",
        "machine": {"cpu": "Test CPU", "cpus": 2},
        "quick": False,
        "load_before": 0.1,
        "load_after": 0.2,
        "sections": {
            "serving": {
                "settings": {
                    "seconds": 8,
                    "warmup": 2,
                    "repetitions": 3,
                    "connections": 32,
                    "workers": 1,
                    "server_cpus": "0",
                    "client_cpus": "1",
                    "server_env": {},
                },
                "scenarios": {"hello": "bare hello-world", "cached": "item read, cache hit (Redis)"},
                "ratios": {"template_overhead": "cached read ÷ bare hello-world"},
                "frameworks": {
                    "fastapi": {
                        "scenarios": {"hello": scenario, "cached": {**scenario, "errors": 4}},
                        "ratios": {"template_overhead": s(0.5, 0.6, 0.4)},
                    },
                    "flask": {"error": "the server exited 3\nTraceback"},
                },
            },
            "render": {
                "frameworks": {"fastapi": {"in_process": s(1.0, 1.2), "cli": s(2.0)}},
                "all": {"renders": 2, "seconds": 2.5, "each": s(1.0, 1.5)},
            },
            "matrix": {
                "select": None,
                "workers": 2,
                "wall": 100.0,
                "combinations": 2,
                "phases": {"environment": 10.0, "rendering": 30.0, "static checks": 60.0, "generated tests": 100.0},
                "outcomes": {"passed": 18},
            },
            "first-request": {
                "frameworks": {
                    "fastapi": {"total": s(9.0), "phases": {"copy": s(4.0), "sync": s(2.0), "serve": s(3.0)}},
                }
            },
            "bookkeeping": {
                "framework": "starlette",
                "calls": 1000,
                "modes": {"multiprocess": {"shipped": s(6.0, 7.0), "labelled": s(12.0, 13.0), "ratio": s(0.5, 0.6)}},
            },
            "verification": {
                "framework": "fastapi",
                "calls": 100,
                "new": s(80.0, 90.0),
                "repeated": s(0.5),
                "ratio": s(0.006),
            },
        },
    }


def test_markdown_has_a_row_per_measurement_with_spread_ratio_and_failure() -> None:
    text = report.markdown(fake_results())
    assert "| fastapi | bare hello-world | 1,000 (900–1,100) | 2.00 | 9.50 | 420 |  |" in text
    assert "| fastapi | item read, cache hit (Redis) | 1,000 (900–1,100) | 2.00 | 9.50 | 420 | 4 |" in text
    assert "| fastapi | 0.50× (0.40×–0.60×) |" in text
    assert "| flask | failed | the server exited 3 |" in text
    assert "| fastapi | 1.10 (1.00–1.20) | 2.00 |" in text
    assert "| generated tests | 100 | 50% |" in text
    assert "| fastapi | 9.00 | 4.00 | 2.00 | 3.00 |" in text
    assert "| multiprocess | 6.5 (6.0–7.0) | 12.5 (12.0–13.0) | 0.55× (0.50×–0.60×) |" in text
    assert "| fastapi | 85.0 (80.0–90.0) | 0.50 | 0.01× |" in text


def test_the_bookkeeping_script_uses_what_the_metrics_module_defines() -> None:
    """bench/bookkeeping.py times the service's own functions; a rename there must fail here."""
    source = (harness.REPO / "template" / "src" / "{{ package_name }}" / "metrics.py.jinja").read_text()
    used = set(re.findall(r"metrics\.(\w+)", bookkeeping.SCRIPT))
    assert used == {
        "request_started",
        "request_finished",
        "method_label",
        "ACTIVE_REQUESTS",
        "REQUEST_DURATION",
        "route_template",
    }
    for name in used:
        assert re.search(rf"^(def {name}\(|{name} = )", source, re.MULTILINE), name


def test_results_are_written_as_json_markdown_and_a_plot(tmp_path: Path) -> None:
    results = fake_results()
    report.write(results, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert (tmp_path / "results.md").read_text().startswith("# Benchmark results")
    assert (tmp_path / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_publishing_replaces_only_the_marked_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "performance.md"
    page.write_text(f"# Performance\n\nReasoning stays.\n\n{report.BEGIN}\nold table\n{report.END}\n\nAfter.\n")
    monkeypatch.setattr(report, "DOCS_ASSETS", tmp_path / "assets")
    results = fake_results()
    report.write(results, tmp_path / "out")
    report.publish(results, tmp_path / "out", page)
    text = page.read_text()
    assert "old table" not in text and "Reasoning stays." in text and text.endswith("After.\n")
    assert "### Serving" in text and "1,000 (900–1,100)" in text
    assert (tmp_path / "assets" / "throughput.png").exists()


def test_the_cache_grace_is_read_from_the_services_own_cache_module() -> None:
    """The serving benchmark waits out the grace the template writes, whatever value it has.

    One cache module per flavour: the async source and its sync twin, which Flask and Django share.
    """
    modules = sorted((harness.REPO / "template" / "src").glob("*/{% if cache_aside %}cache.py{% endif %}.jinja"))
    assert [module.parent.name for module in modules] == [
        "{% if io == 'sync' %}{{ package_name }}{% endif %}",
        "{% if stack == 'async' %}{{ package_name }}{% endif %}",
    ]
    for module in modules:
        assert serving.invalidation_grace(module.read_text()) > 0


def test_the_provider_serves_the_keys_its_tokens_are_signed_with() -> None:
    """What a service with auth=oidc does with the harness's provider: discover, fetch, verify."""
    with harness.Provider(audience="orders-api") as provider:
        _, discovery = harness.http_get(f"{provider.issuer}/.well-known/openid-configuration")
        _, certs = harness.http_get(json.loads(discovery)["jwks_uri"])
        (key,) = json.loads(certs)["keys"]
        token = provider.headers()["Authorization"].removeprefix("Bearer ")
        claims = jwt.decode(
            token, jwt.PyJWK(key).key, algorithms=["RS256"], audience="orders-api", issuer=provider.issuer
        )
    assert claims["scope"] == "items:read items:write"
    assert provider.settings["OIDC_ISSUER"] == provider.issuer


def test_the_scenarios_asked_for_are_the_ones_measured() -> None:
    every = harness.Config(frameworks=[], sections=["serving"], workdir=Path("."))
    assert [s.key for s in serving.selected(every)] == [s.key for s in serving.SCENARIOS]
    some = harness.Config(frameworks=[], sections=["serving"], workdir=Path("."), scenarios=["cached", "authenticated"])
    assert [s.key for s in serving.selected(some)] == ["cached", "authenticated"]


def test_the_verification_script_uses_what_the_auth_module_defines() -> None:
    """bench/verification.py drives the service's own Verifier; a rename there must fail here."""
    auth = harness.REPO / "template" / "src" / "{{ package_name }}" / "{% if auth == 'oidc' %}auth.py{% endif %}.jinja"
    source = auth.read_text()
    (imported,) = re.findall(r"from \{package\}\.auth import (.+)", verification.SCRIPT)
    for name in imported.split(", "):
        assert re.search(rf"^class {name}\b", source, re.MULTILINE), name
    for keyword in ("ttl", "refresh_interval", "issuer", "audience", "algorithms", "leeway"):
        assert f"{keyword}: " in source, keyword
