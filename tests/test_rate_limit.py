"""Rate limiting across processes, against the machine's Redis, on every framework's production server.

Per framework (Django with each API layer), on SQLite and Redis: two production servers, each
its own process on its own port, share RATE_LIMIT through Redis. One client's requests,
alternating between them, are allowed RATE_LIMIT times in all, then refused with a 429 problem
and Retry-After by both. Behind a trusted proxy (X-Forwarded-For sent from 127.0.0.1, the
default TRUSTED_PROXIES), each forwarded client has its own budget, and what a client writes
in the header before its own address does not give it a new one.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from conftest import UV, python_for, render, require_service, run, uv_env, web_layer_params

from bench.harness import (
    PROXY_HEADERS,
    Server,
    free_port,
    http_get,
    migrate,
    on_loopback,
    production_command,
    production_env,
)

LIMIT = 4
ITEMS = "/api/v1/items"
CASES = web_layer_params("ratelimit")
ANSWERS = {"database": "sqlite", "cache": "redis", "task_queue": "none", "ci": "none", "docker": False}
#: Deletes the run's counters (argument: Redis URL, pattern) with the service's redis client.
PURGE = """import sys, redis
client = redis.Redis.from_url(sys.argv[1])
for key in client.scan_iter(match=sys.argv[2]):
    client.delete(key)
"""


def status_and_problem(url: str, forwarded_for: str | None = None) -> tuple[int, dict[str, Any] | None]:
    # As the TLS proxy sends it: Django's production settings redirect plain HTTP to HTTPS.
    headers = {**PROXY_HEADERS, **({"X-Forwarded-For": forwarded_for} if forwarded_for else {})}
    status, body = http_get(url, headers)
    return status, (json.loads(body) if status == 429 else None)


@pytest.mark.parametrize(("name", "answers"), CASES)
def test_two_processes_share_each_clients_budget_through_redis(
    name: str, answers: dict[str, Any], tmp_path: Path
) -> None:
    redis = require_service("redis")
    service = render(tmp_path / "service", {**ANSWERS, **answers})
    run([UV, "sync", "--quiet", "--python", python_for("3.13")], service, uv_env())
    namespace = f"ratelimit-{secrets.token_hex(4)}"
    env = production_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'service.db'}",
        REDIS_URL=redis,
        CACHE_NAMESPACE=namespace,
        # Per day: the windows are aligned to the clock, and the test must not straddle two.
        RATE_LIMIT=f"{LIMIT}/day",
        WEB_CONCURRENCY="1",
    )
    migrate(service, env)
    ports = [free_port(), free_port()]
    servers = [
        Server(on_loopback(production_command(answers["framework"]), port), service, env, tmp_path / f"{port}.log")
        for port in ports
    ]
    try:
        for server, port in zip(servers, ports, strict=True):
            server.start().wait_until_serving(f"http://127.0.0.1:{port}/healthz")
        urls = [f"http://127.0.0.1:{port}{ITEMS}" for port in ports]
        alone = [status_and_problem(urls[i % 2]) for i in range(LIMIT + 2)]
        # Through the proxy (127.0.0.1 is trusted): the forwarded client is counted, not the proxy.
        proxied = [status_and_problem(urls[i % 2], "198.51.100.7") for i in range(LIMIT + 1)]
        forged = status_and_problem(urls[0], "203.0.113.9, 198.51.100.7")
        other = status_and_problem(urls[1], "198.51.100.8")
    finally:
        for server in servers:
            server.stop()
        run([str(service / ".venv" / "bin" / "python"), "-c", PURGE, redis, f"{namespace}*"], service)
    logs = "\n".join(server.tail() for server in servers)
    assert [status for status, _ in alone] == [200] * LIMIT + [429, 429], logs
    assert all(problem is not None and problem["status"] == 429 for _, problem in alone[LIMIT:])
    assert [status for status, _ in proxied] == [200] * LIMIT + [429], logs
    assert forged[0] == 429, "a client got a new budget by writing another address before its own"
    assert other[0] == 200, logs
