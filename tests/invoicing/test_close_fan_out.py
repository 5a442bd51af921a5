"""The period close fans out (invoicing/issuing.py, invoices_close_fan_out): the beat task
closes the first chunk and queues the others for any worker; a subscription queued is not
queued again while its claim lasts; chunks that overlap, run twice or side by side, bill
nothing twice. Real Celery workers, real Redis, real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from billing_project.redis_client import get_redis, rkey
from invoicing import jobs
from invoicing.models import Invoice
from invoicing.services import invoices_close_chunk, invoices_close_fan_out
from invoicing.tasks import close_period_chunk, close_periods
from plans.services import catalog_import, catalog_validate
from subscriptions.models import BillingPeriod, Subscription
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
from tests.plans.factories import demo
from tests.waiting import wait_for

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 4, 1, tzinfo=UTC)  # each subscription: activation and two renewals to invoice
TENANTS = 5


def books() -> list[int]:
    catalog_import(spec=catalog_validate(demo()))
    ids = []
    for n in range(TENANTS):
        tenant = tenant_upsert(external_id=f"t{n}", name=f"Tenant {n}", currency="USD")[0]
        sub = subscription_create(tenant=tenant, plan_code="pro", actor="t", at=T0)
        subscription_roll(subscription_id=sub.pk, at=datetime(2026, 3, 20, tzinfo=UTC))
        ids.append(sub.pk)
    return ids


def billed_once() -> bool:
    """Every closed period on exactly one invoice, and three invoices per subscription."""
    periods = BillingPeriod.objects.filter(kind="paid", closed=True, end__lte=NOW)
    per_sub = [Invoice.objects.filter(subscription=s).count() for s in Subscription.objects.all()]
    return not periods.filter(invoice__isnull=True).exists() and per_sub == [3] * TENANTS


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_beat_task_closes_a_chunk_and_workers_close_the_rest(settings, worker):
    settings.INVOICE_CLOSE_CHUNK = 2
    books()
    with time_machine.travel(NOW, tick=False):
        made = close_periods.apply().get()
    assert made == 6  # its own chunk: two subscriptions, three invoices each
    assert wait_for(billed_once, seconds=60)
    numbers = sorted(str(n) for n in Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 3 * TENANTS + 1)]  # gapless, none twice


@pytest.mark.django_db
def test_a_second_run_does_not_queue_what_the_first_queued(settings):
    settings.INVOICE_CLOSE_CHUNK = 2
    ids = books()
    made, queued = invoices_close_fan_out(now=NOW)
    assert (made, queued) == (6, 2)
    assert invoices_close_fan_out(now=NOW) == (0, 0)  # the three queued are claimed, no worker ran them
    for sub_id in ids[2:]:
        get_redis().delete(rkey("close-claim", sub_id))  # the claims expired: the chunks were lost
    assert invoices_close_fan_out(now=NOW) == (6, 1)  # taken up again: two here, one queued
    assert Invoice.objects.count() == 12


@pytest.mark.django_db
def test_without_redis_every_due_subscription_is_queued_and_still_billed_once(settings):
    settings.INVOICE_CLOSE_CHUNK = 10
    books()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens: claims cannot be taken
    get_redis.cache_clear()
    try:
        assert invoices_close_fan_out(now=NOW) == (3 * TENANTS, 0)
        assert invoices_close_fan_out(now=NOW) == (0, 0)
    finally:
        get_redis.cache_clear()
    assert billed_once()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_overlapping_chunks_side_by_side_bill_nothing_twice():
    """A chunk lost and queued again while the first still runs: the same subscriptions
    closed by four workers at once. The tenant's lock serialises them; each period is
    invoiced once, the series stays gapless."""
    ids = books()
    barrier = threading.Barrier(4)
    made: list[int] = []
    errors: list[BaseException] = []

    def chunk() -> None:
        try:
            barrier.wait()
            made.append(invoices_close_chunk(subscription_ids=ids, now=NOW))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=chunk) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(made) == 3 * TENANTS
    assert billed_once()
    numbers = sorted(str(n) for n in Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 3 * TENANTS + 1)]


@pytest.mark.django_db
def test_a_chunk_that_waited_in_the_queue_numbers_after_what_closed_before_it(settings, monkeypatch):
    """Chunks run on their own clock: one queued at NOW and run half an hour later, after a
    later beat run closed another tenant, numbers its invoices after that one's and dates
    them later too (invoice numbers follow issue dates)."""
    settings.INVOICE_CLOSE_CHUNK = 1
    queued: list[list[int]] = []
    monkeypatch.setattr(jobs, "close_chunk_send", lambda ids, now: queued.append(ids))
    books()
    late = tenant_upsert(external_id="late", name="Late", currency="USD")[0]
    sub = subscription_create(tenant=late, plan_code="pro", actor="t", at=NOW - timedelta(days=14, minutes=58))
    subscription_roll(subscription_id=sub.pk, at=NOW - timedelta(minutes=50))  # its fee is due 2 minutes past NOW
    with time_machine.travel(NOW, tick=False):
        close_periods.apply()  # one subscription closed here, four chunks queued
    later = NOW + timedelta(minutes=30)
    with time_machine.travel(later, tick=False):
        close_periods.apply()  # a later run: the late tenant, inline
    with time_machine.travel(later + timedelta(minutes=5), tick=False):
        for ids in queued[:4]:
            close_period_chunk.apply(args=(ids, NOW.isoformat()))  # a worker at last
    rows = [at for at in Invoice.objects.order_by("number").values_list("finalized_at", flat=True) if at]
    assert rows == sorted(rows)
