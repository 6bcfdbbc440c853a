"""The README's commands work as written."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from conftest import REPO, uv_env

README = (REPO / "README.md").read_text()


def command_after(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```sh\n(.+?)\n```", README, re.DOTALL)
    assert match, f"README.md has no command marked {marker}"
    return match.group(1).strip()


def test_generate_command_works_against_this_checkout(tmp_path: Path) -> None:
    """The command as written, with the template URL pointing at this checkout.

    It is run non-interactively (defaults plus a project name) and at HEAD of this
    checkout, uncommitted changes included, instead of the latest release tag.
    """
    words = shlex.split(command_after("generate-command"))
    source = next(w for w in words if w.startswith("https://"))
    words[words.index(source)] = str(REPO)
    words[-1] = str(tmp_path / words[-1])
    words += ["--defaults", "--data", "project_name=Orders API", "--vcs-ref", "HEAD"]
    result = subprocess.run(words, capture_output=True, text=True, env=uv_env(), timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    service = tmp_path / "my-service"
    assert (service / "src" / "orders_api" / "main.py").is_file()
    assert (service / ".copier-answers.yml").is_file()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert command_after("test-command") in ci.splitlines()
    assert "export CI=true" in ci
