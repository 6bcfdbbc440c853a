"""The sync data layer is generated from the async one, and what is checked in is what the script makes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import jinja2
import pytest
from conftest import REPO


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync_script", REPO / "scripts" / "unasync.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


unasync = load_script()


def test_generated_files_are_current_and_every_rule_is_used(capsys: pytest.CaptureFixture[str]) -> None:
    assert unasync.main(["--check"]) == 0, capsys.readouterr().err


def test_every_generated_file_says_where_it_comes_from() -> None:
    for source, target in unasync.FILES:
        text = target.read_text()
        assert text.startswith("{# Generated from "), target
        assert "DO NOT EDIT" in text.splitlines()[0], target
        assert "unasync" not in text.split("#}", 1)[1], f"{target}: a marker survived"
        assert source.is_file(), f"{target}: its source {source} is gone"


def test_a_stale_file_and_an_unused_rule_fail_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "items.py.jinja", tmp_path / "sync" / "items.py.jinja"
    source.write_text("async def get(store):\n    return await store.get()\n")
    monkeypatch.setattr(unasync, "FILES", ((source, target),))
    monkeypatch.setattr(unasync, "REPO", tmp_path)
    monkeypatch.setattr(unasync, "RULES", (unasync.Rule(r"\basync def\b", "def"), unasync.Rule(r"\bawait ", "")))

    assert unasync.main(["--check"]) == 1
    assert "stale: sync/items.py.jinja" in capsys.readouterr().err
    assert unasync.main([]) == 0
    assert target.read_text().endswith("def get(store):\n    return store.get()\n")
    assert unasync.main(["--check"]) == 0

    target.write_text(target.read_text() + "# edited by hand\n")
    assert unasync.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err

    unasync.main([])
    monkeypatch.setattr(unasync, "RULES", (*unasync.RULES, unasync.Rule(r"\bAsyncIterator\b", "Iterator")))
    assert unasync.main(["--check"]) == 1
    assert "unused rule: \\bAsyncIterator\\b" in capsys.readouterr().err


def test_marked_blocks_swap_async_lines_for_sync_ones() -> None:
    source = (
        "def f():\n"
        "{# unasync: async #}\n"
        "    await asyncio.sleep(0)\n"
        "{# unasync: sync\n"
        "    time.sleep(0)\n"
        "#}\n"
        "{# unasync: async #}\n"
        "    import asyncio\n"
        "{# unasync: end #}\n"
        "{# unasync: sync\n"
        "    return 1\n"
        "#}\n"
    )
    used = {rule.pattern: 0 for rule in unasync.RULES}
    text = unasync.unasync(source, REPO / "template" / "f.py.jinja", used)
    assert text.split("#}\n", 1)[1] == "def f():\n    time.sleep(0)\n    return 1\n"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{# unasync: async #}\nx\n", "never closed"),
        ("{# unasync: sync\nx\n", "never closed"),
        ("{# unasync: end #}\n", "closes no async block"),
        ("{# unasync: async #}\n{# unasync: async #}\n", "inside another"),
    ],
)
def test_a_broken_marker_is_refused_with_its_line(source: str, problem: str) -> None:
    used = {rule.pattern: 0 for rule in unasync.RULES}
    with pytest.raises(unasync.MarkerError, match=problem):
        unasync.unasync(source, REPO / "template" / "f.py.jinja", used)


def test_the_async_layer_renders_none_of_the_markers() -> None:
    """Jinja drops the markers: the async render never sees a sync line (the residue test checks output)."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    source = "a = 1\n{# unasync: async #}\nb = 2\n{# unasync: sync\nb = 3\n#}\nc = 4\n"
    assert env.from_string(source).render() == "a = 1\nb = 2\nc = 4\n"
