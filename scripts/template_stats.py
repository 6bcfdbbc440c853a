"""How much branching the template's files carry: the numbers issue 10 holds the template to.

What counts:

- a *tag* is an opening ``{% if``, ``{% elif`` or ``{% for`` tag, with or without the ``-``
  whitespace control (``{%- if``); ``else``, ``endif``, ``endfor``, ``macro``, ``set`` and
  inline ``{{ a if b else c }}`` expressions are not tags;
- a *conditional file* is a file under ``template/`` with at least one tag in its text; the
  names of files and folders are not counted (they are the branching the template prefers);
- a *long line* is a line over 120 characters in any file under ``template/`` except Markdown
  (``.md`` and ``.md.jinja``), where prose may run on.

The targets: the median of tags per conditional file at most 3, no file above 15 tags, no long
line. ``tests/test_template_stats.py`` asserts them. Run as
``uv run python scripts/template_stats.py [--exclude GLOB ...]``; it prints the median, the
maximum and the files and lines over the targets, and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "template"
TAG = re.compile(r"\{%-?\s*(?:if|elif|for)\b")
MEDIAN_TARGET = 3
FILE_TARGET = 15
LINE_TARGET = 120


@dataclass
class Stats:
    """Tags per conditional file (by path relative to template/) and the long lines."""

    tags: dict[str, int] = field(default_factory=dict)
    long_lines: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.tags.values()) if self.tags else 0

    @property
    def maximum(self) -> int:
        return max(self.tags.values(), default=0)

    @property
    def heavy_files(self) -> dict[str, int]:
        return {path: n for path, n in self.tags.items() if n > FILE_TARGET}

    @property
    def ok(self) -> bool:
        return self.median <= MEDIAN_TARGET and not self.heavy_files and not self.long_lines


def is_markdown(path: Path) -> bool:
    return path.name.endswith((".md", ".md.jinja"))


def measure(root: Path = TEMPLATE, exclude: tuple[str, ...] = ()) -> Stats:
    """Count the tags and long lines of every text file under ``root``, except ``exclude`` globs."""
    stats = Stats()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = str(path.relative_to(root))
        if any(fnmatch.fnmatch(relative, pattern) for pattern in exclude):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if tags := len(TAG.findall(text)):
            stats.tags[relative] = tags
        if not is_markdown(path):
            stats.long_lines += [
                (relative, number, len(line))
                for number, line in enumerate(text.splitlines(), 1)
                if len(line) > LINE_TARGET
            ]
    return stats


def report(stats: Stats) -> str:
    lines = [
        f"conditional files: {len(stats.tags)}",
        f"median tags per conditional file: {stats.median:g} (target <= {MEDIAN_TARGET})",
        f"maximum tags in one file: {stats.maximum} (target <= {FILE_TARGET})",
        f"lines over {LINE_TARGET} characters: {len(stats.long_lines)}",
    ]
    lines += [f"  {n:3} tags  {path}" for path, n in sorted(stats.heavy_files.items(), key=lambda i: -i[1])]
    lines += [f"  {length:3} chars {path}:{number}" for path, number, length in stats.long_lines]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exclude", action="append", default=[], help="a glob of paths under template/ to leave out")
    parser.add_argument("--all", action="store_true", help="list every conditional file with its count")
    args = parser.parse_args(argv)
    stats = measure(exclude=tuple(args.exclude))
    print(report(stats))
    if args.all:
        for path, n in sorted(stats.tags.items(), key=lambda i: -i[1]):
            print(f"{n:3}  {path}")
    return 0 if stats.ok else 1


if __name__ == "__main__":
    sys.exit(main())
