"""The template's files hold little branching: scripts/template_stats.py's targets, asserted."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import template_stats


def test_the_median_conditional_file_has_at_most_three_tags() -> None:
    stats = template_stats.measure()
    assert stats.median <= template_stats.MEDIAN_TARGET, template_stats.report(stats)


def test_no_file_has_more_than_fifteen_tags() -> None:
    stats = template_stats.measure()
    assert not stats.heavy_files, template_stats.report(stats)


def test_no_line_of_template_code_is_over_120_characters() -> None:
    stats = template_stats.measure()
    assert not stats.long_lines, template_stats.report(stats)


def test_tags_are_counted_as_the_docstring_says() -> None:
    text = "{% if a %}x{% elif b %}{%- for c in d %}{% endfor %}{% else %}{% endif %}{{ e if f else g }}"
    assert len(template_stats.TAG.findall(text)) == 3
