"""The CI matrix command and the repository's own workflow that uses it.

Every combination the command prints is valid by the rules in options.py; ``--full`` holds
exactly the product of the runtime options minus the invalid combinations, ``--pairwise``
every pair of values; each format parses (GitHub's shards stay under the job limit, GitLab's
block validates as a job); filters narrow the set and bad values are refused with the rule's
message. The workflow validates against GitHub's schema and actionlint, its plan step prints
the command's matrix, and its job step points each combination at the services it uses.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BIN, REPO, actionlint, check_jsonschema, options, run, url_settings

from extensions import dependencies, matrix

OPTIONS = options.RUNTIME_OPTIONS + options.STATIC_OPTIONS
FORMATS = ["github", "gitlab", "json"]
MODES = ["--full", "--pairwise"]
WORKFLOWS = REPO / ".github" / "workflows"


def command(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m extensions.matrix ARGS`, as CI runs it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "extensions.matrix", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def emitted(*args: str) -> list[dict[str, Any]]:
    """The combinations the command prints, read back from whichever format was asked for."""
    result = command(*args)
    assert result.returncode == 0, result.stderr
    output_format = args[args.index("--format") + 1] if "--format" in args else "json"
    if output_format == "github":
        document = json.loads(result.stdout)
        return [entry["answers"] for shard in document["shard"] for entry in shard["include"]]
    if output_format == "gitlab":
        entries = yaml.safe_load(result.stdout)["parallel"]["matrix"]
        assert all(isinstance(value, str) for entry in entries for value in entry.values())
        return [{key: choice(key, value) for key, value in entry.items()} for entry in entries]
    combos: list[dict[str, Any]] = json.loads(result.stdout)
    return combos


def choice(question: str, text: str) -> Any:
    """The choice value a GitLab variable stands for ("true" for the flag True)."""
    matches = [v for v in options.CHOICES[question] if (str(v).lower() if isinstance(v, bool) else str(v)) == text]
    assert len(matches) == 1, f"{question}={text} is not one of {options.CHOICES[question]}"
    return matches[0]


def runtime(combo: dict[str, Any]) -> dict[str, Any]:
    return {q: combo[q] for q in options.RUNTIME_OPTIONS if q in combo}


def key(combo: dict[str, Any]) -> str:
    return json.dumps(combo, sort_keys=True)


def product_minus_invalid() -> set[str]:
    """Every product of the runtime values, questions that would not be asked dropped, that the rules accept."""
    found = set()
    for values in itertools.product(*(options.CHOICES[q] for q in options.RUNTIME_OPTIONS)):
        combo = options._normalise(dict(zip(options.RUNTIME_OPTIONS, values, strict=True)))
        if options.is_valid(combo):
            found.add(key(combo))
    return found


def pairs_of(combos: list[dict[str, Any]]) -> set[Any]:
    return {pair for combo in combos for pair in options._pairs(combo, OPTIONS)}


# --- the combinations ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("output_format", FORMATS)
def test_every_emitted_combination_is_valid_and_complete(output_format: str, mode: str) -> None:
    combos = emitted("--format", output_format, mode)
    assert combos
    for combo in combos:
        assert options.is_valid(combo), combo
        assert not options.combination_errors(combo), combo
        # Exactly the questions copier would ask with these answers (broker only with Celery).
        every = {q: combo.get(q, options.CHOICES[q][0]) for q in OPTIONS}
        assert set(combo) == set(options._normalise(every)), combo


@pytest.mark.parametrize("output_format", FORMATS)
def test_full_set_holds_every_combination_of_interacting_values(output_format: str) -> None:
    combos = emitted("--format", output_format, "--full")
    assert {key(runtime(c)) for c in combos} <= product_minus_invalid()
    interacting = options.interacting_combinations()
    assert [runtime(c) for c in combos[: len(interacting)]] == interacting
    assert {values for c in combos for values in options.interactions(c)} == options.required_interactions()


@pytest.mark.parametrize("output_format", FORMATS)
def test_pairwise_set_covers_every_pair(output_format: str) -> None:
    combos = emitted("--format", output_format, "--pairwise")
    assert pairs_of(combos) == options.required_pairs()
    assert len(combos) < len(emitted("--full"))


def test_full_set_covers_every_pair_too() -> None:
    assert pairs_of(emitted("--full")) == options.required_pairs()


def test_the_default_is_the_full_set_as_json() -> None:
    assert emitted() == emitted("--format", "json", "--full")


@pytest.mark.parametrize("framework", options.CHOICES["framework"])
def test_framework_filter_keeps_that_frameworks_combinations(framework: str) -> None:
    full = emitted("--framework", framework)
    assert {key(runtime(c)) for c in full} == {key(runtime(c)) for c in options.covering_renders(framework=framework)}
    pairwise = emitted("--pairwise", "--framework", framework)
    assert all(c["framework"] == framework for c in full + pairwise)
    candidates = [
        {**combo, **statics}
        for combo in options.runtime_combinations(framework=framework)
        for statics in options._static_assignments()
    ]
    assert pairs_of(pairwise) == pairs_of(candidates)


def test_static_and_multi_value_filters() -> None:
    gitlab = emitted("--pairwise", "--ci", "gitlab", "--docker", "no")
    assert gitlab and all(c["ci"] == "gitlab" and c["docker"] is False for c in gitlab)
    candidates = [
        {**combo, **statics}
        for combo in options.runtime_combinations()
        for statics in options._static_assignments(ci="gitlab", docker=False)
    ]
    assert pairs_of(gitlab) == pairs_of(candidates)
    both = emitted("--database", "postgresql,sqlite")
    assert {key(runtime(c)) for c in both} == {
        key(runtime(c)) for c in options.covering_renders(database=["postgresql", "sqlite"])
    }
    assert emitted("--database", "postgresql", "--database", "sqlite") == both


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database", "mysql"], "database 'mysql' is not supported: choose one of"),
        (["--docker", "maybe"], "docker 'maybe' is not supported: choose one of true, false"),
        (["--database", "none", "--cache", "none"], "no supported combination matches these filters"),
        (["--max-jobs", "0"], "--max-jobs must be at least 1"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(args: list[str], message: str) -> None:
    result = command(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not result.stdout


def test_every_option_has_a_filter_flag() -> None:
    help_text = command("--help").stdout
    for question in OPTIONS:
        assert f"--{question.replace('_', '-')} VALUE" in help_text, question


# --- the formats -----------------------------------------------------------------------------


def test_github_matrix_is_one_shard_within_the_limit() -> None:
    document = json.loads(command("--format", "github").stdout)
    entries = document["shard"][0]["include"]
    assert len(document["shard"]) == math.ceil(len(entries) / matrix.GITHUB_MAX_JOBS) == 1
    assert all(set(entry) == {"name", "answers"} for entry in entries)
    assert len({entry["name"] for entry in entries}) == len(entries), "job names repeat"


@pytest.mark.parametrize("max_jobs", [1, 7, 29])
def test_github_matrix_is_sharded_past_the_limit(max_jobs: int) -> None:
    whole = json.loads(command("--format", "github").stdout)["shard"][0]["include"]
    shards = json.loads(command("--format", "github", "--max-jobs", str(max_jobs)).stdout)["shard"]
    assert len(shards) == math.ceil(len(whole) / max_jobs)
    assert all(0 < len(shard["include"]) <= max_jobs for shard in shards)
    assert [entry for shard in shards for entry in shard["include"]] == whole


def test_github_limit_is_githubs() -> None:
    assert matrix.GITHUB_MAX_JOBS == 256
    combos = [{"framework": "x", "n": n} for n in range(600)]
    shards = matrix.github(combos)["shard"]
    assert [len(s["include"]) for s in shards] == [200, 200, 200]


def test_gitlab_block_validates_as_a_job(tmp_path: Path) -> None:
    block = yaml.safe_load(command("--format", "gitlab", "--pairwise").stdout)
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(yaml.safe_dump({"render": {"script": ["echo $framework"], **block}}))
    result = check_jsonschema("vendor.gitlab-ci", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_refuses_more_jobs_than_one_matrix_may_have() -> None:
    with pytest.raises(matrix.MatrixError, match="exceed GitLab's 200 jobs"):
        matrix.gitlab([{"framework": "x"}] * 201)


# --- the repository's workflow ---------------------------------------------------------------


def load(name: str) -> dict[Any, Any]:
    workflow: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return workflow


@pytest.mark.parametrize("name", ["template.yml", "template-combinations.yml"])
def test_workflow_validates_against_the_github_schema(name: str) -> None:
    result = check_jsonschema("vendor.github-workflows", WORKFLOWS / name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_actionlint() -> None:
    assert actionlint(sorted(WORKFLOWS.glob("*.yml"))) == ""


def test_plan_job_feeds_the_shards_to_the_combination_workflow() -> None:
    jobs = load("template.yml")["jobs"]
    assert jobs["combinations"]["needs"] == "plan"
    assert jobs["combinations"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert jobs["combinations"]["uses"] == "./.github/workflows/template-combinations.yml"
    assert jobs["combinations"]["with"] == {"matrix": "${{ toJSON(matrix.shard) }}"}
    service = load("template-combinations.yml")["jobs"]["service"]
    assert service["strategy"]["matrix"] == "${{ fromJSON(inputs.matrix) }}"


@pytest.mark.parametrize(("mode", "framework"), [("full", ""), ("pairwise", ""), ("full", "flask,fastapi")])
def test_plan_step_prints_the_commands_matrix(mode: str, framework: str, tmp_path: Path) -> None:
    step = next(s for s in load("template.yml")["jobs"]["plan"]["steps"] if s.get("id") == "plan")
    output = tmp_path / "output"
    output.write_text("")
    python = tmp_path / "bin"
    python.mkdir()
    (python / "python3").symlink_to(sys.executable)
    env = {
        **os.environ,
        "PATH": f"{python}{os.pathsep}{os.environ['PATH']}",
        "MODE": mode,
        "FRAMEWORK": framework,
        "GITHUB_OUTPUT": str(output),
    }
    run(["bash", "-e", "-c", step["run"]], REPO, env)
    name, _, value = output.read_text().strip().partition("=")
    expected = ["--format", "github", f"--{mode}"] + (["--framework", framework] if framework else [])
    assert name == "matrix" and json.loads(value) == json.loads(command(*expected).stdout)


def test_combination_job_points_each_combination_at_the_services_it_chose(tmp_path: Path) -> None:
    steps = load("template-combinations.yml")["jobs"]["service"]["steps"]
    step = next(s for s in steps if s.get("name", "").startswith("Point the service"))
    for combo in emitted("--full"):
        (tmp_path / "answers.json").write_text(json.dumps(combo))
        env = {**os.environ, "RUNNER_TEMP": str(tmp_path), "GITHUB_ENV": str(tmp_path / "env")}
        (tmp_path / "env").write_text("")
        run(["bash", "-e", "-c", step["run"]], tmp_path, env)
        urls = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
        assert set(urls) == url_settings(combo), combo
        if combo["task_queue"] == "celery":
            scheme = "redis://" if combo["broker"] == "redis" else "amqp://"
            assert urls["CELERY_BROKER_URL"].startswith(scheme), combo


def test_combination_job_renders_the_combinations_answers(tmp_path: Path) -> None:
    """The render step, run as written; `uv run --locked` is this environment's copier."""
    steps = load("template-combinations.yml")["jobs"]["service"]["steps"]
    step = next(s for s in steps if s.get("name") == "Render the combination")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "uv").write_text(
        f'#!/usr/bin/env bash\n[ "$1 $2" = "run --locked" ] && shift 2\nexec "{BIN}/$1" "${{@:2}}"\n'
    )
    (stubs / "uv").chmod(0o755)
    combo = next(c for c in emitted("--pairwise") if c["ci"] == "gitlab" and not c["docker"])
    env = {
        **os.environ,
        "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path),
        "ANSWERS": json.dumps(combo),
    }
    run(["bash", "-e", "-c", step["run"]], REPO, env)
    answers = yaml.safe_load((tmp_path / "service" / ".copier-answers.yml").read_text())
    assert {q: answers[q] for q in combo} == combo
    assert (tmp_path / "service" / ".gitlab-ci.yml").is_file()
    assert not (tmp_path / "service" / "Dockerfile").exists()


def test_workflow_uses_the_images_and_actions_the_generated_services_use() -> None:
    service = load("template-combinations.yml")["jobs"]["service"]
    images = {name: spec["image"] for name, spec in service["services"].items()}
    assert images == {
        "postgres": dependencies.IMAGES["postgres"],
        "redis": dependencies.IMAGES["redis"],
        "rabbitmq": dependencies.IMAGES["rabbitmq"],
    }
    uses = {step["uses"] for step in service["steps"] if "uses" in step}
    assert dependencies.IMAGES["setup-uv"] in uses


def test_readme_and_docs_document_the_command() -> None:
    readme = (REPO / "README.md").read_text()
    docs = (REPO / "docs" / "matrix.md").read_text()
    assert "python -m extensions.matrix" in readme
    for flag in ("--format github", "--format gitlab", "--format json", "--full", "--pairwise", "--framework"):
        assert flag in docs, flag
