"""Results as Markdown tables, JSON and a throughput plot."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import harness

DOCS_PAGE = harness.REPO / "docs" / "performance.md"
DOCS_ASSETS = harness.REPO / "docs" / "performance"
BEGIN, END = "<!-- bench:results -->", "<!-- /bench:results -->"


def spread(summary: dict[str, Any] | None, fmt: str = "{:,.0f}", scale: float = 1) -> str:
    """``median (min–max)``, or just the median when there was one measurement."""
    if not summary:
        return "–"
    median, low, high = (summary[k] * scale for k in ("median", "min", "max"))
    if len(summary["runs"]) == 1:
        return fmt.format(median)
    return f"{fmt.format(median)} ({fmt.format(low)}–{fmt.format(high)})"


def seconds(summary: dict[str, Any] | None) -> str:
    return spread(summary, "{:.2f}")


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def serving_markdown(section: dict[str, Any]) -> str:
    settings = section["settings"]
    pinning = (
        f"server on CPU {settings['server_cpus']}, wrk on CPU {settings['client_cpus']}"
        if settings["server_cpus"]
        else "no CPU pinning"
    )
    intro = (
        f"wrk, 1 thread, {settings['connections']} connections, {settings['seconds']:g} s per measurement after "
        f"{settings['warmup']:g} s of warm-up, {settings['repetitions']} repetition(s): median (min–max). "
        f"{settings['workers']} worker(s) per server, {pinning}. Server CPU is the user and system time of the "
        "server's processes over the measurement, divided by the requests served: less sensitive to the "
        "machine's other load than throughput."
    )
    if settings.get("server_env"):
        intro += " Extra environment: " + ", ".join(f"`{k}={v}`" for k, v in settings["server_env"].items()) + "."
    rows, ratio_rows = [], []
    for framework, outcome in section["frameworks"].items():
        if "error" in outcome:
            rows.append([framework, "failed", outcome["error"].splitlines()[0][:120], "", "", "", ""])
            continue
        for key, result in outcome["scenarios"].items():
            errors = f"{result['errors']:,}" if result["errors"] else ""
            rows.append(
                [
                    framework,
                    section["scenarios"][key],
                    spread(result["requests_per_s"]),
                    spread(result["p50_ms"], "{:.2f}"),
                    spread(result["p99_ms"], "{:.2f}"),
                    spread(result.get("cpu_us_per_request")),
                    errors,
                ]
            )
        ratio_rows.append([framework, *(ratio(outcome["ratios"].get(name)) for name in section["ratios"])])
    parts = [
        intro,
        table(["framework", "scenario", "req/s", "p50 ms", "p99 ms", "server CPU µs/req", "errors"], rows),
    ]
    if ratio_rows:
        parts += [
            "Ratios of throughput, each taken between neighbouring measurements of one repetition:",
            table(["framework", *section["ratios"].values()], ratio_rows),
        ]
    return "\n\n".join(parts)


def ratio(summary: dict[str, Any] | None) -> str:
    return spread(summary, "{:.2f}×")


def render_markdown(section: dict[str, Any]) -> str:
    rows = [
        [framework, seconds(timing.get("in_process")), seconds(timing.get("cli"))]
        for framework, timing in section["frameworks"].items()
    ]
    parts = [
        (
            "Seconds to render one combination (PostgreSQL, Redis, Celery on Redis) from the checkout: "
            "`copier.run_copy` in this process, and the `copier copy` command line (a new process: "
            "interpreter start, imports, then the same work)."
        ),
        table(["framework", "in-process s", "`copier copy` s"], rows),
    ]
    if whole := section.get("all"):
        parts.append(
            f"The whole combination set (`options.covering_renders()`, {whole['renders']} renders), one after "
            f"another in-process: {whole['seconds']:.0f} s; per render {seconds(whole['each'])} s."
        )
    return "\n\n".join(parts)


def first_request_markdown(section: dict[str, Any]) -> str:
    rows = []
    for framework, outcome in section["frameworks"].items():
        if "error" in outcome:
            rows.append([framework, "failed: " + outcome["error"].splitlines()[0][:100], "", "", ""])
            continue
        phases = outcome["phases"]
        rows.append(
            [
                framework,
                seconds(outcome["total"]),
                seconds(phases["copy"]),
                seconds(phases["sync"]),
                seconds(phases["serve"]),
            ]
        )
    return "\n\n".join(
        [
            (
                "Seconds from `copier copy --defaults` to the first 200 from `/healthz`: the copy, `uv sync` "
                "(uv's cache warm), and `make run`'s development server started until it answers."
            ),
            table(["framework", "total s", "copy s", "uv sync s", "start → 200 s"], rows),
        ]
    )


def matrix_markdown(section: dict[str, Any]) -> str:
    phases = section["phases"]
    summed = sum(phases.values()) or 1
    rows = [[name, f"{value:,.0f}", f"{value / summed:.0%}"] for name, value in phases.items()]
    outcome = ", ".join(f"{count} {name}" for name, count in section["outcomes"].items())
    selection = f"`-k {section['select']}`" if section.get("select") else "every combination"
    return "\n\n".join(
        [
            (
                f"`pytest tests/test_generated.py` ({selection}: {section['combinations']} combinations, "
                f"{section['workers']} xdist workers): {section['wall']:,.0f} s of wall time; {outcome}."
            ),
            "Where the time goes, summed over the workers:",
            table(["phase", "s", "share"], rows),
        ]
    )


def bookkeeping_markdown(section: dict[str, Any]) -> str:
    rows = [
        [
            mode,
            spread(outcome["shipped"], "{:.1f}"),
            spread(outcome["labelled"], "{:.1f}"),
            ratio(outcome["ratio"]),
        ]
        for mode, outcome in section["modes"].items()
    ]
    return "\n\n".join(
        [
            (
                f"µs per request of the request metrics' bookkeeping in-process ({section['framework']}'s "
                f"`metrics.py`, {section['calls']:,} calls per measurement): the in-flight gauge up and down and "
                "the duration histogram's observation, as shipped (each labelled series found once) and "
                "through `labels()` on every request; values in memory, and in multiprocess mode as production "
                "runs them."
            ),
            table(["values", "shipped µs", "`labels()` per request µs", "shipped ÷ `labels()`"], rows),
        ]
    )


def verification_markdown(section: dict[str, Any]) -> str:
    rows = [
        [
            section["framework"],
            spread(section["new"], "{:.1f}"),
            spread(section["repeated"], "{:.2f}"),
            ratio(section["ratio"]),
        ]
    ]
    return "\n\n".join(
        [
            (
                f"µs per bearer token checked in-process (`auth.Verifier` of a service with `auth=oidc`, RS256, "
                f"{section['calls']:,} tokens per measurement): a new token (header, signature and claims), and a "
                "token seen before (remembered until it expires)."
            ),
            table(["framework", "new token µs", "repeated token µs", "repeated ÷ new"], rows),
        ]
    )


SECTIONS = {
    "render": ("Rendering", render_markdown),
    "matrix": ("Test matrix", matrix_markdown),
    "first-request": ("Time to first request", first_request_markdown),
    "serving": ("Serving", serving_markdown),
    "bookkeeping": ("Request metrics in-process", bookkeeping_markdown),
    "verification": ("Bearer tokens in-process", verification_markdown),
}


def markdown(results: dict[str, Any], heading: str = "##") -> str:
    machine = results["machine"]
    parts = [
        f"Measured {results['started']} on {machine['cpus']} × {machine['cpu']} at commit `{results['commit']}` "
        f"with `{results['command']}`; 1-minute load {results['load_before']:.2f} before, "
        f"{results['load_after']:.2f} after." + (" **Quick run: not for quoting.**" if results.get("quick") else "")
    ]
    for name, section in results["sections"].items():
        title, render = SECTIONS[name]
        parts.append(f"{heading} {title}\n\n{render(section)}")
    return "\n\n".join(parts) + "\n"


def plot(results: dict[str, Any], path: Path) -> bool:
    """Throughput per framework and scenario, medians with min–max bars; False without data."""
    section = results["sections"].get("serving")
    frameworks = [f for f, outcome in (section or {}).get("frameworks", {}).items() if "scenarios" in outcome]
    if not frameworks:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in section["scenarios"] if any(k in section["frameworks"][f]["scenarios"] for f in frameworks)]
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(frameworks) + 3), 6), dpi=120)
    for i, key in enumerate(keys):
        medians, low, high = [], [], []
        for framework in frameworks:
            summary = section["frameworks"][framework]["scenarios"].get(key, {}).get("requests_per_s")
            median = summary["median"] if summary else 0
            medians.append(median)
            low.append(median - summary["min"] if summary else 0)
            high.append(summary["max"] - median if summary else 0)
        positions = [j - 0.4 + width * (i + 0.5) for j in range(len(frameworks))]
        ax.bar(positions, medians, width, yerr=[low, high], capsize=2, label=section["scenarios"][key])
    ax.set_xticks(range(len(frameworks)), frameworks)
    # Log scale: the scenarios span two orders of magnitude, and equal ratios read as equal gaps.
    ax.set_yscale("log")
    ax.set_ylabel("requests per second (median, min–max; log scale)")
    settings = section["settings"]
    ax.set_title(
        f"Throughput: {settings['workers']} worker(s) on one core, wrk {settings['connections']} connections "
        f"({results['started'][:10]})"
    )
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, frameon=False)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write(results: dict[str, Any], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / "results.md").write_text("# Benchmark results\n\n" + markdown(results))
    plot(results, output / "throughput.png")


def publish(results: dict[str, Any], output: Path, page: Path = DOCS_PAGE) -> None:
    """Replace the tables between the markers in docs/performance.md; the plot and JSON beside it."""
    text = page.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{page} has no {BEGIN} … {END} block to fill")
    block = f"{BEGIN}\n{markdown(results, heading='###')}{END}"
    page.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.DOTALL))
    DOCS_ASSETS.mkdir(exist_ok=True)
    for name in ("throughput.png", "results.json"):
        if (output / name).exists():
            shutil.copy(output / name, DOCS_ASSETS / name)
