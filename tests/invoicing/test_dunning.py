"""Dunning: a failed payment makes the subscription past due, the grace keeps the plan,
past the grace it is suspended and entitlements deny; paying restores it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from entitlements.services import entitlement_check
from invoicing.models import Invoice
from invoicing.services import invoice_mark_paid, invoice_payment_failed, invoices_close_due
from plans.services import catalog_import, catalog_validate
from subscriptions.models import Subscription
from subscriptions.services import subscription_apply, subscription_create, subscriptions_suspend_overdue, tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]


def reason():
    from decimal import Decimal

    return entitlement_check(tenant="acme", feature="ai_chat", quantity=Decimal(1))["reason"]


@pytest.fixture
def billed(django_capture_on_commit_callbacks, clock):
    # subscribed, billed, failed and suspended relative to the suite's frozen clock
    catalog_import(spec=catalog_validate(demo()))
    acme = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    with django_capture_on_commit_callbacks(execute=True):
        sub = subscription_create(tenant=acme, plan_code="enterprise", actor="t")  # no trial: billed now
        invoices_close_due(now=timezone.now() + timedelta(hours=2))
    return sub, Invoice.objects.get()


def test_failure_grace_suspension_and_payment(billed, django_capture_on_commit_callbacks, settings):
    sub, invoice = billed
    assert invoice.status == "open"
    with django_capture_on_commit_callbacks(execute=True):
        invoice_payment_failed(invoice_id=invoice.pk, error="card_declined")
    sub.refresh_from_db()
    assert sub.status == "past_due"
    assert reason() == "ok"  # within the dunning grace the plan still holds
    now = timezone.now()
    assert subscriptions_suspend_overdue(at=now + timedelta(days=settings.DUNNING_GRACE_DAYS - 1)) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert subscriptions_suspend_overdue(at=now + timedelta(days=settings.DUNNING_GRACE_DAYS, minutes=1)) == 1
    sub.refresh_from_db()
    assert sub.status == "suspended"
    assert reason() == "subscription_suspended"
    with django_capture_on_commit_callbacks(execute=True):
        invoice_mark_paid(invoice_id=invoice.pk)
    sub.refresh_from_db()
    assert sub.status == "active"
    assert reason() == "ok"


def test_a_stale_failure_after_payment_changes_nothing(billed):
    sub, invoice = billed
    invoice_mark_paid(invoice_id=invoice.pk)
    invoice_payment_failed(invoice_id=invoice.pk, error="late news")
    sub.refresh_from_db()
    invoice.refresh_from_db()
    assert (invoice.status, sub.status) == ("paid", "active")


def test_payment_does_not_lift_a_suspension_by_staff(billed):
    sub, invoice = billed
    subscription_apply(subscription=sub, action="suspend", actor="staff:ann", reason="abuse report")
    invoice_mark_paid(invoice_id=invoice.pk)
    assert Subscription.objects.get(pk=sub.pk).status == "suspended"
