"""ARCHITECTURE.md's layering, as import-linter contracts (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_contracts_hold():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_the_contracts_catch_a_violation(tmp_path):
    # A copy of the tree where a lower layer imports a higher one and an app
    # imports stripe: both contracts must break.
    import shutil

    for name in (
        "billing_project",
        "plans",
        "subscriptions",
        "usage",
        "entitlements",
        "invoicing",
        "webhooks",
        "approvals",
        "privacy",
        "console",
        "agents",
    ):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "plans" / "leak.py").write_text("import invoicing\nimport stripe\n")
    result = lint_imports(cwd=tmp_path)
    assert result.returncode != 0
    assert "0 kept, 2 broken" in result.stdout, result.stdout
    assert "plans.leak -> invoicing" in result.stdout
    assert "plans.leak -> stripe" in result.stdout
