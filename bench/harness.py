"""What the sections share: rendering, environments, databases, servers and clocks."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

REPO = Path(__file__).resolve().parents[1]
HELLO = Path(__file__).resolve().parent / "hello"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from extensions import options

#: Without tokens but in the ``authenticated`` scenario, which asks for ``auth=oidc``.
BASE_ANSWERS = {"project_name": "Orders API", "author_email": "team@example.com", "auth": "none"}
PACKAGE = "orders_api"
#: The repository environment's uv and copier, so every run uses the same versions.
BIN = Path(sys.executable).parent
UV = str(BIN / "uv") if (BIN / "uv").exists() else "uv"
COPIER = str(BIN / "copier") if (BIN / "copier").exists() else "copier"
SERVICES = {
    "postgres": os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    "redis": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
}
#: Production mode, as the image runs; Django's production settings redirect plain HTTP, so
#: every request says it came through the TLS proxy.
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}


def implemented_frameworks() -> list[str]:
    return [name for name, framework in options.FRAMEWORKS.items() if framework.implemented]


def clock() -> float:
    return time.perf_counter()


def answers_for(framework: str, **answers: Any) -> dict[str, Any]:
    return {**BASE_ANSWERS, "framework": framework, **answers}


def render(destination: Path, answers: Mapping[str, Any]) -> Path:
    """Render in this process, from the checkout (HEAD plus uncommitted changes), as the tests do."""
    import copier

    shutil.rmtree(destination, ignore_errors=True)
    copier.run_copy(
        str(REPO), str(destination), data=dict(answers), defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True
    )
    return destination


def copier_cli(destination: Path, answers: Mapping[str, Any]) -> list[str]:
    """The `copier copy` command line a person would type for these answers."""
    data = [arg for key, value in answers.items() for arg in ("--data", f"{key}={value}")]
    return [COPIER, "copy", "--quiet", "--trust", "--defaults", "--vcs-ref", "HEAD", *data, str(REPO), str(destination)]


def python_for(version: str) -> str:
    """pyenv's interpreter for ``version`` when there is one, else let uv find it."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(root.glob(f"versions/{version}.*/bin/python{version}"))
    return str(candidates[-1]) if candidates else version


def clean_env() -> dict[str, str]:
    """This environment without the variables that would point a service or uv elsewhere."""
    drop = ("VIRTUAL_ENV", "UV_PROJECT", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("PYTHONPATH", None)
    # Each process would compile every module it imports again (tests/conftest.py, uv_env).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


def run(cmd: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 900) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {result.returncode} in {cwd}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def uv_sync(project: Path, python_version: str = "3.13") -> Path:
    """The project's environment from the shared uv cache; returns its bin directory."""
    run([UV, "sync", "--quiet", "--python", python_for(python_version)], project, clean_env())
    return project / ".venv" / "bin"


def load_average() -> float:
    return os.getloadavg()[0]


def session_cpu_seconds(session: int) -> float:
    """User plus system CPU time of every live process in a session (a server and its workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[3]) == session:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


#: The kernel's ephemeral ports, which outgoing connections take their source port from.
EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Where free_port looks: above the well-known services' ports, below the ephemeral range.
LISTEN_PORTS_FROM = 10_000


def free_port() -> int:
    """A loopback port nothing listens on, for a server about to start.

    Chosen below the ephemeral range: a port the kernel hands out for ``bind(0)`` comes from that
    range, and another process's connection to PostgreSQL or Redis can take it as its source port
    before the server binds it ("Address already in use": seen when the benchmark started four
    servers at once). Random, so the two xdist workers seldom try the same one; checked by binding.
    """
    first_ephemeral = int(EPHEMERAL_PORTS.read_text().split()[0]) if EPHEMERAL_PORTS.exists() else 32768
    for _ in range(200):
        port = secrets.choice(range(LISTEN_PORTS_FROM, first_ephemeral))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LISTEN_PORTS_FROM} and {first_ephemeral}")


def on_loopback(command: list[str], port: int) -> list[str]:
    """The container's command (0.0.0.0:8000) moved to 127.0.0.1:port."""
    moved = list(command)
    if "--host" in moved and "--port" in moved:
        moved[moved.index("--host") + 1] = "127.0.0.1"
        moved[moved.index("--port") + 1] = str(port)
        return moved
    for flag in ("--bind", "-b"):
        if flag in moved:
            moved[moved.index(flag) + 1] = f"127.0.0.1:{port}"
            return moved
    raise ValueError(f"cannot tell how to move {command} to another port: teach on_loopback() its flags")


def production_command(framework: str, package: str = PACKAGE) -> list[str]:
    return [part.format(package=package) for part in options.FRAMEWORKS[framework].command]


def hello_command(framework: str) -> list[str]:
    """The production command serving bench/hello/hello_<framework>.py instead of the service.

    The module argument is swapped: ``-m {package}.server`` becomes ``-m hello_flask``, which
    hands its app to the rendered service's own server module, and ``-m {package}`` (Sanic)
    ``-m hello_sanic``; everything else (server settings, workers) stays the service's own.
    """
    module = f"hello_{framework}"
    if not (HELLO / f"{module}.py").is_file():
        raise FileNotFoundError(f"no bare hello-world for {framework}: add bench/hello/{module}.py")
    return [
        module if part == "{package}" or part.startswith("{package}.") else part
        for part in options.FRAMEWORKS[framework].command
    ]


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_post(url: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    return http_send("POST", url, body, headers)


def http_patch(url: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    return http_send("PATCH", url, body, headers)


def http_send(method: str, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """A JSON body sent with ``method``; the status and body of the answer, an error's included."""
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Database:
    """A throwaway PostgreSQL database on the server at ``admin_url``, created anew and dropped on exit.

    The benchmarks and the template's tests both use it.
    """

    def __init__(self, name: str, admin_url: str = SERVICES["postgres"]) -> None:
        self.admin_url = admin_url
        self.name = name
        self.url = urlsplit(self.admin_url)._replace(path=f"/{self.name}").geturl()

    def _psql(self, sql: str) -> None:
        psql = shutil.which("psql")
        if not psql:
            raise RuntimeError("psql is needed to create throwaway databases: `apt-get install postgresql-client`")
        run([psql, self.admin_url, "-v", "ON_ERROR_STOP=1", "-qc", sql], REPO)

    def __enter__(self) -> Self:
        self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._psql(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def migrate(project: Path, env: Mapping[str, str]) -> None:
    """What the compose file's migrate service runs."""
    bin_dir = project / ".venv" / "bin"
    if (project / "manage.py").exists():
        run([str(bin_dir / "python"), "manage.py", "migrate", "--no-input"], project, env)
    elif (project / "alembic.ini").exists():
        run([str(bin_dir / "alembic"), "upgrade", "head"], project, env)


def production_env(**extra: str) -> dict[str, str]:
    """A production server's environment. Every request comes from one address here, so the
    per-client rate limit is off unless ``extra`` sets RATE_LIMIT (its cost is measured apart).
    Many servers run side by side here: none serves metrics unless ``extra`` sets METRICS_PORT."""
    base = {"ENVIRONMENT": "production", "SECRET_KEY": secrets.token_urlsafe(48), "RATE_LIMIT": "", "METRICS_PORT": "0"}
    return {**clean_env(), **base, **extra}


class LocalHTTPServer:
    """An HTTP server in this process, on a free loopback port, serving in a thread while the
    ``with`` block lasts; ``url`` is its address."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.name = name

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, name=self.name, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class OtlpSink(LocalHTTPServer):
    """A local OpenTelemetry collector's receiving end: OTLP over HTTP, every export answered 200.

    The services send their spans here when OTEL_EXPORTER_OTLP_ENDPOINT is ``endpoint``. It counts
    the exports and their bytes and, with ``keep``, keeps their bodies, which ``spans`` decodes
    (protobuf, with opentelemetry-proto); a benchmark's millions of spans are only counted.
    """

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.exports: list[bytes] = []
        self.received = self.received_bytes = 0
        self.lock = threading.Lock()
        sink = self

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with sink.lock:
                    sink.received += 1
                    sink.received_bytes += len(body)
                    if sink.keep:
                        sink.exports.append(body)
                # An empty ExportTraceServiceResponse: every span accepted.
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Receiver, "otlp-sink")
        self.endpoint = self.url

    def spans(self) -> list[tuple[dict[str, str], Span]]:
        """Every span received so far, with its resource's string attributes (``service.name``...)."""
        with self.lock:
            exports = list(self.exports)
        received = []
        for body in exports:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                received += [(resource, span) for scope in resource_spans.scope_spans for span in scope.spans]
        return received


class Provider(LocalHTTPServer):
    """An OpenID Connect provider's public side, for services generated with ``auth=oidc``.

    It serves its discovery document and key set (one RSA key) over HTTP, and signs tokens as a
    provider does: a service whose OIDC_ISSUER is ``issuer`` (``settings``) accepts them.
    """

    def __init__(self, audience: str = "orders-api") -> None:
        self.audience = audience
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                documents = {
                    "/.well-known/openid-configuration": {
                        "issuer": provider.issuer,
                        "jwks_uri": f"{provider.issuer}/certs",
                    },
                    "/certs": {"keys": [{**public, "kid": "bench", "alg": "RS256", "use": "sig"}]},
                }
                document = documents.get(self.path)
                body = json.dumps(document).encode()
                self.send_response(200 if document is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler, "oidc-provider")
        self.issuer = self.url

    @property
    def settings(self) -> dict[str, str]:
        """The environment that points a service at this provider; empty, the development key that
        copier wrote to the service's .env, which production refuses."""
        return {"OIDC_ISSUER": self.issuer, "OIDC_AUDIENCE": self.audience, "AUTH_DEV_KEY": ""}

    def token(self, scopes: str = "items:read items:write", minutes: float = 120) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": "bench", "scope": scopes}
        claims |= {"iat": now, "exp": now + int(minutes * 60)}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "bench"})

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}


class Server:
    """A server process in its own session, started and stopped as a unit."""

    def __init__(
        self, command: list[str], cwd: Path, env: Mapping[str, str], log: Path, *, cpus: str | None = None
    ) -> None:
        self.command = ["taskset", "-c", cpus, *command] if cpus else list(command)
        self.cwd = cwd
        self.env = dict(env)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        # The venv's console scripts first on PATH, as in the image.
        self.env["PATH"] = f"{self.cwd / '.venv' / 'bin'}{os.pathsep}{self.env.get('PATH', '')}"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_until_serving(self, url: str, timeout: float = 90) -> float:
        """Seconds until ``url`` first answers 200; raises with the log if it never does."""
        assert self.process is not None
        started = clock()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command} exited {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                if http_get(url, PROXY_HEADERS, timeout=2)[0] == 200:
                    return clock() - started
            if clock() - started > timeout:
                raise RuntimeError(f"no 200 from {url} within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.02)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return session_cpu_seconds(self.process.pid)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Config:
    """What one run measures, and how hard."""

    frameworks: list[str]
    sections: list[str]
    workdir: Path
    repetitions: int = 3
    #: Seconds of load per measurement, after ``warmup`` seconds of discarded load.
    seconds: float = 8
    warmup: float = 2
    connections: int = 32
    workers: int = 1
    #: taskset CPU lists for the server and wrk; None leaves placement to the scheduler.
    server_cpus: str | None = "0"
    client_cpus: str | None = "1"
    scenarios: list[str] = field(default_factory=list)
    #: Extra environment for the served processes (e.g. WEB_CONCURRENCY for an experiment).
    server_env: dict[str, str] = field(default_factory=dict)
    matrix_select: str | None = None
    matrix_workers: int = 2
    quick: bool = False
