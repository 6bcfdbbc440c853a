"""Print the supported option combinations as a CI matrix.

    uv run python -m extensions.matrix --format github --full
    uv run python -m extensions.matrix --format gitlab --pairwise --framework flask
    uv run python -m extensions.matrix --format json --database postgresql,sqlite

The combinations come from the rule functions in ``options.py`` (``covering_renders`` for
``--full``, ``pairwise_combinations`` for ``--pairwise``), the same ones copier.yml's validators
and the template's tests use, so the matrix never offers a combination the template refuses.
Every option of the model gets a filter flag of its own; a filter takes one value, several
comma-separated values, or is repeated. Standard library only: CI can run it with any Python.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from extensions import options

#: GitHub Actions runs at most this many jobs from one matrix.
GITHUB_MAX_JOBS = 256
#: GitLab CI creates at most this many jobs from one parallel:matrix.
GITLAB_MAX_JOBS = 200
OPTIONS: tuple[str, ...] = options.RUNTIME_OPTIONS + options.STATIC_OPTIONS


class MatrixError(ValueError):
    """A request the matrix cannot answer; the message says why and what to do."""


def combinations(mode: str = "full", **filters: Any) -> list[dict[str, Any]]:
    """The combinations to test, as full answer sets.

    ``full``: what the template's tests render, every combination of interacting values
    (``options.INTERACTIONS``) with every pair of values of all the options. ``pairwise``: a small set in which every pair of values appears.
    """
    chosen = options.covering_renders(**filters) if mode == "full" else options.pairwise_combinations(**filters)
    if not chosen:
        raise MatrixError("no supported combination matches these filters")
    return chosen


def name(combo: dict[str, Any]) -> str:
    """A job name: the runtime values, then the static ones (``docker`` / ``no-docker`` for flags)."""
    runtime = options.label(combo)
    static = [
        (q if combo[q] else f"no-{q}") if isinstance(combo[q], bool) else str(combo[q])
        for q in options.STATIC_OPTIONS
        if q in combo
    ]
    return f"{runtime} ({', '.join(static)})" if static else runtime


def shards(entries: Sequence[dict[str, Any]], max_jobs: int) -> list[list[dict[str, Any]]]:
    """Split ``entries`` into the fewest contiguous, evenly sized shards of at most ``max_jobs``."""
    count = max(1, math.ceil(len(entries) / max_jobs))
    size = math.ceil(len(entries) / count)
    return [list(entries[i : i + size]) for i in range(0, len(entries), size)]


def github(combos: Sequence[dict[str, Any]], max_jobs: int = GITHUB_MAX_JOBS) -> dict[str, Any]:
    """``{"shard": [matrix, ...]}``: each matrix a ``strategy.matrix`` of at most ``max_jobs`` jobs.

    The workflow runs a job per shard (itself a matrix) that calls a reusable workflow with
    its shard as the inner matrix, so the combinations can outgrow GitHub's per-matrix limit.
    Each inner job gets ``matrix.name`` and ``matrix.answers`` (the copier answers).
    """
    entries = [{"name": name(combo), "answers": combo} for combo in combos]
    return {"shard": [{"include": shard} for shard in shards(entries, max_jobs)]}


def gitlab(combos: Sequence[dict[str, Any]]) -> str:
    """A ``parallel:matrix`` block: one job per combination, the answers as variables.

    Variables take the options' names (lowercase, so ``ci`` does not clash with GitLab's ``CI``);
    flags become ``"true"`` / ``"false"``, since GitLab variables are strings.
    """
    if len(combos) > GITLAB_MAX_JOBS:
        raise MatrixError(
            f"{len(combos)} combinations exceed GitLab's {GITLAB_MAX_JOBS} jobs per parallel:matrix: "
            "narrow them with filters or use --pairwise"
        )
    lines = ["parallel:", "  matrix:"]
    for combo in combos:
        for index, (question, value) in enumerate(combo.items()):
            text = str(value).lower() if isinstance(value, bool) else str(value)
            lines.append(f"    {'-' if index == 0 else ' '} {question}: {json.dumps(text)}")
    return "\n".join(lines)


def _parse_value(question: str, text: str) -> Any:
    """The choice value a command-line word stands for (``yes``/``no`` for flags)."""
    for value in options.CHOICES[question]:
        if isinstance(value, bool):
            if text.lower() in ({"true", "yes", "1"} if value else {"false", "no", "0"}):
                return value
        elif text == str(value):
            return value
    error = options.answer_error(question, {question: text})
    if not error or isinstance(options.CHOICES[question][0], bool):
        allowed = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in options.CHOICES[question])
        error = f"{question} '{text}' is not supported: choose one of {allowed}."
    raise MatrixError(error)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m extensions.matrix",
        description="Print the supported option combinations as a CI matrix.",
    )
    parse.add_argument("--format", choices=("github", "gitlab", "json"), default="json")
    mode = parse.add_mutually_exclusive_group()
    mode.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="every combination of interacting values, and every pair of values (the default)",
    )
    mode.add_argument(
        "--pairwise", dest="mode", action="store_const", const="pairwise", help="every pair of values at least once"
    )
    parse.add_argument(
        "--max-jobs",
        type=int,
        default=GITHUB_MAX_JOBS,
        help=f"jobs per GitHub matrix before sharding (default {GITHUB_MAX_JOBS}, GitHub's limit)",
    )
    filters = parse.add_argument_group("filters", "keep only these values; repeat a flag or separate values by commas")
    for question in OPTIONS:
        values = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in options.CHOICES[question])
        filters.add_argument(
            f"--{question.replace('_', '-')}",
            dest=question,
            action="append",
            metavar="VALUE",
            help=values,
        )
    parse.set_defaults(mode="full")
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parse = parser()
    args = parse.parse_args(argv)
    if args.max_jobs < 1:
        parse.error("--max-jobs must be at least 1")
    try:
        filters = {
            question: tuple(_parse_value(question, text.strip()) for word in words for text in word.split(","))
            for question in OPTIONS
            if (words := getattr(args, question))
        }
        combos = combinations(args.mode, **filters)
        if args.format == "github":
            output = json.dumps(github(combos, args.max_jobs), separators=(",", ":"))
        elif args.format == "gitlab":
            output = gitlab(combos)
        else:
            output = json.dumps(combos, indent=2)
    except MatrixError as error:
        parse.exit(2, f"{parse.prog}: error: {error}\n")
    sys.stdout.write(output + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
