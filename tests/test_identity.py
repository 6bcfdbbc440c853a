"""Compose's identity profile: a real OpenID Connect provider whose tokens the service accepts.

The profile's provider (``identity/provider.mjs``, panva's oidc-provider) runs here as its
container would, ``node provider.mjs`` after ``npm ci``, and the service runs its production
command with the settings ``make identity`` gives it: the issuer that tokens name
(``localhost``) and the key set at another address, as compose's network has it. Tokens are
asked for as the README says, with ``make identity-token``'s command; ownership and scopes are
then checked end to end. No Docker here: the profile's compose service and Dockerfile are
checked statically (the compose-spec and hadolint).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BIN, check_jsonschema, render, run, server_command, unavailable, uv_env, uv_sync

from bench.harness import Server, free_port, on_loopback
from extensions import dependencies

ANSWERS = {
    "framework": "fastapi",
    "database": "sqlite",
    "cache": "none",
    "task_queue": "none",
    "auth": "oidc",
    "docker": True,
    "ci": "none",
}
ITEMS = "/api/v1/items"
#: One render, one provider and one server for the module: its tests run on one worker.
pytestmark = pytest.mark.xdist_group("identity")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = render(tmp_path_factory.mktemp("identity") / "service", ANSWERS)
    uv_sync(path, "3.13")
    return path


def dotenv(service: Path) -> dict[str, str]:
    lines = (service / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_profile_is_one_provider_on_loopback_that_the_app_is_pointed_at(service: Path) -> None:
    base, profile = service / "compose.yaml", service / "identity" / "compose.yaml"
    for path in (base, profile):
        result = check_jsonschema("vendor.compose-spec", path)
        assert result.returncode == 0, result.stdout + result.stderr
    # `make identity` merges the profile's file over the service's: one service, in the profile.
    services = yaml.safe_load(profile.read_text())["services"]
    assert set(services) == {"identity"}
    assert not set(services) & set(yaml.safe_load(base.read_text())["services"])
    identity = services["identity"]
    assert identity["profiles"] == ["identity"]
    # Relative to the first file's folder, as compose resolves paths of merged files.
    assert identity["build"] == "./identity"
    assert (service / identity["build"] / "Dockerfile").is_file()
    assert identity["ports"] == ["127.0.0.1:8081:8081"]
    assert identity["environment"]["ISSUER"] == "http://localhost:8081"
    app = yaml.safe_load(base.read_text())["services"]["app"]
    assert app["environment"]["OIDC_JWKS_URL"] == "${OIDC_JWKS_URL:-}"
    # `make identity` points the app at it: tokens name localhost, the keys are at identity:8081.
    makefile = (service / "Makefile").read_text()
    assert "OIDC_ISSUER=http://localhost:8081 OIDC_JWKS_URL=http://identity:8081/jwks" in makefile
    assert "docker compose --file compose.yaml --file identity/compose.yaml --profile identity up" in makefile
    # The secret is made at copy time, kept in .env (never committed), and never in compose.
    assert len(dotenv(service)["IDENTITY_CLIENT_SECRET"]) >= 40
    assert ".env" in (service / ".gitignore").read_text().splitlines()
    assert identity["environment"]["IDENTITY_CLIENT_SECRET"] == "${IDENTITY_CLIENT_SECRET:-}"


def test_the_providers_dockerfile_passes_hadolint_and_pins_its_base(service: Path) -> None:
    dockerfile = service / "identity" / "Dockerfile"
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"
    assert f"FROM {dependencies.IMAGES['node']}\n" in dockerfile.read_text()
    lock = json.loads((service / "identity" / "package-lock.json").read_text())
    manifest = json.loads((service / "identity" / "package.json").read_text())
    assert lock["packages"][""]["dependencies"] == manifest["dependencies"], "package-lock.json is stale"


@pytest.fixture(scope="module")
def provider(service: Path) -> Iterator[str]:
    """The profile's provider, run as its container runs it; yields its issuer URL."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        unavailable("the identity profile's provider needs node and npm")
    folder = service / "identity"
    run([npm, "ci", "--omit=dev", "--no-audit", "--no-fund", "--silent"], folder, timeout=300)
    port = free_port()
    issuer = f"http://localhost:{port}"
    env = {
        **uv_env(),
        "ISSUER": issuer,
        "PORT": str(port),
        "IDENTITY_CLIENT_SECRET": dotenv(service)["IDENTITY_CLIENT_SECRET"],
    }
    process = Server([node, "provider.mjs"], folder, env, folder / "provider.log").start()
    try:
        process.wait_until_serving(f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=30)
        yield issuer
    finally:
        process.stop()


@pytest.fixture(scope="module")
def api(service: Path, provider: str) -> Iterator[str]:
    """The service's production command, trusting the provider as `make identity` has it."""
    env = {
        **uv_env(),
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{service}/identity.db",
        "OIDC_ISSUER": provider,
        "OIDC_JWKS_URL": provider.replace("localhost", "127.0.0.1") + "/jwks",
        "AUTH_DEV_KEY": "",
        "METRICS_PORT": str(free_port()),
    }
    env["PATH"] = f"{service / '.venv' / 'bin'}:{env['PATH']}"
    run(["alembic", "upgrade", "head"], service, env, timeout=120)
    port = free_port()
    server = Server(on_loopback(server_command(service), port), service, env, service / "server.log").start()
    try:
        server.wait_until_serving(f"http://127.0.0.1:{port}/healthz", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def token(service: Path, provider: str, client: str, *scopes: str) -> subprocess.CompletedProcess[str]:
    """``make identity-token CLIENT=... CLIENT_SCOPES=...``, without make."""
    command = ["uv", "run", "--env-file", ".env", "python", "-m", "orders_api.dev_token", "--provider", provider]
    command += ["--client", client, *(arg for scope in scopes for arg in ("--scope", scope))]
    return subprocess.run(command, cwd=service, env=uv_env(), capture_output=True, text=True, timeout=60, check=False)


def call(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_the_providers_tokens_carry_the_scopes_each_client_may_have(service: Path, provider: str) -> None:
    granted = token(service, provider, "alice", "items:read")
    assert granted.returncode == 0, granted.stderr
    refused = token(service, provider, "alice", "items:admin")
    assert refused.returncode == 1
    assert "invalid_scope" in refused.stderr
    wrong_secret = subprocess.run(
        ["uv", "run", "python", "-m", "orders_api.dev_token", "--provider", provider, "--client", "bob"],
        cwd=service,
        env={**uv_env(), "IDENTITY_CLIENT_SECRET": "not-the-secret"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert wrong_secret.returncode == 1
    assert "invalid_client" in wrong_secret.stderr


def test_the_service_accepts_the_providers_tokens_with_their_scopes_and_owners(
    service: Path, provider: str, api: str
) -> None:
    def bearer(client: str, *scopes: str) -> str:
        result = token(service, provider, client, *scopes)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    alice, bob = bearer("alice", "items:read", "items:write"), bearer("bob", "items:read", "items:write")
    admin = bearer("admin", "items:read", "items:write", "items:admin")
    reader = bearer("alice", "items:read")

    status, item = call("POST", f"{api}{ITEMS}", alice, {"name": "alice's"})
    assert status == 201, item
    assert item["owner"] == "alice"
    url = f"{api}{ITEMS}/{item['id']}"
    assert call("GET", url, reader)[0] == 200
    assert call("POST", f"{api}{ITEMS}", reader, {"name": "x"})[0] == 403
    status, problem = call("PATCH", url, bob, {"name": "bob's"})
    assert (status, problem["status"]) == (403, 403), problem
    assert call("PATCH", url, alice, {"name": "still alice's"})[0] == 200
    assert call("DELETE", url, admin)[0] == 204
    assert call("GET", url, reader)[0] == 404
