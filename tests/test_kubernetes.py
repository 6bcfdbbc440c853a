"""The Kubernetes manifests of generated services (``k8s/``, with ``docker`` and a database
server or none): every overlay renders with kubectl's kustomize and validates against the
schemas of the Kubernetes versions we claim; the commands and environment are the ones the
image and compose.yaml run and the tests run for real; the pods are confined as the Dockerfile
expects; and the service really runs so confined.

The static checks render a few combinations once per module: one per server kind (uvicorn,
Granian, Sanic), with and without Celery and a database. The read-only root filesystem test
builds the image's stand-in without Docker (as tests/test_container_and_ci.py does), then runs
the manifests' own commands with their own environment in a mount namespace where every
filesystem is read-only but the manifests' emptyDir volumes (fresh tmpfs mounts), as root
(which file permissions would not stop) with HOME where the image's user has it.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import (
    REPO,
    actionlint,
    check_jsonschema,
    database_name,
    options,
    render,
    require_service,
    run,
    server_command,
    unavailable,
    url_settings,
)
from test_container_and_ci import Image

from bench.harness import Database, free_port, http_get, on_loopback

#: The Kubernetes versions the manifests are validated for: the three newest minor versions
#: whose schemas the installed kubernetes-validate ships (docs/deploying.md claims them).
CLAIMED_VERSIONS = sorted(
    {v for v in kubernetes_validate.utils.all_versions() if re.fullmatch(r"\d+\.\d+\.\d+", v)},
    key=lambda v: tuple(map(int, v.split("."))),
)[-3:]
OVERLAYS = ("staging", "production")
PACKAGE = "orders_api"
SLUG = "orders-api"
#: The image's user: ``USER 10001:10001`` in the Dockerfile, and its home (``useradd --home-dir``).
IMAGE_USER = 10001
IMAGE_HOME = "/nonexistent"

COMBOS: dict[str, dict[str, Any]] = {
    "fastapi-full": {
        "framework": "fastapi",
        "database": "postgresql",
        "cache": "redis",
        "task_queue": "celery",
        "broker": "rabbitmq",
        "auth": "oidc",
        "ci": "github",
    },
    "django-full": {
        "framework": "django",
        "database": "postgresql",
        "cache": "redis",
        "task_queue": "celery",
        "broker": "redis",
        "ci": "gitlab",
    },
    "flask-redis-only": {
        "framework": "flask",
        "database": "none",
        "cache": "redis",
        "task_queue": "none",
        "ci": "none",
    },
    "sanic-postgresql": {
        "framework": "sanic",
        "database": "postgresql",
        "cache": "none",
        "task_queue": "none",
        "ci": "github",
    },
    "starlette-postgresql-redis": {
        "framework": "starlette",
        "database": "postgresql",
        "cache": "redis",
        "task_queue": "none",
        "ci": "github",
    },
    "quart-redis-celery": {
        "framework": "quart",
        "database": "none",
        "cache": "redis",
        "task_queue": "celery",
        "broker": "redis",
        "ci": "none",
    },
}
CASES = [pytest.param(name, id=name, marks=pytest.mark.xdist_group(f"kubernetes-{name}")) for name in COMBOS]
CELERY_CASES = [case for case in CASES if COMBOS[str(case.values[0])]["task_queue"] == "celery"]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        unavailable("kubectl is not installed: it renders the overlays (`kubectl kustomize`)")
    return found


class Manifests:
    """One rendered service and its overlays, each rendered by ``kubectl kustomize``."""

    def __init__(self, path: Path, answers: dict[str, Any]) -> None:
        self.path = path
        self.answers = answers
        self.overlays = {name: self._kustomize(name) for name in OVERLAYS}

    def _kustomize(self, overlay: str) -> list[dict[str, Any]]:
        text = run([kubectl(), "kustomize", str(self.path / "k8s" / "overlays" / overlay)], self.path)
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def of(self, overlay: str, kind: str) -> dict[str, dict[str, Any]]:
        """The overlay's resources of one kind, by name."""
        return {doc["metadata"]["name"]: doc for doc in self.overlays[overlay] if doc["kind"] == kind}

    def workloads(self, overlay: str) -> dict[str, dict[str, Any]]:
        """Deployments and Jobs by their component label (web, worker, beat, migrate)."""
        return {
            doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
            for doc in self.overlays[overlay]
            if doc["kind"] in {"Deployment", "Job"}
        }

    def container(self, overlay: str, component: str) -> dict[str, Any]:
        containers = self.workloads(overlay)[component]["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1, f"{component}: expected one container, got {containers}"
        return containers[0]

    def settings(self, overlay: str) -> dict[str, str]:
        """The ConfigMap's settings (there is one)."""
        (config_map,) = self.of(overlay, "ConfigMap").values()
        return dict(config_map["data"])

    def environment(self, overlay: str, component: str) -> tuple[set[str], dict[str, tuple[str, str]]]:
        """A container's settings: names from ConfigMaps, and secret names to (Secret, key)."""
        container = self.container(overlay, component)
        config_maps = {ref["configMapRef"]["name"] for ref in container.get("envFrom", [])}
        assert config_maps == set(self.of(overlay, "ConfigMap")), f"{component} reads {config_maps}"
        plain = [entry for entry in container.get("env", []) if "value" in entry]
        assert not plain, f"{component} sets values in the manifest, not the ConfigMap: {plain}"
        secret_refs = {
            entry["name"]: (entry["valueFrom"]["secretKeyRef"]["name"], entry["valueFrom"]["secretKeyRef"]["key"])
            for entry in container.get("env", [])
        }
        return set(self.settings(overlay)), secret_refs

    @property
    def compose(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "compose.yaml").read_text())["services"]

    def shutdown_timeout(self) -> float:
        """Seconds the server gives requests in flight on SIGTERM, read from the server's code."""
        server = self.path / "src" / PACKAGE / "server.py"
        source = server.read_text() if server.exists() else (self.path / "src" / PACKAGE / "app.py").read_text()
        found = re.search(r'^\s*"?(?:GRACEFUL_)?SHUTDOWN_TIMEOUT"?\s*[:=]\s*([\d.]+)', source, re.MULTILINE)
        assert found, "no SHUTDOWN_TIMEOUT in the server's code"
        return float(found.group(1))


_MANIFESTS: dict[str, Manifests] = {}


@pytest.fixture
def manifests(combo: str, tmp_path_factory: pytest.TempPathFactory) -> Manifests:
    if combo not in _MANIFESTS:
        answers = {"docker": True, **COMBOS[combo]}
        path = render(tmp_path_factory.mktemp(combo) / "service", answers)
        _MANIFESTS[combo] = Manifests(path, answers)
    return _MANIFESTS[combo]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


# --- rendering and schemas ------------------------------------------------------------------


def test_claimed_versions_are_the_newest_three_with_schemas() -> None:
    assert len(CLAIMED_VERSIONS) == 3
    assert CLAIMED_VERSIONS[-1] == kubernetes_validate.utils.latest_version()
    docs = (REPO / "docs" / "deploying.md").read_text()
    claimed = ", ".join(".".join(v.split(".")[:2]) for v in CLAIMED_VERSIONS)
    assert f"Kubernetes {claimed}" in docs, f"docs/deploying.md does not claim Kubernetes {claimed}"


@pytest.mark.parametrize("combo", CASES)
def test_every_overlay_validates_against_the_claimed_kubernetes_schemas(manifests: Manifests) -> None:
    errors = []
    for overlay, docs in manifests.overlays.items():
        for doc in docs:
            for version in CLAIMED_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    errors.append(f"{overlay} {doc['kind']}/{doc['metadata']['name']} on {version}: {error.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    "mistake",
    [
        pytest.param(lambda c: c.update(readinessProbe={"httpGet": {"path": "/readyz"}}), id="probe-without-port"),
        pytest.param(lambda c: c["securityContext"].update(readOnlyRootFS=True), id="misspelt-field"),
        pytest.param(lambda c: c.update(ports=[{"containerPort": "8000"}]), id="port-as-a-string"),
    ],
)
@pytest.mark.parametrize("combo", ["flask-redis-only"])
def test_schema_validation_refuses_a_broken_manifest(mistake: Any, manifests: Manifests) -> None:
    """The validation above means something: a broken container is refused on every version."""
    (web,) = (doc for doc in manifests.overlays["production"] if doc["kind"] == "Deployment")
    broken = json.loads(json.dumps(web))
    mistake(broken["spec"]["template"]["spec"]["containers"][0])
    for version in CLAIMED_VERSIONS:
        kubernetes_validate.validate(web, version, strict=True)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, version, strict=True)


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param({"database": "sqlite", "docker": True}, id="sqlite"),
        pytest.param({"database": "postgresql", "docker": False}, id="no-docker"),
    ],
)
def test_no_manifests_without_an_image_or_with_sqlite(answers: dict[str, Any], tmp_path: Path) -> None:
    path = render(tmp_path / "service", {"framework": "fastapi", "cache": "none", "task_queue": "none", **answers})
    assert not (path / "k8s").exists()


@pytest.mark.parametrize("combo", CASES)
def test_overlays_hold_exactly_the_chosen_workloads(manifests: Manifests) -> None:
    answers = manifests.answers
    expected = {"web"}
    if answers["task_queue"] == "celery":
        expected |= {"worker", "beat"}
    if answers["database"] != "none":
        expected.add("migrate")
    for overlay in OVERLAYS:
        assert set(manifests.workloads(overlay)) == expected
        kinds = {doc["kind"] for doc in manifests.overlays[overlay]}
        assert kinds == {
            "ConfigMap",
            "Service",
            "Ingress",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Deployment",
            *(["Job"] if "migrate" in expected else []),
        }
        # Secrets are referenced, never shipped.
        assert "Secret" not in kinds


def test_the_longest_slug_makes_valid_names_labels_and_namespaces(tmp_path: Path) -> None:
    """Kubernetes' own rules, which the schemas leave out: DNS labels of at most 63 characters."""
    slug = "a" * (options.MAX_NAME - 6) + "-" + "b" * 5
    answers = {"docker": True, **COMBOS["django-full"], "project_slug": slug, "package_name": "orders_api"}
    manifests = Manifests(render(tmp_path / "service", answers), answers)
    label = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
    for overlay in OVERLAYS:
        for doc in manifests.overlays[overlay]:
            metadata = doc["metadata"]
            values = [metadata["namespace"], *metadata.get("labels", {}).values()]
            if doc["kind"] in {"Service", "Job"}:
                values.append(metadata["name"])  # a DNS label, and the label job-name of its pods
            assert all(label.fullmatch(value) for value in values), (doc["kind"], values)


# --- the commands and the environment -------------------------------------------------------


@pytest.mark.parametrize("combo", CASES)
def test_workloads_run_the_images_cmd_and_composes_commands(manifests: Manifests) -> None:
    framework = options.FRAMEWORKS[manifests.answers["framework"]]
    compose = manifests.compose
    for overlay in OVERLAYS:
        web = manifests.container(overlay, "web")
        # No command or args: the image's CMD, the production server the container tests run.
        assert "command" not in web and "args" not in web
        assert server_command(manifests.path) == [part.format(package=PACKAGE) for part in framework.command]
        workloads = manifests.workloads(overlay)
        if "migrate" in workloads:
            assert manifests.container(overlay, "migrate")["command"] == compose["migrate"]["command"]
        if "worker" in workloads:
            worker = manifests.container(overlay, "worker")["command"]
            base = compose["worker"]["command"]
            # compose's worker, with a fixed number of processes: Celery would start one per node CPU.
            assert worker[: len(base)] == base and worker[len(base)] == "--concurrency" and int(worker[-1]) >= 1
            assert manifests.container(overlay, "beat")["command"] == compose["beat"]["command"]


@pytest.mark.parametrize("combo", CASES)
def test_settings_are_composes_and_secrets_are_references(manifests: Manifests) -> None:
    answers = manifests.answers
    documented = {
        line.split("=", 1)[0] for line in (manifests.path / ".env.example").read_text().splitlines() if "=" in line
    }
    compose_env = manifests.compose["app"]["environment"]
    # SENTRY_DSN too, optional: error reports are on once the Secret has it.
    expected_secrets = {"SECRET_KEY", "SENTRY_DSN"} | url_settings(answers)
    if answers.get("auth") == "oidc":
        # The provider's address, as the Secret holds the other addresses.
        expected_secrets.add("OIDC_ISSUER")
    for overlay in OVERLAYS:
        settings = manifests.settings(overlay)
        assert settings["ENVIRONMENT"] == compose_env["ENVIRONMENT"] == "production"
        for component in manifests.workloads(overlay):
            names, secret_refs = manifests.environment(overlay, component)
            assert set(secret_refs) == expected_secrets, component
            assert all(ref == (f"{SLUG}-secrets", name) for name, ref in secret_refs.items()), secret_refs
            # Every variable compose gives the service, and only settings the service reads; but
            # where traces go and where the provider's keys are, which compose sets for its
            # observability and identity profiles (its collector, its provider).
            profiles = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OIDC_JWKS_URL"}
            assert set(compose_env) - profiles <= names | set(secret_refs), component
            assert names | set(secret_refs) <= documented, f"not in .env.example: {names - documented}"
        assert not names & set(secret_refs), "a setting is both in the ConfigMap and a secret"
        for value in settings.values():
            assert "://" not in value, f"a URL in the ConfigMap: {value}"


# --- confinement, probes, shutdown ----------------------------------------------------------


@pytest.mark.parametrize("combo", CASES)
def test_pods_run_as_the_images_user_on_a_read_only_root_filesystem(manifests: Manifests) -> None:
    dockerfile = (manifests.path / "Dockerfile").read_text()
    assert f"\nUSER {IMAGE_USER}:{IMAGE_USER}\n" in dockerfile
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile and "UV_COMPILE_BYTECODE=1" in dockerfile
    for overlay in OVERLAYS:
        for component, workload in manifests.workloads(overlay).items():
            pod = workload["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == IMAGE_USER
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert pod["automountServiceAccountToken"] is False
            container = manifests.container(overlay, component)
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            volumes = {volume["name"]: volume for volume in pod["volumes"]}
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            # The writable paths: emptyDirs only, the ones the read-only test provides.
            assert mounts == {"/tmp": "tmp"} and "emptyDir" in volumes["tmp"], (component, mounts, volumes)
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            assert set(requests) == set(limits) == {"cpu", "memory"}, component


@pytest.mark.parametrize("combo", CASES)
def test_web_probes_health_and_stops_within_its_grace_period(manifests: Manifests) -> None:
    dockerfile = (manifests.path / "Dockerfile").read_text()
    assert "\nEXPOSE 8000 9464\n" in dockerfile
    for overlay in OVERLAYS:
        web = manifests.container(overlay, "web")
        assert web["ports"] == [{"name": "http", "containerPort": 8000}, {"name": "metrics", "containerPort": 9464}]
        # The scrape annotations name the metrics port, which the Service leaves out.
        annotations = manifests.workloads(overlay)["web"]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == "9464"
        assert "METRICS_PORT" not in manifests.settings(overlay), "the annotations assume the default port"
        assert web["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert web["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert web["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        pod = manifests.workloads(overlay)["web"]["spec"]["template"]["spec"]
        # The endpoints go first (preStop), then the server drains; the kubelet kills after the
        # grace period, which counts the preStop too.
        pause = web["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause >= 3
        assert pod["terminationGracePeriodSeconds"] >= pause + manifests.shutdown_timeout() + 3
        strategy = manifests.workloads(overlay)["web"]["spec"]["strategy"]
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, "a rollout must not drop ready pods first"


@pytest.mark.parametrize("combo", CELERY_CASES)
def test_celery_pods_probe_and_stop_as_compose_runs_them(manifests: Manifests) -> None:
    compose = manifests.compose
    settings_source = "\n".join(p.read_text() for p in (manifests.path / "src" / PACKAGE).rglob("*.py"))
    time_limit = re.search(r"celery_task_time_limit: int = Field\(default=(\d+)", settings_source)
    assert time_limit
    for overlay in OVERLAYS:
        worker = manifests.container(overlay, "worker")
        shell = compose["worker"]["healthcheck"]["test"]
        assert shell[0] == "CMD-SHELL"
        assert worker["livenessProbe"]["exec"]["command"] == ["sh", "-c", shell[1].replace("$$", "$")]
        grace = manifests.workloads(overlay)["worker"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > int(time_limit.group(1)), "a running task cannot finish within the grace period"
        # The tasks' metrics, on the port and with the annotations of the web pods'.
        assert worker["ports"] == [{"name": "metrics", "containerPort": 9464}]
        annotations = manifests.workloads(overlay)["worker"]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == "9464"
        beat = manifests.container(overlay, "beat")
        assert beat["livenessProbe"]["exec"]["command"] == compose["beat"]["healthcheck"]["test"][1:]
        spec = manifests.workloads(overlay)["beat"]["spec"]
        assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"}), "two schedulers would overlap"


@pytest.mark.parametrize("combo", CASES)
def test_services_budgets_autoscaler_and_spread_select_their_pods(manifests: Manifests) -> None:
    for overlay in OVERLAYS:
        workloads = manifests.workloads(overlay)
        deployments = manifests.of(overlay, "Deployment")
        for component, workload in workloads.items():
            labels = pod_labels(workload)
            if workload["kind"] == "Deployment":
                assert selects(workload["spec"]["selector"]["matchLabels"], labels)
                if component != "beat":
                    (spread,) = workload["spec"]["template"]["spec"]["topologySpreadConstraints"]
                    assert spread["topologyKey"] == "kubernetes.io/hostname"
                    assert selects(spread["labelSelector"]["matchLabels"], labels)
        (service,) = manifests.of(overlay, "Service").values()
        assert [c for c, w in workloads.items() if selects(service["spec"]["selector"], pod_labels(w))] == ["web"]
        (ingress,) = manifests.of(overlay, "Ingress").values()
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
        (autoscaler,) = manifests.of(overlay, "HorizontalPodAutoscaler").values()
        assert autoscaler["spec"]["scaleTargetRef"]["name"] == workloads["web"]["metadata"]["name"]
        assert "replicas" not in deployments[workloads["web"]["metadata"]["name"]]["spec"], "fights the autoscaler"
        budgets = manifests.of(overlay, "PodDisruptionBudget").values()
        covered = sorted(
            c
            for b in budgets
            for c, w in workloads.items()
            if selects(b["spec"]["selector"]["matchLabels"], pod_labels(w))
        )
        assert covered == sorted(c for c in ("web", "worker") if c in workloads)


@pytest.mark.parametrize("combo", CASES)
def test_staging_and_production_differ_in_namespace_host_and_size(manifests: Manifests) -> None:
    hosts, namespaces = {}, {}
    for overlay in OVERLAYS:
        namespaces[overlay] = {doc["metadata"]["namespace"] for doc in manifests.overlays[overlay]}
        (ingress,) = manifests.of(overlay, "Ingress").values()
        (rule,) = ingress["spec"]["rules"]
        assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
        hosts[overlay] = rule["host"]
        if manifests.answers["framework"] == "django":
            # Django answers only the hosts it is told: the Ingress's.
            assert manifests.settings(overlay)["ALLOWED_HOSTS"] == rule["host"]
        for component in manifests.workloads(overlay):
            assert manifests.container(overlay, component)["image"].endswith(f"/{SLUG}:0.1.0")
    assert all(len(names) == 1 for names in namespaces.values()) and namespaces["staging"] != namespaces["production"]
    assert hosts["staging"] != hosts["production"]
    sizes = {
        overlay: next(iter(manifests.of(overlay, "HorizontalPodAutoscaler").values()))["spec"] for overlay in OVERLAYS
    }
    assert sizes["staging"]["minReplicas"] == 1 and sizes["production"]["minReplicas"] >= 2


@pytest.mark.parametrize("combo", [case for case in CASES if COMBOS[str(case.values[0])]["ci"] == "github"])
def test_github_ci_renders_every_overlay_and_fails_on_a_broken_one(manifests: Manifests, tmp_path: Path) -> None:
    path = manifests.path / ".github" / "workflows" / "ci.yml"
    assert check_jsonschema("vendor.github-workflows", path).returncode == 0
    assert actionlint([path]) == ""
    workflow = yaml.safe_load(path.read_text())
    (step,) = [s["run"] for s in workflow["jobs"]["docker"]["steps"] if "kubectl kustomize" in s.get("run", "")]
    kubectl()
    # As GitHub runs a step: bash with errexit and pipefail.
    shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step]
    run(shell, manifests.path)
    broken = shutil.copytree(manifests.path / "k8s", tmp_path / "k8s")
    with (broken / "overlays" / "staging" / "kustomization.yaml").open("a") as overlay:
        overlay.write("\nresources:\n  - missing.yaml\n")
    assert subprocess.run(shell, cwd=tmp_path, capture_output=True, timeout=60, check=False).returncode != 0


# --- the service on a read-only root filesystem ---------------------------------------------

#: Run a command in a mount namespace where every filesystem is read-only (as
#: readOnlyRootFilesystem makes the container's), with a fresh tmpfs on each emptyDir path.
CONFINE = """set -e
for target in $(findmnt -rn -o TARGET); do
    case "$target" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    mount -o remount,bind,ro "$target"
done
for path in {paths}; do mount -t tmpfs -o size=64m,mode=1777 tmpfs "$path"; done
exec "$@"
"""


def confined(command: list[str], writable: list[str]) -> list[str]:
    script = CONFINE.format(paths=" ".join(shlex.quote(path) for path in writable))
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", *command]


def tree_rss_mib(pid: int) -> float:
    """The resident memory of a process and all its descendants, in MiB (an upper bound of
    what the pod's cgroup would count: pages shared between the processes count once each)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return total / 1024


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def request(port: int, method: str, path: str, host: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One request as the Ingress forwards it: its host, over HTTPS."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": host, "X-Forwarded-Proto": "https", "Content-Type": "application/json"}
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        text = response.read()
        return response.status, json.loads(text) if text else None
    finally:
        connection.close()


def wait_for(check: Any, process: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"{what}: exited {process.returncode}:\n{log.read_text()}")
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s:\n{log.read_text()}")
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes], log: Path, what: str, grace: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"{what} did not stop within its grace period of {grace} s:\n{log.read_text()}")
    assert code == 0, f"{what} exited {code} on SIGTERM:\n{log.read_text()}"


@pytest.fixture(scope="module")
def outside_tmp() -> Iterator[Path]:
    """A work directory outside /tmp, which the confined processes get as a fresh tmpfs: in the
    repository, unless the repository is under /tmp itself (a CI checkout may be), then /var/tmp."""
    tmp = Path("/tmp").resolve()
    candidates = [REPO / ".cache", Path("/var/tmp"), Path.home() / ".cache"]
    parent = next(path for path in candidates if not path.resolve().is_relative_to(tmp))
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="kubernetes-", dir=parent))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def confinement_works() -> None:
    try:
        probe = subprocess.run(confined(["true"], []), capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as error:
        unavailable(f"unshare is not installed ({error})")
    if probe.returncode != 0:
        unavailable(f"cannot make a read-only mount namespace here (needs root): {probe.stderr.strip()}")


@pytest.mark.parametrize(
    "framework",
    [pytest.param(f, marks=pytest.mark.xdist_group(f"kubernetes-rootfs-{f}")) for f in ("fastapi", "django", "sanic")],
)
def test_service_runs_on_a_read_only_root_filesystem_within_its_resources(framework: str, outside_tmp: Path) -> None:
    """One per server kind (uvicorn, Granian, Sanic): the manifests' commands, environment and
    writable paths, against real PostgreSQL and Redis; the web server serves the probes and
    the example resource, the worker answers its liveness probe, beat keeps running, and each
    stays within the memory its manifest requests."""
    confinement_works()
    redis = require_service("redis")
    postgres = require_service("postgres")
    workdir = outside_tmp / framework
    answers = {"framework": framework, "database": "postgresql", "cache": "redis", "task_queue": "celery"}
    answers |= {"broker": "redis", "ci": "none", "docker": True}
    project = render(workdir / "service", answers)
    manifests = Manifests(project, answers)
    image = Image(project, workdir)
    overlay = "production"
    (ingress,) = manifests.of(overlay, "Ingress").values()
    host = ingress["spec"]["rules"][0]["host"]
    writable = sorted(
        {m["mountPath"] for c in manifests.workloads(overlay) for m in manifests.container(overlay, c)["volumeMounts"]}
    )
    run_id = secrets.token_hex(4)
    queue = f"test-k8s-{run_id}"

    with Database(database_name(f"kubernetes-{framework}"), postgres) as database:
        values = {
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": database.url,
            "REDIS_URL": redis,
            "CELERY_BROKER_URL": redis.rsplit("/", 1)[0] + "/1",
        }
        env = {**image.env, **manifests.settings(overlay), "HOME": IMAGE_HOME, "HOSTNAME": socket.gethostname()}
        env |= {"CELERY_QUEUE": queue, "CACHE_NAMESPACE": queue}
        # The Secret's keys; SENTRY_DSN, optional, is left out as a Secret may leave it.
        env |= {name: values[name] for name in manifests.environment(overlay, "web")[1] if name != "SENTRY_DSN"}
        # The confinement holds: the code, HOME and / are read-only to root itself; /tmp is not.
        for attempt, allowed in (
            (f"touch {shlex.quote(str(image.app))}/written", False),
            (f"mkdir -p {IMAGE_HOME}", False),
            ("touch /written", False),
            ("touch /tmp/written", True),
        ):
            result = subprocess.run(
                confined(["sh", "-c", attempt], writable), capture_output=True, timeout=30, check=False
            )
            assert (result.returncode == 0) == allowed, f"`{attempt}` {'failed' if allowed else 'succeeded'}"

        run(confined(manifests.container(overlay, "migrate")["command"], writable), image.app, env, timeout=180)
        logs = {name: workdir / f"{name}.log" for name in ("web", "worker", "beat")}
        port, metrics_port = free_port(), free_port()
        env["METRICS_PORT"] = str(metrics_port)
        processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            with logs["web"].open("wb") as output:
                processes["web"] = subprocess.Popen(
                    confined(on_loopback(image.cmd, port), writable),
                    cwd=image.app,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            web = processes["web"]
            wait_for(lambda: request(port, "GET", "/healthz", host)[0] == 200, web, logs["web"], "/healthz")
            status, readiness = request(port, "GET", "/readyz", host)
            assert (status, readiness["checks"]) == (200, {"database": "ok", "cache": "ok", "broker": "ok"})
            status, item = request(port, "POST", "/api/v1/items", host, {"name": "Widget"})
            assert status == 201, (status, item, logs["web"].read_text())
            assert request(port, "GET", f"/api/v1/items/{item['id']}", host)[1]["name"] == "Widget"
            assert request(port, "PATCH", f"/api/v1/items/{item['id']}", host, {"name": "Gadget"})[0] == 200
            assert request(port, "DELETE", f"/api/v1/items/{item['id']}", host)[0] == 204
            for _ in range(200):
                request(port, "GET", "/readyz", host)
            # The workers count into files under /tmp, the one writable directory.
            assert http_get(f"http://127.0.0.1:{metrics_port}/metrics")[0] == 200, logs["web"].read_text()
            usage = {"web": tree_rss_mib(web.pid)}

            # The worker's metrics port: on the loopback, and not the web server's, on this one host.
            worker_metrics_port = free_port()
            for name in ("worker", "beat"):
                with logs[name].open("wb") as output:
                    command = list(manifests.container(overlay, name)["command"])
                    own = dict(env)
                    if name == "worker":
                        command[command.index("--host") + 1] = "127.0.0.1"
                        own["METRICS_PORT"] = str(worker_metrics_port)
                    processes[name] = subprocess.Popen(
                        confined(command, writable), cwd=image.app, env=own, stdout=output, stderr=subprocess.STDOUT
                    )
            probe = manifests.container(overlay, "worker")["livenessProbe"]["exec"]["command"]

            def worker_answers() -> bool:
                ping = confined(probe, writable)
                return (
                    subprocess.run(
                        ping, cwd=image.app, env=env, capture_output=True, timeout=60, check=False
                    ).returncode
                    == 0
                )

            wait_for(worker_answers, processes["worker"], logs["worker"], "the worker's liveness probe", timeout=90)
            assert http_get(f"http://127.0.0.1:{worker_metrics_port}/metrics")[0] == 200, logs["worker"].read_text()
            usage["worker"] = tree_rss_mib(processes["worker"].pid)
            time.sleep(3)
            assert processes["beat"].poll() is None, logs["beat"].read_text()
            usage["beat"] = tree_rss_mib(processes["beat"].pid)
        finally:
            for name, process in reversed(processes.items()):
                grace = manifests.workloads(overlay)[name]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
                stop(process, logs[name], name, grace)
            # The run's queue and its binding, with the service's own Redis client.
            forget = "import sys, redis; redis.Redis.from_url(sys.argv[1]).delete(*sys.argv[2:])"
            python = str(image.app / ".venv" / "bin" / "python")
            run([python, "-c", forget, values["CELERY_BROKER_URL"], queue, f"_kombu.binding.{queue}"], image.app)
    for name, rss in usage.items():
        memory = manifests.container(overlay, name)["resources"]
        # The figure behind the sizes in docs/deploying.md.
        print(f"{framework} {name}: {rss:.0f} MiB resident")
        assert rss <= mebibytes(memory["requests"]["memory"]), f"{name} uses {rss:.0f} MiB, beyond its request"
        assert mebibytes(memory["limits"]["memory"]) >= 1.5 * rss, f"{name}'s limit leaves no room above {rss:.0f} MiB"
