"""The suite's clock. Billing is dates, so no test may depend on the day it runs.

- `NOW` is the instant the `clock` fixture freezes at: a fixed one by default, or the
  one `BILLING_TEST_CLOCK` names (ISO 8601 with an offset). Tests compute what they
  expect relative to it (`periods.add_months(NOW, 1)`, `f"INV-{NOW.year}-…"`), never
  from a calendar date that will pass.
- With `BILLING_TEST_CLOCK` set, the whole test process also starts there (time-machine's
  global travel, ticking; see tests/conftest.py): a test that forgot to set its clock
  then runs on that day, not today's. `make test` runs the suite a second time that way,
  on 29 February past a year boundary. Tests that set their own clock nest inside it.

Only this process moves: PostgreSQL's now() (usage `received_at`, the aggregation
watermark, webhook `received_at`) and Redis's clock (key TTLs) stay real. Code must
never compare a database-clock timestamp with an application-clock one.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

ENV = "BILLING_TEST_CLOCK"
# A Tuesday mid-month, mid-morning: no boundary near unless a test moves there.
DEFAULT_NOW = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)


def _from_env() -> datetime | None:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError(f"{ENV}={raw!r} needs an offset (e.g. 2028-02-29T09:30:00Z)")
    return at.astimezone(UTC)


SHIFTED_TO = _from_env()
NOW = SHIFTED_TO or DEFAULT_NOW
