"""The console's tests run on the hand-built ledger of tests/console/ledger.py, on its clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import time_machine

from tests.console.ledger import Ledger, T, build


@pytest.fixture
def at_t() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T, tick=False) as traveller:
        yield traveller


@pytest.fixture
def ledger(db: None, at_t: time_machine.Traveller) -> Ledger:
    return build()
