"""The Celery worker through outages of its broker and of the cache, on private instances.

Each service runs as it is deployed: the migration, the production web server and the worker
started with compose's command, against the machine's PostgreSQL and a private ``redis-server``
on a free port, which the test kills (SIGKILL) and starts again on the same port, its data kept
in an append-only file as a production Redis keeps it. RabbitMQ is shared, so it is cut through
a TCP proxy instead. Work is submitted through the service's own API, as clients do.

- Broker restarts under a stream of new items: the worker never exits (celery 5.7.0's did on
  some, see the pin of ``celery[redis]`` in extensions/dependencies.py), and every item is
  processed, those the outage left pending once the beat job's task has queued them again.
- A cache outage: a task whose invalidation fails waits it out with backoff, so no cached copy
  outlives the outage stale, and the retries grow with the worker's concurrency, not with the
  number of tasks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import render, require_service, unavailable, uv_sync

from bench.harness import (
    PACKAGE,
    PROXY_HEADERS,
    Database,
    Server,
    clean_env,
    free_port,
    http_get,
    http_patch,
    http_post,
    migrate,
    on_loopback,
    production_command,
    production_env,
)

SERVICE = {"database": "postgresql", "cache": "redis", "task_queue": "celery", "ci": "none"}
#: The three data layers, whose tasks and invalidation are different code: SQLAlchemy sync
#: (Flask), SQLAlchemy async (FastAPI, as Starlette, Quart and Sanic) and Django's.
LAYERS = {
    "flask": {"framework": "flask"},
    "fastapi": {"framework": "fastapi"},
    "django": {"framework": "django", "django_api": "ninja"},
}
PARAMS = [pytest.param(layer, id=layer, marks=pytest.mark.xdist_group(f"outages-{layer}")) for layer in LAYERS]
ITEMS = "/api/v1/items"
#: Broker restarts per run, with an item created every POST_INTERVAL seconds while it is up.
RESTARTS, POST_INTERVAL = 8, 0.05
#: Items created back to back just before each cut.
BURST = 10
#: Seconds the broker stays up (the worker reconnects 2 s after a drop), then down, each time;
#: and the cache's outage.
BROKER_UP, BROKER_DOWN, CACHE_DOWN = 3.0, 1.0, 10.0
#: A task's tries of an invalidation through a CACHE_DOWN outage, at most: pauses from 0.125 s,
#: doubling up to 5 s (cache.py), then one more once Redis is back.
TRIES_PER_TASK = 12
#: A log line of the worker's for each retry: the task's own, or Celery's.
RETRY_LINE = re.compile(r"cache invalidation failed, retrying|\] retry: Retry in \d")
#: Longer than the invalidation marker lives (cache.INVALIDATION_GRACE, 2 s).
PAST_THE_MARKER = 3.0


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is needed for a private Redis: `apt-get install redis-server`")
    return binary


class PrivateRedis:
    """A redis-server of the test's own on a free port, killed and started again at will.

    Its append-only file is written on every command, so a restart keeps queued messages and
    cached entries, as a production Redis with persistence does.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        command = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)]
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the private redis-server did not start:\n{(self.folder / 'redis.log').read_text()}")
            time.sleep(0.02)

    def keys(self, db: int = 0) -> int:
        """How many keys the database holds (DBSIZE, spoken in RESP)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(f"*2\r\n$6\r\nSELECT\r\n${len(str(db))}\r\n{db}\r\n*1\r\n$6\r\nDBSIZE\r\n".encode())
            reply = b""
            while reply.count(b"\r\n") < 2:
                reply += connection.recv(1024)
        selected, size = reply.split(b"\r\n")[:2]
        assert selected == b"+OK", reply
        return int(size.removeprefix(b":"))

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    folder = Path(tempfile.mkdtemp(prefix="servicecraft-outages-"))
    redis = PrivateRedis(folder)
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()
        shutil.rmtree(folder, ignore_errors=True)


class CuttableProxy:
    """A TCP proxy on a free port: ``cut()`` drops every connection and refuses new ones until ``restore()``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        with self._lock:
            connections, self._connections = self._connections, set()
        for sock in [listener, *connections] if listener else connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                if listener.fileno() == -1 or self._listener is not listener:
                    return
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_services: dict[tuple[str, str], Path] = {}


def service_for(layer: str, broker: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer's service with Docker files (compose says how the worker runs), rendered and synced once."""
    if (layer, broker) not in _services:
        path = tmp_path_factory.mktemp(f"outages-{layer}-{broker}") / "service"
        render(path, {**SERVICE, **LAYERS[layer], "broker": broker, "docker": True})
        uv_sync(path, "3.13")
        _services[layer, broker] = path
    return _services[layer, broker]


def worker_command(service: Path) -> list[str]:
    """The worker's command in compose.yaml, which the Kubernetes manifests and README share."""
    compose = yaml.safe_load((service / "compose.yaml").read_text())
    return [str(part) for part in compose["services"]["worker"]["command"]]


@dataclass
class Running:
    base: str
    web: Server
    worker: Server

    def create(self, name: str) -> int:
        status, body = http_post(f"{self.base}{ITEMS}", json.dumps({"name": name}).encode(), PROXY_HEADERS)
        assert status == 201, body
        return int(json.loads(body)["id"])

    def rename(self, item_id: int, name: str) -> None:
        status, body = http_patch(f"{self.base}{ITEMS}/{item_id}", json.dumps({"name": name}).encode(), PROXY_HEADERS)
        assert status == 200, body

    def read(self, item_id: int) -> dict[str, Any]:
        status, body = http_get(f"{self.base}{ITEMS}/{item_id}", PROXY_HEADERS)
        assert status == 200, body
        return dict(json.loads(body))

    def wait_until(self, ids: list[int], done: Callable[[int, dict[str, Any]], bool], timeout: float) -> None:
        """Until ``done`` holds for every item; fails naming those it does not hold for."""
        deadline = time.monotonic() + timeout
        waiting = list(ids)
        while waiting:
            waiting = [item_id for item_id in waiting if not done(item_id, self.read(item_id))]
            if waiting and time.monotonic() > deadline:
                shown = {item_id: self.read(item_id) for item_id in waiting[:5]}
                late = f"{len(waiting)} of {len(ids)} items not done within {timeout:.0f} s: {shown}"
                pytest.fail(f"{late}\nworker log:\n{self.worker.tail(60)}")
            self.assert_worker_alive()
            time.sleep(0.2)

    def wait_until_processed(self, ids: list[int], timeout: float) -> None:
        """Until every item is processed, read from the list (the database, not the cache), a page at a time."""
        deadline = time.monotonic() + timeout
        while True:
            statuses: dict[int, str] = {}
            for offset in range(0, max(ids) + 1, 100):
                status, body = http_get(f"{self.base}{ITEMS}?offset={offset}&limit=100", PROXY_HEADERS)
                assert status == 200, body
                statuses |= {item["id"]: item["status"] for item in json.loads(body)["items"]}
            waiting = [item_id for item_id in ids if statuses.get(item_id) != "processed"]
            self.assert_worker_alive()
            if not waiting:
                return
            if time.monotonic() > deadline:
                late = f"{len(waiting)} of {len(ids)} items not processed within {timeout:.0f} s: {waiting[:20]}"
                pytest.fail(f"{late}\nworker log:\n{self.worker.tail(60)}")
            time.sleep(0.5)

    def requeue_pending_items(self) -> None:
        """Send the beat job's task, as ``celery call`` sends it."""
        call = ["celery", "-A", f"{PACKAGE}.worker", "call", f"{PACKAGE}.tasks.requeue_pending_items"]
        result = subprocess.run(
            call, cwd=self.worker.cwd, env=self.worker.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr

    def assert_worker_alive(self) -> None:
        assert self.worker.process is not None
        assert self.worker.process.poll() is None, f"the worker exited:\n{self.worker.tail(80)}"
        assert "Unrecoverable error" not in self.worker.log.read_text(errors="replace"), self.worker.tail(80)

    def wait_for_worker(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(r"celery@\S+ ready\.", self.worker.log.read_text(errors="replace")):
            self.assert_worker_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"the worker did not get ready within {timeout:.0f} s:\n{self.worker.tail(60)}")
            time.sleep(0.1)


@contextlib.contextmanager
def running(service: Path, framework: str, logs: Path, **settings: str) -> Iterator[Running]:
    """The service's migration, web server and worker, as deployed, on a database of their own; logs in ``logs``."""
    require_service("postgres")
    with Database(f"outages_{framework}_{os.getpid()}") as database:
        env = production_env(DATABASE_URL=database.url, WEB_CONCURRENCY="1", **settings)
        migrate(service, env)
        port = free_port()
        web = Server(on_loopback(production_command(framework), port), service, env, logs / "web.log")
        worker = Server(worker_command(service), service, env, logs / "worker.log")
        try:
            web.start()
            worker.start()
            base = f"http://127.0.0.1:{port}"
            web.wait_until_serving(f"{base}/readyz")
            started = Running(base, web, worker)
            started.wait_for_worker()
            yield started
        finally:
            worker.stop()
            web.stop()


def restart_under_load(run: Running, *, stop: Callable[[], None], start: Callable[[], None]) -> list[int]:
    """Create items at a steady pace while the broker goes away and comes back RESTARTS times: their ids.

    Each cut comes right after a burst of creations, while their tasks are in flight (delivered,
    unacknowledged), the moment celery 5.7.0's worker did not survive. Items are created during
    the cut too: answered 201, they stay pending, for the beat job to queue again.
    """
    ids: list[int] = []

    def create_for(seconds: float, pause: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            ids.append(run.create(f"item {len(ids)}"))
            time.sleep(pause)

    for _ in range(RESTARTS):
        create_for(BROKER_UP, POST_INTERVAL)
        ids.extend(run.create(f"item {len(ids)}") for _ in range(BURST))
        stop()
        create_for(BROKER_DOWN, 0)
        start()
        run.assert_worker_alive()
    create_for(BROKER_UP, POST_INTERVAL)
    return ids


def processed(_: int, item: dict[str, Any]) -> bool:
    return item["status"] == "processed"


def renamed_and_processed(item_id: int, item: dict[str, Any]) -> bool:
    return item["name"] == f"after {item_id}" and item["status"] == "processed"


@pytest.mark.parametrize("layer", PARAMS)
def test_the_worker_survives_restarts_of_its_redis_broker(
    layer: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    service = service_for(layer, "redis", tmp_path_factory)
    with private_redis() as redis:
        # Broker and cache on one Redis, as compose has them.
        settings = {"REDIS_URL": redis.url(0), "CELERY_BROKER_URL": redis.url(1)}
        with running(service, LAYERS[layer]["framework"], tmp_path, **settings) as run:
            ids = restart_under_load(run, stop=redis.kill, start=redis.start)
            # kombu's Redis transport pops a message (BRPOP) before it records it as unacknowledged:
            # one popped as the broker dies is gone, its item left pending (kombu#305), as is an
            # item created while the broker is down. The beat job queues pending items again;
            # here it runs once, as beat sends it.
            run.requeue_pending_items()
            run.wait_until_processed(ids, timeout=60)


@pytest.mark.xdist_group("outages-rabbitmq")
def test_the_worker_survives_cuts_of_its_rabbitmq_broker(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """RabbitMQ is shared: cut through a proxy. Unacknowledged messages return at once."""
    rabbitmq = urlsplit(require_service("rabbitmq"))
    assert rabbitmq.hostname and rabbitmq.port
    service = service_for("fastapi", "rabbitmq", tmp_path_factory)
    proxy = CuttableProxy(rabbitmq.hostname, rabbitmq.port)
    proxy.restore()
    queue = f"outages-{os.getpid()}"
    broker = rabbitmq._replace(netloc=f"{rabbitmq.netloc.rpartition('@')[0]}@127.0.0.1:{proxy.port}").geturl()
    try:
        broker_settings = {"CELERY_BROKER_URL": broker, "CELERY_QUEUE": queue}
        with (
            private_redis() as redis,
            running(service, "fastapi", tmp_path, REDIS_URL=redis.url(0), **broker_settings) as run,
        ):
            ids = restart_under_load(run, stop=proxy.cut, start=proxy.restore)
            run.requeue_pending_items()  # for the items created while the broker was cut
            run.wait_until_processed(ids, timeout=60)
    finally:
        proxy.cut()
        delete_rabbitmq_queue(service, queue)


def delete_rabbitmq_queue(service: Path, queue: str) -> None:
    """The run's queue and its exchange, deleted from the shared RabbitMQ through the service's own Celery app."""
    script = (
        f"from {PACKAGE}.worker import celery_app\n"
        "with celery_app.connection_for_write() as connection:\n"
        f"    connection.default_channel.queue_delete({queue!r})\n"
        f"    connection.default_channel.exchange_delete({queue!r})\n"
    )
    env = {**clean_env(), "CELERY_BROKER_URL": require_service("rabbitmq")}
    python = str(service / ".venv" / "bin" / "python")
    result = subprocess.run(
        [python, "-c", script], cwd=service, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"the run's queue {queue} is left on RabbitMQ:\n{result.stderr}"


@pytest.mark.parametrize("layer", PARAMS)
def test_invalidation_survives_an_outage_of_the_cache(
    layer: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Items cached, then renamed while Redis is down: after it returns, no read is stale, none was dropped."""
    service = service_for(layer, "redis", tmp_path_factory)
    with private_redis() as cache, private_redis() as broker:
        settings = {"REDIS_URL": cache.url(0), "CELERY_BROKER_URL": broker.url(1)}
        with running(service, LAYERS[layer]["framework"], tmp_path, **settings) as run:
            workers = os.cpu_count() or 1  # the worker's default concurrency
            count = 2 * workers * TRIES_PER_TASK
            ids = [run.create(f"before {n}") for n in range(count)]
            run.wait_until(ids, processed, timeout=60)
            time.sleep(PAST_THE_MARKER)  # reads fill only once the processing's invalidation has expired
            for item_id in ids:
                assert run.read(item_id)["name"].startswith("before")
            assert cache.keys() == count, "not every item is cached before the outage"
            cache.kill()
            outage_started = time.monotonic()
            for item_id in ids:
                # The request's own invalidation fails (logged); the task's waits for Redis.
                run.rename(item_id, f"after {item_id}")
            time.sleep(max(0.0, CACHE_DOWN - (time.monotonic() - outage_started)))
            cache.start()
            run.wait_until(ids, renamed_and_processed, timeout=60)
            # Read again once every task has run: no stale copy came back from the cache.
            stale = {item_id: item for item_id in ids if (item := run.read(item_id))["name"] != f"after {item_id}"}
            assert not stale, stale
            log = run.worker.log.read_text(errors="replace")
            retries = sum(1 for line in log.splitlines() if RETRY_LINE.search(line))
            assert retries <= workers * TRIES_PER_TASK < count, (
                f"{retries} retries for {count} tasks on {workers} worker processes:\n{run.worker.tail(40)}"
            )
            assert "Unrecoverable error" not in log
            assert "raised unexpected" not in log, run.worker.tail(40)
