"""The one command: ``uv run python -m bench`` measures everything and writes bench/results/.

Sections (``--sections``): ``render`` (copier in-process and on the command line, per
framework, and the whole combination set), ``matrix`` (the template's test_generated.py, with
its time split into environment setup, rendering, static checks and generated tests),
``first-request`` (``copier copy --defaults`` to the first 200 from /healthz), ``serving`` (the
production command under wrk, against the bare framework), ``bookkeeping`` (the request
metrics' updates timed in-process) and ``verification`` (a bearer token's check, in-process). ``--quick`` shortens every measurement and repeats none: to
check the harness, not to quote.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness, report
from bench.harness import Config

SECTIONS = ("render", "matrix", "first-request", "serving", "bookkeeping", "verification")
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short measurements, one repetition, a smoke subset of the matrix"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        metavar="SECTION",
        help=f"any of {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--frameworks", nargs="+", metavar="NAME", help="default: every implemented framework")
    parser.add_argument("--scenarios", nargs="+", metavar="NAME", help="serving scenarios (default: all)")
    parser.add_argument("--repetitions", type=int, help="repetitions of each measurement (default 3, --quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds of load per serving measurement (default 8, --quick 2)")
    parser.add_argument("--warmup", type=float, help="seconds of discarded load before each (default 2, --quick 1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--workers", type=int, default=1, help="WEB_CONCURRENCY of the served processes (default 1)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for servers ('' for none; default 0)")
    parser.add_argument("--client-cpus", default="1", help="taskset CPU list for wrk ('' for none; default 1)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the served processes, e.g. ACCESS_LOG=false",
    )
    parser.add_argument(
        "--matrix-select",
        metavar="EXPR",
        help="pytest -k expression for the matrix (default: all; --quick: one combination per framework)",
    )
    parser.add_argument(
        "--matrix-workers", type=int, default=2, help="xdist workers for the matrix (default 2, as `uv run pytest`)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help=f"where results.md, results.json and throughput.png go (default {RESULTS.relative_to(harness.REPO)})",
    )
    parser.add_argument(
        "--publish", action="store_true", help="also put the tables in docs/performance.md and the plot beside it"
    )
    parser.add_argument(
        "--wait-for-quiet",
        type=float,
        default=0,
        metavar="MINUTES",
        help="first wait up to this long for the 1-minute load to fall below 0.7",
    )
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace, workdir: Path) -> Config:
    implemented = harness.implemented_frameworks()
    frameworks = args.frameworks or implemented
    unknown = [f for f in frameworks if f not in implemented]
    if unknown:
        raise SystemExit(f"not implemented frameworks: {', '.join(unknown)} (implemented: {', '.join(implemented)})")
    env = dict(item.split("=", 1) for item in args.env)
    return Config(
        frameworks=frameworks,
        sections=args.sections,
        workdir=workdir,
        repetitions=args.repetitions or (1 if args.quick else 3),
        seconds=args.seconds or (2 if args.quick else 8),
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
        connections=args.connections,
        workers=args.workers,
        server_cpus=args.server_cpus or None if (os.cpu_count() or 1) > 1 else None,
        client_cpus=args.client_cpus or None if (os.cpu_count() or 1) > 1 else None,
        scenarios=args.scenarios or [],
        server_env=env,
        matrix_select=args.matrix_select,
        matrix_workers=args.matrix_workers,
        quick=args.quick,
    )


def wait_for_quiet(minutes: float, threshold: float = 0.7) -> None:
    deadline = time.monotonic() + minutes * 60
    while (load := harness.load_average()) > threshold and time.monotonic() < deadline:
        print(f"load {load:.2f} > {threshold}: waiting", flush=True)
        time.sleep(30)


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    return {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()}


def commit() -> str:
    """The checkout's commit, marked when the working tree has changes (read-only git calls)."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=harness.REPO, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return f"{head}+changes" if head and git("status", "--porcelain") else head


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.wait_for_quiet:
        wait_for_quiet(args.wait_for_quiet)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    config = config_from(args, workdir)
    results: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "commit": commit(),
        "machine": machine(),
        "quick": args.quick,
        "load_before": harness.load_average(),
        "sections": {},
    }
    started = time.perf_counter()
    try:
        for section in config.sections:
            module = importlib.import_module(f"bench.{section.replace('-', '_')}")
            results["sections"][section] = module.measure(config)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_after"] = harness.load_average()
    results["seconds"] = round(time.perf_counter() - started, 1)
    report.write(results, args.output)
    if args.publish:
        report.publish(results, args.output)
    print(f"results in {args.output} ({results['seconds']:.0f} s)")
    return 0
