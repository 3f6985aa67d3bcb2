"""Every ```python block of README.md runs as written, so the docs cannot rot.

The blocks run in order, in one namespace (a block may use what an earlier one defined, as a
reader following the README would), with the repository root as working directory. The quick
start is exactly two commands.
"""
from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def blocks(language: str) -> list[tuple[int, str]]:
    """(line number, code) of each fenced block of `language` in README.md."""
    text = open(README, encoding="utf-8").read()
    out = []
    for match in re.finditer(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M):
        out.append((text[:match.start()].count("\n") + 1, match.group(1)))
    return out


PYTHON = blocks("python")


def test_the_readme_has_python_examples():
    assert len(PYTHON) >= 5


@pytest.fixture(scope="module")
def namespace():
    return {"__name__": "readme"}


@pytest.mark.parametrize("index", range(len(PYTHON)), ids=[f"line-{line}" for line, _ in PYTHON])
def test_python_block_runs(index, namespace, monkeypatch, tmp_path):
    line, code = PYTHON[index]
    monkeypatch.chdir(ROOT)
    try:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    except Exception as e:  # noqa: BLE001 - say which block failed
        raise AssertionError(f"the README's python block at line {line} fails: {type(e).__name__}: {e}") from e


def test_quick_start_is_two_commands():
    text = open(README, encoding="utf-8").read()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = [c for c in block.splitlines() if c.strip() and not c.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    assert "refimpl run" in commands[0] and "pytest" in commands[1]
