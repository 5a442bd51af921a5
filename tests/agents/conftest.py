"""An AI agent's world: the approvals fixtures (a tenant, staff, a paid invoice), keys, and
the demo as `make run` loads it."""

from typing import Any

import pytest

from tests.agents.demo import load_demo
from tests.approvals.conftest import acme, ann, auditor, bob, cat, invoice, support  # noqa: F401


@pytest.fixture
def demo(tmp_path: Any, clock: Any) -> dict[str, str]:
    """acme-demo's history, the demo agent, service key and staff (tests/agents/demo.py)."""
    return load_demo(tmp_path)
