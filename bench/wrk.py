"""The load generator: wrk's command line and the parsing of its report.

wrk (Debian's ``wrk`` package) is one C process driving many keep-alive connections from an
event loop, so one thread on one core saturates a Python server on the other without
starving it, which a Python load generator would not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

INSTALL_HINT = "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_DURATION = r"([\d.]+)(us|ms|s|m)"


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles, and whatever went wrong."""

    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    #: Responses outside 2xx/3xx plus socket errors (connect, read, write, timeout).
    errors: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse(output: str) -> WrkResult:
    """Read wrk's text report (run with ``--latency``); raises ValueError if it is not one."""
    total = re.search(r"(\d+) requests in " + _DURATION, output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+" + _DURATION, output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+" + _DURATION, output, re.MULTILINE)
    if not (total and rate and p50 and p99):
        raise ValueError(f"not a wrk --latency report:\n{output}")
    errors = 0
    if non_2xx := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        errors += int(non_2xx.group(1))
    if socket := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(n) for n in socket.groups())
    return WrkResult(
        requests=int(total.group(1)),
        seconds=_ms(total.group(2), total.group(3)) / 1000,
        requests_per_s=float(rate.group(1)),
        p50_ms=_ms(*p50.groups()),
        p99_ms=_ms(*p99.groups()),
        errors=errors,
    )


def command(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    cpus: str | None = None,
) -> list[str]:
    """The wrk command line, pinned to ``cpus`` with taskset when given."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, **options: Any) -> WrkResult:
    cmd = command(url, **options)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=options["seconds"] + 60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return parse(result.stdout)
