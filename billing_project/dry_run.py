"""Run the very code that would act, and undo it: previews and the four-eyes checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import transaction

T = TypeVar("T")


def dry_run(work: Callable[[], T]) -> T:
    """`work` in a transaction (a savepoint inside one) that is rolled back whatever happens:
    nothing it writes stays, and work it defers to the commit (tasks, Stripe) never runs."""
    with transaction.atomic():
        try:
            return work()
        finally:
            transaction.set_rollback(True)
