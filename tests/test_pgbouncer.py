"""Each framework's service behind a real PgBouncer in transaction mode, with DATABASE_PGBOUNCER=true.

A private PgBouncer (Debian's ``pgbouncer``) listens on a free port and forwards every database
name to the machine's PostgreSQL, pooling by transaction: consecutive transactions of one client
run on whichever server connection is free. Through it, each framework's generated test suite
passes, and its production server answers concurrent writes and reads with no error.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import (
    BASE_ANSWERS,
    SHORT_CONTRACT,
    WEB_LAYERS,
    database_name,
    render,
    require_service,
    run,
    service_env,
    unavailable,
    uv_sync,
)

from bench.harness import (
    PROXY_HEADERS,
    Database,
    Server,
    free_port,
    http_get,
    http_post,
    migrate,
    on_loopback,
    production_command,
    production_env,
)

#: One PostgreSQL combination per web layer, with a cache and Celery tasks (whose engine is unpooled).
SERVICE = {"database": "postgresql", "cache": "redis", "task_queue": "celery", "broker": "redis", "ci": "none"}
PARAMS = [pytest.param(layer, id=layer, marks=pytest.mark.xdist_group(f"pgbouncer-{layer}")) for layer in WEB_LAYERS]
#: The load: clients at once, and rounds of create, read, update, read that each makes.
CLIENTS = 24
ROUNDS = 8


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer: its port, and the admin URL of the PostgreSQL server behind it."""

    port: int
    server_url: str
    log: Path

    def url(self, database: str) -> str:
        """The URL of ``database`` through PgBouncer, as the service's DATABASE_URL."""
        return (
            urlsplit(self.server_url)
            ._replace(netloc=f"{self.user}@127.0.0.1:{self.port}", path=f"/{database}")
            .geturl()
        )

    @property
    def user(self) -> str:
        return urlsplit(self.server_url).username or "postgres"

    def show(self, what: str) -> list[dict[str, str]]:
        """Rows of PgBouncer's admin console (``SHOW what``), by column name."""
        admin = urlsplit(self.url("pgbouncer"))._replace(query="").geturl()
        out = run([psql_bin(), admin, "-A", "-F", "\t", "-P", "footer=off", "-c", f"SHOW {what}"], Path.cwd())
        header, *rows = out.splitlines()
        return [dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows]


def psql_bin() -> str:
    found = shutil.which("psql")
    if not found:
        unavailable("psql is needed: `apt-get install postgresql-client`")
    return found


def pgbouncer_bin() -> str:
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
    )
    if not found:
        unavailable("pgbouncer is needed: `apt-get install pgbouncer`")
    return found


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"pgbouncer exited {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"pgbouncer did not listen on {port} within {timeout:.0f} s:\n{log.read_text()}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def pgbouncer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """A private PgBouncer in transaction mode in front of the machine's PostgreSQL."""
    server_url = require_service("postgres")
    binary = pgbouncer_bin()
    server = urlsplit(server_url)
    user = server.username or "postgres"
    folder = tmp_path_factory.mktemp("pgbouncer")
    port = free_port()
    (folder / "userlist.txt").write_text(f'"{user}" "{server.password or ""}"\n')
    (folder / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                # Any database name, the service's and the test run's own, goes to the same server.
                f"* = host={server.hostname} port={server.port or 5432}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {folder / 'userlist.txt'}",
                f"admin_users = {user}",
                "pool_mode = transaction",
                # Fewer server connections than the clients hold: transactions must share them.
                "default_pool_size = 8",
                "max_client_conn = 500",
                "server_reset_query =",
                "",
            ]
        )
    )
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root; -u drops to an unprivileged user.
        command[1:1] = ["-u", pwd.getpwnam("nobody").pw_name]
    log = folder / "pgbouncer.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, process, log)
        yield PgBouncer(port, server_url, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Service:
    path: Path
    bin: Path


_SERVICES: dict[str, Service] = {}


@pytest.fixture
def service(layer: str, tmp_path_factory: pytest.TempPathFactory) -> Service:
    """The layer's rendered service with its environment, made once per worker."""
    if layer not in _SERVICES:
        path = render(tmp_path_factory.mktemp(f"pgbouncer-{layer}") / "service", {**SERVICE, **WEB_LAYERS[layer]})
        _SERVICES[layer] = Service(path, uv_sync(path, "3.13"))
    return _SERVICES[layer]


def transactions_through(pgbouncer: PgBouncer, database: str) -> int:
    """Transactions PgBouncer has passed to ``database`` and the run databases beside it."""
    return sum(int(row["total_xact_count"]) for row in pgbouncer.show("STATS") if database in row["database"])


@pytest.mark.parametrize("layer", PARAMS)
def test_own_test_suite_passes_through_pgbouncer(layer: str, service: Service, pgbouncer: PgBouncer) -> None:
    combo = {**BASE_ANSWERS, **SERVICE, **WEB_LAYERS[layer]}
    with Database(database_name(f"pgbouncer-{layer}"), pgbouncer.server_url) as database:
        env = service_env(combo, None)
        env.update(DATABASE_URL=pgbouncer.url(database.name), DATABASE_PGBOUNCER="true", **SHORT_CONTRACT)
        output = run([str(service.bin / "pytest"), "-q", "-p", "no:cacheprovider", "-rs"], service.path, env)
        # The run's own database was made, used and dropped through PgBouncer.
        assert transactions_through(pgbouncer, database.name) > 0, pgbouncer.show("STATS")
        left = f"SELECT count(*) FROM pg_database WHERE datname LIKE 'test\\_{database.name}\\_%'"
        assert run([psql_bin(), database.url, "-tAc", left], Path.cwd()).strip() == "0", output
        # The tests that check the PgBouncer settings ran; those of a direct connection did not.
        assert "DATABASE_PGBOUNCER is not set" not in output, output


def item_round_trip(base: str, client: int) -> list[str]:
    """Create, read, update and read items as one client; what went wrong, if anything."""
    errors: list[str] = []
    headers = {**PROXY_HEADERS, "Content-Type": "application/json"}
    for round_ in range(ROUNDS):
        name = f"load-{client}-{round_}"
        status, body = http_post(f"{base}/api/v1/items", json.dumps({"name": name}).encode(), headers)
        if status != 201:
            errors.append(f"POST {status} {body[:200]!r}")
            continue
        item = json.loads(body)
        status, body = http_get(f"{base}/api/v1/items/{item['id']}", PROXY_HEADERS)
        if status != 200 or json.loads(body)["name"] != name:
            errors.append(f"GET {status} {body[:200]!r}")
    return errors


@pytest.mark.parametrize("layer", PARAMS)
def test_production_server_serves_concurrent_load_through_pgbouncer(
    layer: str, service: Service, pgbouncer: PgBouncer
) -> None:
    """The production command, two workers, more clients than PgBouncer has server connections."""
    redis = require_service("redis")
    framework = WEB_LAYERS[layer]["framework"]
    with Database(database_name(f"pgbouncer-load-{layer}"), pgbouncer.server_url) as database:
        # Migrations connect to PostgreSQL directly, as compose's migrate service does.
        migrate(service.path, production_env(DATABASE_URL=database.url))
        port = free_port()
        env = production_env(
            DATABASE_URL=pgbouncer.url(database.name),
            DATABASE_PGBOUNCER="true",
            REDIS_URL=redis,
            CACHE_NAMESPACE=f"pgbouncer-load-{database.name}",
            CELERY_BROKER_URL=redis.rsplit("/", 1)[0] + "/1",
            CELERY_QUEUE=f"pgbouncer-load-{database.name}",
            WEB_CONCURRENCY="2",
            ACCESS_LOG="false",
        )
        server = Server(on_loopback(production_command(framework), port), service.path, env, service.path / "load.log")
        server.start()
        try:
            base = f"http://127.0.0.1:{port}"
            server.wait_until_serving(f"{base}/readyz")
            before = transactions_through(pgbouncer, database.name)
            with ThreadPoolExecutor(CLIENTS) as pool:
                errors = [e for found in pool.map(item_round_trip, [base] * CLIENTS, range(CLIENTS)) for e in found]
            assert not errors, f"{len(errors)} failed requests, e.g. {errors[:5]}\n{server.tail()}"
            status, body = http_get(f"{base}/readyz", PROXY_HEADERS)
            assert status == 200, body
            assert transactions_through(pgbouncer, database.name) - before >= CLIENTS * ROUNDS
        finally:
            server.stop()
        stored = run(
            [psql_bin(), database.url, "-tAc", "SELECT count(*) FROM items WHERE name LIKE 'load-%'"], Path.cwd()
        )
        assert int(stored) == CLIENTS * ROUNDS


def test_service_without_the_setting_is_refused_by_pgbouncer(pgbouncer: PgBouncer) -> None:
    """What DATABASE_PGBOUNCER prevents: a statement timeout sent at connect, which PgBouncer refuses."""
    url = pgbouncer.url("postgres") + "?options=-c%20statement_timeout%3D5000"
    result = subprocess.run([psql_bin(), url, "-tAc", "SELECT 1"], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "unsupported startup parameter" in result.stderr, result
