"""Generate the synchronous data layer from the asynchronous one.

The async modules under ``template/src/{% if stack == 'async' %}…`` are the only hand-written
copies of the data layer. This script rewrites each of them into its synchronous twin, which
Flask (and, for the cache and the readiness checks, Django) renders. The generated files are
checked in, so a reviewer sees the sync code that ships, and start with a Jinja comment (it
renders to nothing) saying where they come from.

Two mechanisms, applied in this order:

* Marked blocks, for what really differs. In the async source, a line holding only
  ``{# unasync: async #}`` starts lines that the sync twin leaves out, up to a line holding only
  ``{# unasync: end #}`` (nothing replaces them) or only ``{# unasync: sync`` (what replaces them
  follows, inside that Jinja comment, up to a line holding only ``#}``). ``{# unasync: sync``
  with no async block before it inserts lines. Jinja drops the comments, so the async render
  never sees the sync lines.
* Rewriting rules (``RULES``), regular expressions applied line by line to the rest: ``async
  def`` to ``def``, ``await`` dropped, the async names of asyncio, SQLAlchemy and redis-py to
  their sync names.

``--check`` writes nothing and fails when a generated file is stale or a rule matched nowhere
(a rule nobody needs is a rule nobody tests). The template's tests run it.

    uv run python scripts/unasync.py            # regenerate
    uv run python scripts/unasync.py --check    # verify, as the tests do
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "template" / "src"
ASYNC = SRC / "{% if stack == 'async' %}{{ package_name }}{% endif %}"
#: Flask's data layer.
SYNC = SRC / "{% if stack == 'sync' %}{{ package_name }}{% endif %}"
#: What every synchronous framework shares (Flask and Django): cache-aside.
SYNC_IO = SRC / "{% if io == 'sync' %}{{ package_name }}{% endif %}"
#: The generated service's tests: their direct access to the data layer.
TESTS = REPO / "template" / "tests"
MIGRATIONS = REPO / "template" / "{% if database != 'none' and stack != 'django' %}migrations{% endif %}"

CACHE = "{% if cache_aside %}cache.py{% endif %}.jinja"


def _when(condition: str, name: str) -> str:
    """A file name that renders only when the Jinja ``condition`` holds."""
    return f"{{% if {condition} %}}{name}{{% endif %}}.jinja"


#: (async source, generated sync file).
FILES: tuple[tuple[Path, Path], ...] = (
    *((ASYNC / name, SYNC / name) for name in ("items.py.jinja", "health.py.jinja")),
    *(
        (ASYNC / _when(condition, name), SYNC / _when(condition, name))
        for condition, name in (
            ("database != 'none'", "resources.py"),
            ("database == 'none'", "resources.py"),
            ("database != 'none'", "db.py"),
            ("database != 'none'", "store.py"),
            ("database == 'none'", "store.py"),
            ("cache_aside", "cache_backends.py"),
            ("cache == 'redis'", "redis_client.py"),
            ("task_queue == 'celery'", "tasks.py"),
        )
    ),
    (ASYNC / CACHE, SYNC_IO / CACHE),
    (ASYNC / "ratelimit.py.jinja", SYNC_IO / "ratelimit.py.jinja"),
    (TESTS / _when("stack == 'async'", "data_layer.py"), TESTS / _when("stack == 'sync'", "data_layer.py")),
    (
        TESTS / _when("stack == 'async' and database != 'none'", "run_database.py"),
        TESTS / _when("stack == 'sync' and database != 'none'", "run_database.py"),
    ),
    (MIGRATIONS / _when("stack == 'async'", "env.py"), MIGRATIONS / _when("stack == 'sync'", "env.py")),
)


@dataclass
class Rule:
    """One rewriting: ``pattern`` (a regular expression) becomes ``replacement`` on a line."""

    pattern: str
    replacement: str

    def __post_init__(self) -> None:
        self.regex = re.compile(self.pattern)


RULES: tuple[Rule, ...] = (
    # The language.
    Rule(r"\basync def\b", "def"),
    Rule(r"\basync with\b", "with"),
    # An async connection runs sync code with run_sync(fn); a sync one is passed to it.
    Rule(r"\bawait (\w+)\.run_sync\((\w+)\)", r"\2(\1)"),
    Rule(r"\bawait ", ""),
    Rule(r"\b__aenter__\b", "__enter__"),
    Rule(r"\b__aexit__\b", "__exit__"),
    # The standard library: asyncio.run(call(...)) is the call itself; asyncio.sleep is time.sleep.
    Rule(r"\basyncio\.run\((.*)\)$", r"\1"),
    Rule(r"\basyncio\.sleep\(", "time.sleep("),
    Rule(r"\bAsyncIterator\b", "Iterator"),
    Rule(r"\basynccontextmanager\b", "contextmanager"),
    Rule(r"\bAwaitable\[([^\[\]]*)\]", r"\1"),
    Rule(r"\bAwaitable, ", ""),
    # redis-py.
    Rule(r"\bredis\.asyncio\b", "redis"),
    Rule(r"\baclose\b", "close"),
    # SQLAlchemy.
    Rule(r"\bsqlalchemy\.ext\.asyncio\.create_async_engine\b", "sqlalchemy.create_engine"),
    Rule(r"\b(\w+)\.sync_engine\b", r"\1"),
    Rule(r"\bAsyncEngine\b", "Engine"),
    Rule(r"\bAsyncAdaptedQueuePool\b", "QueuePool"),
    Rule(r"\bAsyncSession\b", "Session"),
    Rule(r"\basync_sessionmaker\b", "sessionmaker"),
    Rule(r"\bsqlalchemy\.ext\.asyncio import\b", "sqlalchemy.orm import"),
    # Words in docstrings and comments.
    Rule(r"\bThe async SQLAlchemy engine\b", "The SQLAlchemy engine"),
)

ASYNC_BLOCK = re.compile(r"^\s*\{# unasync: async #\}\s*$")
END_BLOCK = re.compile(r"^\s*\{# unasync: end #\}\s*$")
SYNC_BLOCK = re.compile(r"^\s*\{# unasync: sync\s*$")
END_COMMENT = re.compile(r"^\s*#\}\s*$")


class MarkerError(ValueError):
    """A marked block that is not closed, or closed where none is open."""


def header(source: Path) -> str:
    relative = source.relative_to(REPO).as_posix()
    *folders, name = (re.sub(r"\{%.*?%\}", "", part) for part in relative.split("/"))
    kind = "migrations'" if "migrations" in folders else "tests'" if "tests" in folders else "async data layer's"
    return (
        f"{{# Generated from the {kind} {name.removesuffix('.jinja')} by `uv run python scripts/unasync.py`. DO NOT EDIT:\n"
        "   change the async source and run the script again. #}\n"
    )


def unasync(text: str, source: Path, used: dict[str, int]) -> str:
    """The sync twin of one async source: marked blocks resolved, then the rules applied."""
    out: list[str] = []
    state = "both"  # "both", "async" (left out) or "sync" (taken as written)
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        where = f"{source.name}:{number}"
        if ASYNC_BLOCK.match(line):
            if state != "both":
                raise MarkerError(f"{where}: an async block opens inside another block")
            state = "async"
        elif END_BLOCK.match(line):
            if state != "async":
                raise MarkerError(f"{where}: 'end' closes no async block")
            state = "both"
        elif SYNC_BLOCK.match(line):
            if state == "sync":
                raise MarkerError(f"{where}: a sync block opens inside another")
            state = "sync"
        elif state == "sync" and END_COMMENT.match(line):
            state = "both"
        elif state == "sync":
            out.append(line)
        elif state == "both":
            for rule in RULES:
                line, count = rule.regex.subn(rule.replacement, line)
                used[rule.pattern] += count
            out.append(line)
    if state != "both":
        raise MarkerError(f"{source.name}: a {state} block is never closed")
    return header(source) + "".join(out)


def generate() -> tuple[dict[Path, str], list[str]]:
    """Every generated file's text, and the rules no source needed."""
    used = dict.fromkeys((rule.pattern for rule in RULES), 0)
    generated = {target: unasync(source.read_text(), source, used) for source, target in FILES}
    return generated, [pattern for pattern, count in used.items() if count == 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale or a rule unused")
    args = parser.parse_args(argv)
    generated, unused = generate()
    stale = [target for target, text in generated.items() if not target.is_file() or target.read_text() != text]
    if args.check:
        for target in stale:
            print(f"stale: {target.relative_to(REPO)}", file=sys.stderr)
        for pattern in unused:
            print(f"unused rule: {pattern}", file=sys.stderr)
        if stale:
            print("run `uv run python scripts/unasync.py` and commit the result", file=sys.stderr)
        return 1 if stale or unused else 0
    if unused:
        for pattern in unused:
            print(f"unused rule: {pattern}", file=sys.stderr)
        return 1
    for target in stale:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(generated[target])
        print(f"wrote {target.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
