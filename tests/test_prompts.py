"""Copier's interactive session, driven key by key in a pseudo-terminal as a person would.

Copier attaches validators to text prompts only, and per-choice validators grey out select
choices; these tests check what a person sees and can do: every question in order with its
default, a refused answer asked again with its one-line message, names whose derived slug and
package are always accepted, ruled-out choices shown disabled and impossible to pick, the
broker asked only with Celery, and Ctrl-C leaving nothing behind.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
import yaml
from conftest import BIN, REPO, options
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

COPIER_YML = yaml.safe_load((REPO / "copier.yml").read_text())
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
UP, DOWN, ENTER, CLEAR_LINE = "\x1b[A", "\x1b[B", "\r", "\x15"


def help_of(question: str) -> str:
    return str(COPIER_YML[question]["help"])


def labels_of(question: str) -> list[str]:
    """The choice labels a select prompt shows, in order."""
    choices = COPIER_YML[question]["choices"]
    return list(choices) if isinstance(choices, dict) else [str(choice) for choice in choices]


def default_index(question: str) -> int:
    choices = COPIER_YML[question]["choices"]
    values = (
        [(spec["value"] if isinstance(spec, dict) else spec) for spec in choices.values()]
        if isinstance(choices, dict)
        else list(choices)
    )
    return values.index(COPIER_YML[question]["default"])


class Session:
    """One ``copier copy`` in a pseudo-terminal; ``transcript`` is what the person saw, ANSI removed."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        self._log = io.StringIO()
        env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "NO_COLOR": "1"}
        self.child = pexpect.spawn(
            str(BIN / "copier"),
            ["copy", "--trust", "--vcs-ref", "HEAD", str(REPO), str(destination)],
            encoding="utf-8",
            timeout=60,
            dimensions=(60, 250),
            env=env,
        )
        self.child.logfile_read = self._log

    @property
    def transcript(self) -> str:
        return ANSI.sub("", self._log.getvalue()).replace("\r", "")

    def reach(self, question: str) -> None:
        """Wait until ``question`` is asked (its help is shown, and a select's whole list)."""
        self.child.expect_exact(help_of(question))
        if "choices" in COPIER_YML[question]:
            self.child.expect_exact(labels_of(question)[-1])

    def text(self, question: str, value: str | None = None) -> None:
        """Answer a text prompt: keep its default, or replace it with ``value``."""
        self.reach(question)
        self.child.send(ENTER if value is None else CLEAR_LINE + value + ENTER)

    def select(self, question: str, label: str | None = None) -> None:
        """Pick ``label`` from a select prompt by moving the pointer, or keep the default."""
        self.reach(question)
        moves = 0 if label is None else labels_of(question).index(label) - default_index(question)
        self.child.send((DOWN * moves if moves > 0 else UP * -moves) + ENTER)

    def confirm(self, question: str, yes: bool) -> None:
        self.reach(question)
        self.child.send("y" if yes else "n")

    def finish(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)

    def interrupt(self) -> int:
        self.child.sendcontrol("c")
        return self.finish()

    def answers(self) -> dict[str, Any]:
        return dict(yaml.safe_load((self.destination / ".copier-answers.yml").read_text()))


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    running = Session(tmp_path / "service")
    yield running
    if running.child.isalive():
        running.child.terminate(force=True)


def enter_through_the_names(session: Session, name: str = "Orders API") -> None:
    session.text("project_name", name)
    for question in ("project_slug", "package_name", "description", "author_name", "author_email"):
        session.text(question)


def test_every_question_is_asked_in_order_and_enter_keeps_each_default(session: Session) -> None:
    enter_through_the_names(session)
    for question in ("license", "python_version", "framework", "database", "cache", "task_queue", "broker", "auth"):
        session.select(question)
    session.confirm("docker", yes=True)
    session.select("ci")
    assert session.finish() == 0, session.transcript
    answers = session.answers()
    for question, spec in COPIER_YML.items():
        if question.startswith("_") or spec.get("when") is False or "{{" in str(spec.get("default", "")):
            continue
        if question == "django_api":
            assert question not in answers
            assert help_of(question) not in session.transcript
        elif question != "project_name":
            assert answers[question] == spec["default"], question
    assert answers["project_slug"] == "orders-api"
    assert answers["package_name"] == "orders_api"
    assert "ready in" in session.transcript


@pytest.mark.parametrize(
    ("question", "refused", "message", "fixed"),
    [
        ("project_name", "", "project_name is required", "Orders API"),
        ("project_slug", "Orders_API", "is not kebab-case", "orders-api"),
        ("package_name", "class", "is a Python keyword", "orders"),
        ("package_name", "json", "would shadow the standard library's 'json' module", "orders"),
        ("author_email", "not-an-email", "is not an email address", "team@example.com"),
    ],
)
def test_a_refused_answer_is_asked_again_with_its_one_line_message_and_ctrl_c_leaves_nothing(
    session: Session, question: str, refused: str, message: str, fixed: str
) -> None:
    order = ("project_name", "project_slug", "package_name", "description", "author_name", "author_email")
    for earlier in order[: order.index(question)]:
        session.text(earlier, "Orders API" if earlier == "project_name" else None)
    session.text(question, refused)
    session.child.expect_exact(message)
    session.child.send(CLEAR_LINE + fixed + ENTER)
    next_question = order[order.index(question) + 1] if question != order[-1] else "license"
    session.reach(next_question)
    line = next(line for line in session.transcript.splitlines() if message in line)
    assert options.answer_error(question, {question: refused}) in line
    assert session.interrupt() != 0
    assert not session.destination.exists()


#: Names people type: letters of any script, digits first or not, punctuation, spaces.
names = st.text(
    alphabet=st.one_of(
        st.sampled_from("abcXYZ019 -_.&'()"),
        st.characters(categories=["L", "Nd"]),
    ),
    min_size=1,
    max_size=40,
).filter(lambda name: options.answer_error("project_name", {"project_name": name}) == "")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names)
def test_the_slug_and_package_derived_from_any_accepted_name_are_accepted(tmp_path: Path, name: str) -> None:
    session = Session(tmp_path / f"service-{abs(hash(name))}")
    try:
        for question in ("project_name", "project_slug", "package_name"):
            session.text(question, name if question == "project_name" else None)
        session.reach("description")
        slug = options.slugify(name)
        assert slug in session.transcript
        assert options.package_from_slug(slug) in session.transcript
        assert "Validation error" not in session.transcript
        assert "Traceback" not in session.transcript
        assert session.interrupt() != 0
    finally:
        if session.child.isalive():
            session.child.terminate(force=True)


@pytest.mark.parametrize(
    ("earlier", "question", "reason"),
    [
        (
            {"framework": "Django"},
            "database",
            options.answer_error("database", {"framework": "django", "database": "none"}),
        ),
        ({"database": "None"}, "cache", options.answer_error("cache", {"database": "none", "cache": "none"})),
    ],
    ids=["django-needs-a-database", "no-database-needs-redis"],
)
def test_a_choice_the_earlier_answers_rule_out_is_shown_disabled_and_cannot_be_picked(
    session: Session, earlier: dict[str, str], question: str, reason: str
) -> None:
    enter_through_the_names(session)
    session.select("license")
    session.select("python_version")
    session.select("framework", earlier.get("framework"))
    if "framework" in earlier:
        session.select("django_api")
    if question == "database":
        session.reach("database")
        # The pointer goes round the list, past the disabled "None", and Enter takes what it is on.
        session.child.send(DOWN * 3 + ENTER)
        session.select("cache")
    else:
        session.select("database", earlier["database"])
        session.reach("cache")
        session.child.send(DOWN * 2 + ENTER)
    session.select("task_queue", "None")
    session.select("auth")
    session.confirm("docker", yes=False)
    session.select("ci", "None")
    assert session.finish() == 0, session.transcript
    shown = " ".join(session.transcript.split())
    assert f"None ({' '.join(reason.split())})" in shown, shown
    assert session.answers()[question] != "none"


def test_the_broker_is_asked_only_with_celery(session: Session) -> None:
    enter_through_the_names(session)
    for question in ("license", "python_version", "framework", "database", "cache"):
        session.select(question)
    session.select("task_queue", "None")
    session.select("auth")
    session.confirm("docker", yes=True)
    session.select("ci")
    assert session.finish() == 0, session.transcript
    assert help_of("broker") not in session.transcript
    assert "broker" not in session.answers()
    assert session.answers()["task_queue"] == "none"
