"""Where the suite's time goes: a pytest plugin that adds up each test's setup, call and teardown.

At the end of a run it prints the time per test file and per rendered combination (the test id's
bracketed part in ``tests/test_generated.py``, where one xdist group is one combination), and
writes every test's time to ``.cache/test-times.json`` so that two runs can be compared. Times
are summed over both xdist workers, so the wall-clock time is about half their total.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

#: How many of the slowest combinations and tests the summary names.
SHOWN = 12


class Timings:
    def __init__(self, output: Path) -> None:
        self.output = output
        self.tests: dict[str, float] = defaultdict(float)

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        test_id = report.nodeid
        if "]@" in test_id:  # xdist's loadgroup adds "@<group>" to the id of a grouped test
            test_id = test_id.split("]@", 1)[0] + "]"
        self.tests[test_id] += report.duration

    def by(self, key: str) -> dict[str, float]:
        """Seconds per file (``key="file"``) or per combination of tests/test_generated.py."""
        totals: dict[str, float] = defaultdict(float)
        for nodeid, seconds in self.tests.items():
            path = nodeid.split("::", 1)[0]
            if key == "file":
                totals[path] += seconds
            elif path.endswith("test_generated.py") and "[" in nodeid:
                totals[nodeid[nodeid.index("[") + 1 : -1]] += seconds
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.tests:
            return
        write = terminalreporter.write_line
        terminalreporter.section("time per file and per combination (summed over workers)")
        total = sum(self.tests.values())
        for path, seconds in self.by("file").items():
            write(f"{seconds:8.0f} s {seconds / total:6.1%}  {path}")
        combos = self.by("combination")
        if combos:
            values = list(combos.values())
            write(
                f"{len(values)} combinations: {sum(values):.0f} s in all, median {statistics.median(values):.0f} s,"
                f" slowest {values[0]:.0f} s; the {min(SHOWN, len(values))} slowest:"
            )
            for combo, seconds in list(combos.items())[:SHOWN]:
                write(f"{seconds:8.0f} s  {combo}")
        write(f"the {SHOWN} slowest tests:")
        for nodeid, seconds in sorted(self.tests.items(), key=lambda item: -item[1])[:SHOWN]:
            write(f"{seconds:8.0f} s  {nodeid}")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text(json.dumps(dict(sorted(self.tests.items())), indent=1) + "\n")
        write(f"every test's time: {self.output}")


def pytest_configure(config: pytest.Config) -> None:
    # xdist's workers send their reports to the controller, which adds them up once.
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Timings(config.rootpath / ".cache" / "test-times.json"), "servicecraft-timings")
