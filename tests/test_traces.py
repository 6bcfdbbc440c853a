"""One trace from a request into the Celery task it queued, across processes, as a collector receives it.

One combination (FastAPI on SQLite, Redis as its cache and as the broker): the production web
server and a Celery worker (compose's command, one process), with OTEL_EXPORTER_OTLP_ENDPOINT
naming a local OTLP receiver (bench.harness.OtlpSink, which decodes the protobuf with
opentelemetry-proto), on the machine's Redis. The worker's process runs the task under a
consumer span of the trace the web server's request span began; the generated services' own
tests (tests/test_telemetry.py) show the rest of each trace in-process, on every framework.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from conftest import render, require_service, run, uv_sync

from bench.harness import (
    PACKAGE,
    PROXY_HEADERS,
    OtlpSink,
    Server,
    free_port,
    http_post,
    migrate,
    on_loopback,
    production_command,
    production_env,
)

ANSWERS = {
    "framework": "fastapi",
    "database": "sqlite",
    "cache": "redis",
    "task_queue": "celery",
    "broker": "redis",
    "ci": "none",
    "docker": False,
}
TASK = f"{PACKAGE}.tasks.process_item"
SERVER, PRODUCER, CONSUMER = 2, 4, 5  # opentelemetry.proto.trace.v1.Span.SpanKind
#: Deletes the run's queue and cache keys (argument: Redis URL, pattern) with the service's redis client.
PURGE = """import sys, redis
client = redis.Redis.from_url(sys.argv[1])
for key in client.scan_iter(match=sys.argv[2]):
    client.delete(key)
"""


def test_the_worker_continues_the_trace_of_the_request_that_queued_its_task(tmp_path: Path) -> None:
    redis = require_service("redis")
    broker = redis.rsplit("/", 1)[0] + "/1"
    service = render(tmp_path / "service", ANSWERS)
    uv_sync(service, "3.13")
    run_id = f"traces-{secrets.token_hex(4)}"
    port = free_port()
    with OtlpSink() as sink:
        env = production_env(
            DATABASE_URL=f"sqlite:///{tmp_path / 'service.db'}",
            REDIS_URL=redis,
            CACHE_NAMESPACE=run_id,
            CELERY_BROKER_URL=broker,
            CELERY_QUEUE=run_id,
            WEB_CONCURRENCY="1",
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint,
            # Batches leave every 100 ms rather than every 5 s.
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        migrate(service, env)
        web = Server(on_loopback(production_command("fastapi"), port), service, env, tmp_path / "web.log")
        worker_command = ["python", "-m", f"{PACKAGE}.run_worker", "--concurrency", "1", "--loglevel", "INFO"]
        worker = Server(worker_command, service, env, tmp_path / "worker.log")
        try:
            web.start().wait_until_serving(f"http://127.0.0.1:{port}/healthz")
            worker.start()
            status, body = http_post(
                f"http://127.0.0.1:{port}/api/v1/items", json.dumps({"name": "Traced"}).encode(), PROXY_HEADERS
            )
            assert status == 201, body
            deadline = time.monotonic() + 60
            while not [span for _, span in sink.spans() if span.name == f"run/{TASK}"]:
                assert time.monotonic() < deadline, f"no span of the task's run:\n{worker.tail()}\n{web.tail()}"
                time.sleep(0.2)
        finally:
            web.stop()
            worker.stop()
            for url in (broker, redis):
                run([str(service / ".venv/bin/python"), "-c", PURGE, url, f"*{run_id}*"], service)

    spans = sink.spans()
    (request,) = [span for _, span in spans if span.kind == SERVER and span.name == "POST /api/v1/items"]
    trace = [(resource, span) for resource, span in spans if span.trace_id == request.trace_id]
    published = [resource for resource, span in trace if span.kind == PRODUCER and span.name == f"apply_async/{TASK}"]
    ran = [resource for resource, span in trace if span.kind == CONSUMER and span.name == f"run/{TASK}"]
    assert published, "the request's trace has no span of the task's publishing"
    assert ran, "the worker's span of the task is not in the request's trace"
    # Two processes, one service: the web server published, a worker process ran.
    assert published[0]["service.name"] == ran[0]["service.name"] == PACKAGE
    assert published[0]["service.instance.id"] != ran[0]["service.instance.id"]
    assert {resource["deployment.environment.name"] for resource, _ in trace} == {"production"}
