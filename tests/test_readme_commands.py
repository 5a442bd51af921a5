"""The README's commands run as written: from a fresh clone, after `make run` or `make test`
made .venv, outside any activated virtualenv (a bare `python manage.py` finds no Django)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_every_python_command_in_the_readme_uses_the_venvs_interpreter():
    lines = shell_lines()
    assert any("manage.py" in line for line in lines)  # the README still shows commands
    bare = [line for line in lines if re.match(r"(python3?|\./manage\.py|manage\.py)\b", line)]
    assert bare == []


def test_inline_commands_too():
    inline = re.findall(r"`((?:python3?|manage\.py) [^`]*)`", README.read_text())
    assert [c for c in inline if not c.startswith("manage.py check")] == []
