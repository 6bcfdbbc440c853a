"""Services with a read replica (DATABASE_REPLICA_URL), against a real streaming replica.

A private PostgreSQL cluster is made for the module (``initdb`` on a free port) with a streaming
replica of it (``pg_basebackup -R``, another free port). With the replica's replay paused
(``pg_wal_replay_pause()``), what the replica has not seen tells where each read went: lists
come from the replica, writes and the reads that fill the cache from the primary, and a cache
fill never stores a row older than the invalidation it follows.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import render, require_service, run, unavailable, uv_sync

from bench.harness import (
    PROXY_HEADERS,
    Server,
    free_port,
    http_get,
    http_patch,
    http_post,
    migrate,
    on_loopback,
    production_command,
    production_env,
)

SERVICE = {"database": "postgresql", "cache": "redis", "task_queue": "none", "ci": "none", "docker": False}
#: Every framework on the SQLAlchemy data layer (async, and Flask's generated sync twin), and Django's router.
LAYERS = {name: {"framework": name} for name in ("fastapi", "flask", "starlette", "quart", "sanic")} | {
    f"django-{api}": {"framework": "django", "django_api": api} for api in ("ninja", "drf")
}
PARAMS = [pytest.param(layer, id=layer, marks=pytest.mark.xdist_group(f"replica-{layer}")) for layer in LAYERS]
ITEMS = "/api/v1/items"
#: Longer than the cache's invalidation marker lives (cache.INVALIDATION_GRACE, 2 s).
PAST_THE_MARKER = 3.0


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        unavailable("PostgreSQL's server binaries are needed: `apt-get install postgresql`")
    return found[-1].parent


@dataclass(frozen=True)
class Cluster:
    """A primary and its streaming replica, each on its own port."""

    primary: int
    replica: int
    bin: Path
    owner: str | None

    def url(self, port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def psql(self, port: int, sql: str, database: str = "postgres") -> str:
        command = [str(self.bin / "psql"), self.url(port, database), "-v", "ON_ERROR_STOP=1", "-tAc", sql]
        return run(command, Path("/")).strip()

    def wait_for_replay(self, timeout: float = 30) -> None:
        """Until the replica has replayed everything the primary has written."""
        target = self.psql(self.primary, "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while self.psql(self.replica, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") != "t":
            if time.monotonic() > deadline:
                pytest.fail(f"the replica did not reach {target} within {timeout:.0f} s")
            time.sleep(0.1)


def as_owner(command: list[str], owner: str | None) -> list[str]:
    """PostgreSQL's tools refuse to run as root: run them as the owner of the data."""
    return ["runuser", "-u", owner, "--", *command] if owner else command


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    binaries = postgres_bin()
    owner = "postgres" if os.geteuid() == 0 else None
    if owner:
        try:
            pwd.getpwnam(owner)
        except KeyError:
            unavailable("running as root, a `postgres` user is needed to own the private cluster")
    # Not under pytest's temporary folder, which only root may enter.
    folder = Path(tempfile.mkdtemp(prefix="servicecraft-replica-"))
    folder.chmod(0o755)
    primary, replica = folder / "primary", folder / "replica"
    if owner:
        shutil.chown(folder, owner)
    ports = free_port(), free_port()
    sockets = f"-k {folder} -c listen_addresses=127.0.0.1"

    def tool(*command: str) -> None:
        run(as_owner([str(binaries / command[0]), *command[1:]], owner), folder)

    tool("initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "--no-sync")
    started: list[Path] = []
    try:
        tool("pg_ctl", "-D", str(primary), "-l", str(folder / "primary.log"), "-o", f"-p {ports[0]} {sockets}",
             "-w", "start")  # fmt: skip
        started.append(primary)
        tool("pg_basebackup", "-h", "127.0.0.1", "-p", str(ports[0]), "-U", "postgres", "-D", str(replica), "-R",
             "-X", "stream")  # fmt: skip
        tool("pg_ctl", "-D", str(replica), "-l", str(folder / "replica.log"), "-o", f"-p {ports[1]} {sockets}",
             "-w", "start")  # fmt: skip
        started.append(replica)
        made = Cluster(ports[0], ports[1], binaries, owner)
        assert made.psql(made.replica, "SELECT pg_is_in_recovery()") == "t"
        yield made
    finally:
        for data in reversed(started):
            subprocess.run(
                as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], owner),
                capture_output=True,
                check=False,
                timeout=60,
            )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def service(layer: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = render(tmp_path_factory.mktemp(f"replica-{layer}") / "service", {**SERVICE, **LAYERS[layer]})
    uv_sync(path, "3.13")
    return path


def item_names(base: str) -> set[str]:
    status, body = http_get(f"{base}{ITEMS}?limit=100", PROXY_HEADERS)
    assert status == 200, body
    return {item["name"] for item in json.loads(body)["items"]}


def item_name(base: str, item_id: int) -> str:
    status, body = http_get(f"{base}{ITEMS}/{item_id}", PROXY_HEADERS)
    assert status == 200, body
    return str(json.loads(body)["name"])


def patch_name(base: str, item_id: int, name: str) -> None:
    status, body = http_patch(f"{base}{ITEMS}/{item_id}", json.dumps({"name": name}).encode(), PROXY_HEADERS)
    assert status == 200, body


@pytest.mark.parametrize("layer", PARAMS)
def test_reads_go_to_the_replica_and_cache_fills_to_the_primary(layer: str, service: Path, cluster: Cluster) -> None:
    redis = require_service("redis")
    database = f"replica_{layer.replace('-', '_')}_{os.getpid()}"
    cluster.psql(cluster.primary, f'CREATE DATABASE "{database}"')
    primary, replica = cluster.url(cluster.primary, database), cluster.url(cluster.replica, database)
    migrate(service, production_env(DATABASE_URL=primary))
    port = free_port()
    env = production_env(
        DATABASE_URL=primary,
        DATABASE_REPLICA_URL=replica,
        REDIS_URL=redis,
        CACHE_NAMESPACE=f"replica-{database}",
        WEB_CONCURRENCY="1",
    )
    server = Server(on_loopback(production_command(LAYERS[layer]["framework"]), port), service, env, service / "s.log")
    server.start()
    paused = False
    try:
        base = f"http://127.0.0.1:{port}"
        server.wait_until_serving(f"{base}/readyz")
        status, body = http_get(f"{base}/readyz", PROXY_HEADERS)
        assert json.loads(body)["checks"] == {"database": "ok", "database_replica": "ok", "cache": "ok"}, body
        status, body = http_post(f"{base}{ITEMS}", json.dumps({"name": "before"}).encode(), PROXY_HEADERS)
        assert status == 201, body
        item_id = json.loads(body)["id"]
        cluster.wait_for_replay()
        assert item_name(base, item_id) == "before"  # cached now

        cluster.psql(cluster.replica, "SELECT pg_wal_replay_pause()")
        paused = True
        # A write goes to the primary; the list, read from the replica, does not show it yet.
        status, body = http_post(f"{base}{ITEMS}", json.dumps({"name": "unseen"}).encode(), PROXY_HEADERS)
        assert status == 201, body
        assert item_names(base) == {"before"}, "the list was not read from the (paused) replica"
        # The read that fills the cache, after the write's invalidation has expired, must see the
        # write: it reads from the primary, whatever the replica's lag.
        patch_name(base, item_id, "after")
        time.sleep(PAST_THE_MARKER)
        assert item_name(base, item_id) == "after"
        assert item_name(base, item_id) == "after", "the cache was filled with the replica's older row"

        cluster.psql(cluster.replica, "SELECT pg_wal_replay_resume()")
        paused = False
        cluster.wait_for_replay()
        assert item_names(base) == {"after", "unseen"}
    finally:
        if paused:
            cluster.psql(cluster.replica, "SELECT pg_wal_replay_resume()")
        server.stop()
        cluster.psql(cluster.primary, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
