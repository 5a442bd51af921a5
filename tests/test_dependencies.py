"""Dependencies are pinned: pyproject.toml's exact pins agree with requirements.lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"unpinned line in requirements.lock: {line}"
            pins[_name(name)] = version
    return pins


def test_every_direct_dependency_is_pinned_exactly_and_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    locked = lock()
    for requirement in declared:
        spec = requirement.split("#")[0].strip()
        assert re.search(r"==[\w.]+$", spec), f"not an exact pin: {requirement}"
        name, version = _name(spec), spec.rsplit("==", 1)[1]
        assert locked.get(name) == version, f"{name}: pyproject {version}, lock {locked.get(name)}"


def test_stripe_stays_below_16_for_dj_stripe():
    major = int(lock()["stripe"].split(".")[0])
    assert major < 16
