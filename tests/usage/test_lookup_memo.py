"""What ingestion keeps in its process (usage/ingestion.py: tenants and metrics under the
entitlement cache's version stamps, issue 17 part 6): a warm event reads nothing of
tenants, subscriptions, periods or metrics from PostgreSQL, and every change that matters
to ingestion is seen by the next event: a cancellation, an erasure, a catalog change, a
Redis that lost its versions; a Redis that is down costs the lookups, never an event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from plans.services import catalog_import, catalog_validate
from privacy.services import tenant_erase
from subscriptions.models import Tenant
from subscriptions.services import subscription_cancel, tenant_upsert
from tests.plans.factories import demo
from usage.ingestion import usage_record

pytestmark = [pytest.mark.django_db(transaction=True)]
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clock() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


def report(reporter: Any, n: int, metric: str = "ai_tokens", tenant: str = "acme") -> Any:
    (result,) = usage_record(
        principal=principal_of(reporter),
        events=[{"tenant": tenant, "metric": metric, "quantity": "5", "idempotency_key": f"memo-{metric}-{n}"}],
    )
    return result


def principal_of(reporter: Any) -> Any:
    from billing_project.api_keys import api_key_authenticate

    return api_key_authenticate(raw_key=reporter.secret)


def lookups_read(reporter: Any, n: int) -> set[str]:
    with CaptureQueriesContext(connection) as captured:
        assert report(reporter, n).outcome.value == "accepted"
    tables = (
        "subscriptions_tenant",
        "subscriptions_subscription",
        "subscriptions_billingperiod",
        "plans_billablemetric",
    )
    return {
        t for q in captured.captured_queries for t in tables if f'"{t}"' in q["sql"] and q["sql"].startswith("SELECT")
    }


def test_a_warm_event_reads_no_lookups_from_postgresql(reporter):
    report(reporter, 1)  # first seen: read, kept without a stamp
    report(reporter, 2)  # read again under the versions read first, and kept
    assert lookups_read(reporter, 3) == set()


def test_a_cancellation_is_seen_by_the_next_event(reporter):
    for n in range(3):
        report(reporter, n)
    subscription_cancel(tenant=Tenant.objects.get(external_id="acme"), at_period_end=False, actor="t", at=NOW)
    refused = report(reporter, 9)
    assert refused.error is not None
    assert refused.error.code == "no_billing_period"


def test_an_erasure_is_seen_by_the_next_event(reporter):
    bare = tenant_upsert(external_id="bare", name="Bare Person", billing_email="bare@example.org")[0]
    for n in range(3):  # no subscription: refused, but the tenant is looked up and kept
        assert report(reporter, n, tenant="bare").error.code == "no_billing_period"
    tenant_erase(tenant=bare, reason="the customer asked", requested_by="test")
    refused = report(reporter, 9, tenant="bare")
    assert refused.error is not None
    assert refused.error.code == "tenant_erased"


def test_a_catalog_change_is_seen_by_the_next_event(reporter):
    for n in range(3):
        report(reporter, n)
    spec = demo()
    spec["metrics"] = [m for m in spec["metrics"] if m["code"] != "api_calls"] + [
        {**next(m for m in demo()["metrics"] if m["code"] == "api_calls"), "properties": ["endpoint"]}
    ]
    catalog_import(spec=catalog_validate(spec))
    with_property = usage_record(
        principal=principal_of(reporter),
        events=[
            {
                "tenant": "acme",
                "metric": "api_calls",
                "quantity": "1",
                "idempotency_key": "after-change",
                "properties": {"endpoint": "/x"},
            }
        ],
    )
    assert with_property[0].outcome.value == "accepted", with_property[0].error


def test_versions_lost_with_redis_are_never_mistaken_for_old_ones(reporter):
    from django.conf import settings

    from billing_project.redis_client import get_redis

    for n in range(3):
        report(reporter, n)
    client = get_redis()
    client.delete(*client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:tenant-version*"))  # lost
    acme = Tenant.objects.get(external_id="acme")
    subscription_cancel(tenant=acme, at_period_end=False, actor="t", at=NOW)  # bumps a version from nothing
    # ... to a random start, not 1, 2, ...: a count from nothing could meet a stamp kept from before
    from billing_project.cache import tenant_version_key

    assert int(client.get(tenant_version_key(acme.pk)) or 0) > 2**20
    refused = report(reporter, 9)
    assert refused.error is not None
    assert refused.error.code == "no_billing_period"


def test_a_redis_that_is_down_costs_the_lookups_never_the_event(reporter, settings):
    from billing_project.redis_client import get_redis

    report(reporter, 1)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    get_redis.cache_clear()
    try:
        assert report(reporter, 2).outcome.value == "accepted"
    finally:
        get_redis.cache_clear()
