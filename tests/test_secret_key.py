"""The generated services' production key rules (template/src/{{ package_name }}/secret_key.py,
copied verbatim into every service), property-tested once here.

Refused: anything shorter than Django's deployment check allows, anything holding a known
placeholder, and anything that repeats a short pattern, however long. Accepted: every key
made as the README and the error message say (random bytes, URL-safe or hex).
"""

from __future__ import annotations

import importlib.util
import secrets
import subprocess
import sys
from types import ModuleType

import pytest
from conftest import REPO
from hypothesis import given
from hypothesis import strategies as st


def load() -> ModuleType:
    path = REPO / "template" / "src" / "{{ package_name }}" / "secret_key.py"
    spec = importlib.util.spec_from_file_location("secret_key", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


secret_key = load()


@given(st.text(max_size=secret_key.MIN_LENGTH - 1))
def test_a_key_shorter_than_djangos_minimum_is_refused(key: str) -> None:
    assert secret_key.weakness(key) is not None


@given(st.text(max_size=40), st.sampled_from(secret_key.PLACEHOLDERS), st.text(max_size=40))
def test_a_key_holding_a_placeholder_is_refused(before: str, placeholder: str, after: str) -> None:
    key = before + placeholder.upper() + after + secrets.token_urlsafe(48)
    assert secret_key.weakness(key) == "it is a placeholder"


@given(st.text(min_size=1, max_size=8), st.integers(min_value=0, max_value=200))
def test_a_repeated_short_pattern_is_refused_however_long(unit: str, extra: int) -> None:
    key = unit * ((secret_key.MIN_LENGTH + extra) // len(unit) + 1)
    assert secret_key.weakness(key) is not None


@pytest.mark.parametrize("size", range(38, 65))
def test_every_random_url_safe_key_of_50_or_more_characters_is_accepted(size: int) -> None:
    for _ in range(20):
        key = secrets.token_urlsafe(size)
        assert len(key) < secret_key.MIN_LENGTH or secret_key.weakness(key) is None, key


@pytest.mark.parametrize("size", range(25, 65))
def test_every_random_hex_key_of_50_or_more_characters_is_accepted(size: int) -> None:
    for _ in range(20):
        assert secret_key.weakness(secrets.token_hex(size)) is None


def test_the_message_is_one_line_and_its_command_makes_an_accepted_key() -> None:
    with pytest.raises(ValueError, match=r"^SECRET_KEY is not fit for production \(it has 5 characters") as raised:
        secret_key.check_production_key("short")
    message = str(raised.value)
    assert "\n" not in message and message.endswith(secret_key.GENERATE)
    command = secret_key.GENERATE.removeprefix("python -c '").removesuffix("'")
    made = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, check=True).stdout.strip()
    assert secret_key.weakness(made) is None
    secret_key.check_production_key(made)
