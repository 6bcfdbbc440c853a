"""servicecraft's benchmark harness: ``uv run python -m bench --help`` (see docs/performance.md)."""
