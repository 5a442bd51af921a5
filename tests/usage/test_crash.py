"""An aggregation run killed mid-transaction (kill -9) and rerun counts every event exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.db.models.functions import Now

from plans.models import BillableMetric
from subscriptions.models import Tenant
from tests.waiting import wait_for
from usage.aggregation import usage_aggregate
from usage.models import AggregationWatermark, UsageEvent, UsageRollup
from usage.selectors import usage_over

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def raw_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context"):
        params.pop(key, None)
    return psycopg.connect(**params, autocommit=False)


def database_url() -> str:
    s = connection.settings_dict
    host = s["HOST"] or s.get("OPTIONS", {}).get("host", "")
    if host.startswith("/") or not host:
        return f"postgresql://{s['USER']}@/{s['NAME']}?host={host}"
    return f"postgresql://{s['USER']}@{host}:{s['PORT'] or 5432}/{s['NAME']}"


def test_kill_minus_nine_mid_run_then_rerun_is_exact(reporter):
    tenant = Tenant.objects.get(external_id="acme")
    tokens = BillableMetric.objects.get(code="ai_tokens")
    # a fixed past instant: the aggregation in the killed subprocess and in this process runs
    # up to its own clock (real, or moved later by the shifted run), which is after it any day
    base = datetime(2026, 3, 1, tzinfo=UTC)
    UsageEvent.objects.bulk_create(
        [
            UsageEvent(
                tenant=tenant,
                metric=tokens,
                quantity=Decimal(i % 7 + 1),
                occurred_at=base + timedelta(minutes=i),
                received_at=base + timedelta(minutes=i),
                reported_by=reporter.key,
                idempotency_key=f"k{i}",
                payload_hash="h",
            )
            for i in range(3000)
        ]
    )
    expected = sum(Decimal(i % 7 + 1) for i in range(3000))
    # Hold the rollup table so that the run we are about to kill is stuck inside its transaction.
    blocker = raw_connection()
    blocker.execute("LOCK TABLE usage_usagerollup IN ACCESS EXCLUSIVE MODE")
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "billing_project.settings_test"}
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from usage.aggregation import usage_aggregate; usage_aggregate()",
        ],
        cwd=ROOT,
        env=env,
    )
    with raw_connection() as watcher:

        def stuck_pid() -> int | None:
            row = watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%usage_usagerollup%%'"
                " AND datname = current_database()"
            ).fetchone()
            watcher.rollback()
            return row[0] if row else None

        assert wait_for(lambda: stuck_pid() is not None), "the run never reached the rollup insert"
        backend = stuck_pid()
        os.kill(runner.pid, signal.SIGKILL)  # the worker dies mid-transaction
        runner.wait(10)
        blocker.rollback()  # let the orphaned backend finish its statement and notice its client is gone
        blocker.close()

        def gone() -> bool:
            row = watcher.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]).fetchone()
            watcher.rollback()
            return row is None

        assert wait_for(gone), "the killed run's backend lingered"
    # nothing of the killed run survived
    assert not UsageRollup.objects.exists()
    assert not AggregationWatermark.objects.filter(runs__gt=0).exists()
    # the rerun counts everything once, and another rerun adds nothing
    assert usage_aggregate().events == 3000
    assert usage_aggregate().events == 0
    rolled = sum((r.sum for r in UsageRollup.objects.all()), Decimal(0))
    assert rolled == expected
    total = usage_over(tenant_id=tenant.pk, metric=tokens, start=base, end=base + timedelta(days=3))
    assert total == expected


def test_the_watermark_waits_for_a_transaction_still_inserting(reporter):
    """An event whose transaction started before the run but commits after it must not
    fall behind the watermark (it would be counted nowhere)."""
    tenant = Tenant.objects.get(external_id="acme")
    tokens = BillableMetric.objects.get(code="ai_tokens")
    slow = raw_connection()  # a slow ingesting transaction: received_at = its start
    slow.execute(
        "INSERT INTO usage_usageevent (tenant_id, metric_id, quantity, properties, occurred_at, received_at,"
        " reported_by_id, idempotency_key, payload_hash, correlation_id, late)"
        " VALUES (%s, %s, 5, '{}', now(), now(), %s, 'slow', 'h', '', false)",
        [tenant.pk, tokens.pk, reporter.key.pk],
    )
    try:
        # committed while "slow" is still open: received_at on the database's clock, as
        # ingestion writes it (the watermark's clock), never the test process's
        UsageEvent.objects.create(
            tenant=tenant,
            metric=tokens,
            quantity=7,
            occurred_at=datetime.now(UTC),
            received_at=Now(),
            reported_by=reporter.key,
            idempotency_key="fast",
            payload_hash="h",
        )
        first = usage_aggregate()
        slow.commit()
    finally:
        slow.close()  # never leave it holding locks the next test's clean-up needs
    assert first.events == 0  # the bound stayed at the slow transaction's start: "fast" waited too
    assert usage_aggregate().events == 2
    assert sum(r.sum for r in UsageRollup.objects.all()) == 12
