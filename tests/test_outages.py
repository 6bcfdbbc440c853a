"""Every framework's production server through outages of its dependencies, under load.

A private PostgreSQL cluster (``initdb``, free port) and a private Redis (``redis-server``, free
port) each sit behind a TCP proxy written here, which can cut (reset every connection and refuse
new ones, as a stopped server does) or stall (hold every byte, resetting nothing, as a network
that drops packets does). A few client threads create and read items while PostgreSQL is cut,
PostgreSQL stalls, and Redis is cut; a probe asks for liveness all along. docs/failures.md says
what a client sees meanwhile, and these tests hold the service to it:

- no 5xx other than 503 with Retry-After, and no connection refused or reset by the server;
- no request slower than the documented bound (the database timeouts the test sets, added up);
- liveness answers at once throughout, but for the first timeout of a stall on a threaded server;
- every item created (201) is readable after the outages, with its name;
- the server process never exits, and serves again within a few seconds of each return.

The second test sends SIGTERM to the server's whole process group (as systemd does by default,
or ``kill -- -PGID``) while requests are held in flight by a stalled database: each completes
with 2xx once the database answers again, and the server exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import pytest
from conftest import render, run, unavailable, uv_sync
from test_replica import as_owner, postgres_bin

from bench.harness import PROXY_HEADERS, Server, free_port, migrate, on_loopback, production_command, production_env

SERVICE = {"database": "postgresql", "cache": "redis", "task_queue": "none", "ci": "none", "docker": False}
LAYERS = {name: {"framework": name} for name in ("fastapi", "flask", "starlette", "quart", "sanic")} | {
    f"django-{api}": {"framework": "django", "django_api": api} for api in ("ninja", "drf")
}
PARAMS = [pytest.param(layer, id=layer, marks=pytest.mark.xdist_group(f"outages-{layer}")) for layer in LAYERS]
ITEMS = "/api/v1/items"

#: The service's bounds on database waits, shorter than the production defaults so that outages
#: of a few seconds outlast them (the statement timeout below the command timeout, as
#: docs/failures.md advises); Redis keeps its default.
TIMEOUTS = {
    "DB_POOL_TIMEOUT": 2.0,
    "DB_CONNECT_TIMEOUT": 2.0,
    "DB_COMMAND_TIMEOUT": 2.0,
    "DB_STATEMENT_TIMEOUT_MS": 1500,
    "REDIS_TIMEOUT": 0.5,
}
#: docs/failures.md: a request waits at most DB_POOL_TIMEOUT + DB_CONNECT_TIMEOUT +
#: DB_COMMAND_TIMEOUT for the database, and REDIS_TIMEOUT per cache operation (two at most).
BOUND = TIMEOUTS["DB_POOL_TIMEOUT"] + TIMEOUTS["DB_CONNECT_TIMEOUT"] + TIMEOUTS["DB_COMMAND_TIMEOUT"]
BOUND += 2 * TIMEOUTS["REDIS_TIMEOUT"]
#: What a machine of two busy cores adds to the bound before a request counts as too slow.
SLACK = 3.0
#: Liveness never waits on a dependency: well within the Kubernetes probe's timeoutSeconds (3).
LIVENESS_BOUND = 1.5
#: docs/failures.md: when a stall holds more requests than a threaded server has threads, liveness
#: waits for the first of them to time out (the connection or the statement in flight), and then
#: no more: the circuit breaker fails the requests that follow at once.
FIRST_TIMEOUT = max(TIMEOUTS["DB_CONNECT_TIMEOUT"], TIMEOUTS["DB_COMMAND_TIMEOUT"])
#: Long enough that every request in the window meets the outage, and that a stall outlasts
#: the connect and command timeouts.
OUTAGE = 4.0
#: Seconds from a dependency's return until the service creates items again.
RECOVERY = 5.0
#: Client threads creating and reading items.
CLIENTS = 3
#: More clients while PostgreSQL is cut or stalled than the threads of a Granian worker (8): were
#: requests to wait for the database, every thread would, and liveness would queue behind them.
BURST = 12


# --- the dependencies, and a proxy that can cut or stall them --------------------------------


class Proxy:
    """A TCP proxy to ``127.0.0.1:target``, run on an event loop in a thread of its own."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"proxy-{target}", daemon=True)
        self.server: asyncio.Server | None = None
        self.flowing = asyncio.Event()
        self.links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    def __enter__(self) -> Self:
        self.thread.start()
        self._call(self._listen)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    def _call(self, function: Callable[[], object]) -> None:
        async def call() -> None:
            result = function()
            if asyncio.iscoroutine(result):
                await result

        asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)

    async def _listen(self) -> None:
        self.flowing.set()
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port, reuse_address=True)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A connection made during a stall is accepted, and then hears nothing.
        await self.flowing.wait()
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            _reset(writer)
            return
        link = (writer, upstream)
        self.links.add(link)
        pipes = [
            asyncio.ensure_future(self._pipe(reader, upstream)),
            asyncio.ensure_future(self._pipe(upstream_reader, writer)),
        ]
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        self.links.discard(link)
        for end in link:
            end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()

    def cut(self) -> None:
        """Reset every connection and refuse new ones: the dependency is down."""

        async def cut() -> None:
            if self.server is not None:
                self.server.close()
                self.server = None
            for link in list(self.links):
                for end in link:
                    _reset(end)
            self.links.clear()

        self._call(cut)

    def restore(self) -> None:
        """Accept connections again, after a cut."""
        self._call(self._listen)

    def stall(self) -> None:
        """Hold every byte, in both directions, on old and new connections alike, resetting nothing."""
        self._call(self.flowing.clear)

    def resume(self) -> None:
        self._call(self.flowing.set)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a host that lost the connection answers."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(frozen=True)
class Dependencies:
    postgres: int
    redis: int
    bin: Path

    def psql(self, sql: str) -> None:
        run(
            [str(self.bin / "psql"), f"postgresql://postgres@127.0.0.1:{self.postgres}/postgres", "-qc", sql], Path("/")
        )


@pytest.fixture(scope="module")
def dependencies() -> Iterator[Dependencies]:
    """A private PostgreSQL cluster and a private Redis, for the module."""
    binaries = postgres_bin()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        unavailable("redis-server is needed for a private Redis: `apt-get install redis-server`")
    owner = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="servicecraft-outages-"))
    folder.chmod(0o755)
    if owner:
        shutil.chown(folder, owner)
    data = folder / "data"
    ports = free_port(), free_port()

    def tool(*command: str) -> None:
        run(as_owner([str(binaries / command[0]), *command[1:]], owner), folder)

    tool("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    redis = subprocess.Popen(
        [redis_server, "--port", str(ports[1]), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    started = False
    try:
        options = f"-p {ports[0]} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        tool("pg_ctl", "-D", str(data), "-l", str(folder / "postgres.log"), "-o", options, "-w", "start")
        started = True
        yield Dependencies(ports[0], ports[1], binaries)
    finally:
        if started:
            subprocess.run(
                as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], owner),
                capture_output=True,
                check=False,
                timeout=60,
            )
        redis.terminate()
        redis.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def service(layer: str, renders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer's service, rendered and synced once for both tests."""
    key = f"outages-{layer}"
    if key not in renders:
        renders[key] = render(tmp_path_factory.mktemp(key) / "service", {**SERVICE, **LAYERS[layer]})
        uv_sync(renders[key], "3.13")
    return renders[key]


@dataclass
class Running:
    """The production server of a service, through the proxies, on a database of its own."""

    server: Server
    base: str
    postgres: Proxy
    redis: Proxy


@contextlib.contextmanager
def running(layer: str, service: Path, deps: Dependencies, **settings: str) -> Iterator[Running]:
    database = f"outages_{layer.replace('-', '_')}_{os.getpid()}"
    deps.psql(f'CREATE DATABASE "{database}"')
    try:
        migrate(service, production_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{deps.postgres}/{database}"))
        with Proxy(deps.postgres) as postgres, Proxy(deps.redis) as redis:
            env = production_env(
                DATABASE_URL=f"postgresql://postgres@127.0.0.1:{postgres.port}/{database}",
                REDIS_URL=f"redis://127.0.0.1:{redis.port}/0",
                CACHE_NAMESPACE=database,
                **settings,
            )
            port = free_port()
            command = on_loopback(production_command(LAYERS[layer]["framework"]), port)
            server = Server(command, service, env, service / "server.log")
            server.start()
            try:
                base = f"http://127.0.0.1:{port}"
                server.wait_until_serving(f"{base}/readyz")
                yield Running(server, base, postgres, redis)
            finally:
                server.stop()
    finally:
        deps.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# --- the load, and what it saw ----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    what: str
    started: float
    seconds: float
    status: int
    headers: dict[str, str]
    body: bytes

    def describe(self) -> str:
        return f"{self.what} at {self.started:.1f} s: {self.status} in {self.seconds:.2f} s {self.body[:200]!r}"


def request(base: str, what: str, method: str, path: str, payload: object = None, t0: float = 0.0) -> Answer:
    """One request; a refused or reset connection is status 0, with the error as its body."""
    body = None if payload is None else json.dumps(payload).encode()
    headers = {**PROXY_HEADERS, "Content-Type": "application/json"}
    started = time.monotonic()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(f"{base}{path}", body, headers, method=method), timeout=60
        ) as r:
            status, answer_headers, data = r.status, r.headers, r.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, data = error.code, error.headers, error.read()
    except OSError as error:
        status, answer_headers, data = 0, {}, repr(error).encode()
    lowered = {name.lower(): value for name, value in answer_headers.items()}
    return Answer(what, started - t0, time.monotonic() - started, status, lowered, data)


@dataclass
class Load:
    """Client threads creating and reading items, and a liveness probe, until stopped."""

    base: str
    t0: float = field(default_factory=time.monotonic)
    answers: list[Answer] = field(default_factory=list)
    #: Every item the service acknowledged (201): its id and name.
    created: dict[int, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def _client(self, number: int, stop: threading.Event | None = None) -> None:
        serial = 0
        while not self.stop.is_set() and not (stop and stop.is_set()):
            serial += 1
            name = f"client-{number}-{serial}"
            created = request(self.base, "create", "POST", ITEMS, {"name": name}, self.t0)
            self._record(created)
            if created.status == 201:
                item_id = json.loads(created.body)["id"]
                with self.lock:
                    self.created[item_id] = name
                self._record(request(self.base, "read", "GET", f"{ITEMS}/{item_id}", t0=self.t0))
            time.sleep(0.05)

    def _probe(self) -> None:
        while not self.stop.is_set():
            self._record(request(self.base, "liveness", "GET", "/healthz", t0=self.t0))
            time.sleep(0.2)

    @contextlib.contextmanager
    def burst(self, clients: int) -> Iterator[None]:
        """More clients, for as long as the context lasts."""
        stop = threading.Event()
        threads = [threading.Thread(target=self._client, args=(CLIENTS + n, stop)) for n in range(clients)]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        threads = [threading.Thread(target=self._client, args=(n,)) for n in range(CLIENTS)]
        threads.append(threading.Thread(target=self._probe))
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=120)


def wait_for_recovery(base: str, since: str) -> float:
    """Seconds until a create succeeds again; fails past RECOVERY."""
    started = time.monotonic()
    while True:
        answer = request(base, "recovery", "POST", ITEMS, {"name": f"after {since}"})
        if answer.status == 201:
            return time.monotonic() - started
        if time.monotonic() - started > RECOVERY:
            pytest.fail(f"no successful create within {RECOVERY:g} s of {since}: {answer.describe()}")
        time.sleep(0.1)


def listing(answers: list[Answer], most: int = 20) -> str:
    more = f"\n... and {len(answers) - most} more" if len(answers) > most else ""
    return "\n".join(a.describe() for a in answers[:most]) + more


def is_documented_503(answer: Answer) -> bool:
    if answer.status != 503 or "retry-after" not in answer.headers:
        return False
    try:
        return "detail" in json.loads(answer.body)
    except ValueError:
        return False


@pytest.mark.parametrize("layer", PARAMS)
def test_outages_under_load_answer_503_within_the_bound_and_lose_no_write(
    layer: str, service: Path, dependencies: Dependencies
) -> None:
    settings = {name: str(value) for name, value in TIMEOUTS.items()} | {"WEB_CONCURRENCY": "1"}
    with running(layer, service, dependencies, **settings) as serving:
        load = Load(serving.base)
        windows: dict[str, tuple[float, float]] = {}
        recoveries: dict[str, float] = {}
        outages = {
            "postgresql cut": (serving.postgres.cut, serving.postgres.restore),
            "postgresql stall": (serving.postgres.stall, serving.postgres.resume),
            "redis cut": (serving.redis.cut, serving.redis.restore),
        }
        with load.running():
            time.sleep(1.0)
            for name, (start, end) in outages.items():
                began = time.monotonic() - load.t0
                start()
                with load.burst(BURST if name.startswith("postgresql") else 0):
                    time.sleep(OUTAGE)
                windows[name] = (began, time.monotonic() - load.t0)
                end()
                recoveries[name] = wait_for_recovery(serving.base, name)
                time.sleep(1.0)
        exited = serving.server.process.poll() if serving.server.process else None
        log = serving.server.tail(20)

        answers = load.answers
        stall_from, stall_to = windows["postgresql stall"]
        stalled = [a for a in answers if stall_from <= a.started < stall_to]
        for what in ("liveness", "create"):
            seconds = sorted(a.seconds for a in stalled if a.what == what)
            print(
                f"{layer}: {what} during the stall: {len(seconds)}, median {seconds[len(seconds) // 2]:.2f} s, "
                f"slowest {seconds[-1]:.2f} s"
            )
        assert exited is None, f"the server exited {exited} during the outages:\n{log}"
        unexpected = [a for a in answers if a.status not in (200, 201) and not is_documented_503(a)]
        assert not unexpected, f"answers other than 2xx and 503 with Retry-After:\n{listing(unexpected)}\n{log}"
        slow = [a for a in answers if a.seconds > BOUND + SLACK]
        assert not slow, f"slower than {BOUND:g} s (+{SLACK:g}):\n{listing(slow)}\n{log}"

        def waited(a: Answer) -> bool:
            # A probe sent before the stall's first timeout is over may wait for it.
            grace = max(stall_from + FIRST_TIMEOUT - a.started, 0) if a.started >= stall_from else 0
            return a.seconds > LIVENESS_BOUND + grace

        late = [a for a in answers if a.what == "liveness" and (a.status != 200 or waited(a))]
        assert not late, f"liveness failed or waited:\n{listing(late)}\n{log}"
        cut_from, cut_to = windows["postgresql cut"]
        during_cut = [a for a in answers if a.what == "create" and cut_from + 0.5 < a.started < cut_to - 0.5]
        assert during_cut, "no create was sent while PostgreSQL was cut"
        succeeded = [a for a in during_cut if a.status != 503]
        assert not succeeded, f"creates answered while PostgreSQL was cut:\n{listing(succeeded)}"
        assert load.created, f"no item was created:\n{log}"

        lost = {}
        for item_id, name in load.created.items():
            answer = request(serving.base, "check", "GET", f"{ITEMS}/{item_id}")
            if answer.status != 200 or json.loads(answer.body)["name"] != name:
                lost[item_id] = answer.describe()
        assert not lost, f"acknowledged writes lost: {lost}"
        print(f"{layer}: {len(answers)} answers, {len(load.created)} created, recoveries {recoveries}")


@pytest.mark.parametrize("layer", PARAMS)
def test_sigterm_to_the_process_group_finishes_requests_in_flight(
    layer: str, service: Path, dependencies: Dependencies
) -> None:
    # Timeouts longer than the stall, which only holds the requests.
    settings = {"WEB_CONCURRENCY": "2", "DB_CONNECT_TIMEOUT": "10", "DB_COMMAND_TIMEOUT": "10"}
    with running(layer, service, dependencies, **settings) as serving:
        process = serving.server.process
        assert process is not None
        # Held in flight by the stalled database, for less than the service's timeouts.
        serving.postgres.stall()
        answers: list[Answer] = []
        clients = [
            threading.Thread(
                target=lambda n=n: answers.append(
                    request(serving.base, "create", "POST", ITEMS, {"name": f"in flight {n}"})
                )
            )
            for n in range(4)
        ]
        for client in clients:
            client.start()
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGTERM)
        time.sleep(1.0)
        serving.postgres.resume()
        for client in clients:
            client.join(timeout=60)
        try:
            exited = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            exited = None
        log = serving.server.tail()
        assert [a.status for a in answers] == [201] * 4, "\n".join(a.describe() for a in answers) + f"\n{log}"
        assert exited == 0, f"the server exited {exited} after SIGTERM to its process group:\n{log}"
