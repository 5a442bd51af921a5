"""No poison loops. Every item a beat job takes up again (an invoice to collect at Stripe, a
dunning retry, a subscription's period close) counts its failed attempts, backs off
between them, and ends blocked, with the reason, where staff see it; the sweeper leaves a
blocked item alone until staff retry it. Before, an invoice Stripe refused, or whose
totals disagreed with Stripe's, was queued again every 15 minutes for ever, with a new
failure row each time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
import time_machine
from auditlog.models import LogEntry
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from billing_project.models import TaskFailure
from invoicing.models import Invoice
from invoicing.services import invoice_payment_failed, invoices_close_due, payment_retries_due
from invoicing.tasks import close_periods, collect_invoice, collect_pending_invoices, retry_due_payments, retry_payment
from plans.services import catalog_import, catalog_validate
from subscriptions.models import ProrationItem, SubscriptionEvent
from subscriptions.services import subscription_change_plan, subscription_create, tenant_upsert
from tests.conftest import verified_login
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.test_billing_periods import CATALOG
from tests.invoicing.test_payments import pushed
from tests.invoicing.test_stripe_adapter import API, STRIPE_INVOICE, finalized, ours, posts, recorded, register_push

acme = recorded_stripe.acme
stripe_api = recorded_stripe.stripe_api
pytestmark = [pytest.mark.django_db]

MINUTE = timedelta(minutes=1)
REFUSED = {"error": {"type": "invalid_request_error", "message": "Invalid email address: billing@acme.test"}}


@pytest.fixture(autouse=True)
def collection_on(settings: Any) -> None:
    settings.STRIPE_COLLECTION_ENABLED = True


def work_items() -> list[Any]:
    # looked up by name: the model is what this suite asks for
    return list(apps.get_model("billing_project", "WorkItem").objects.order_by("pk"))


def sweep(django_capture_on_commit_callbacks: Any) -> int:
    """One run of the collection sweeper (beat, every 15 minutes); what it queued."""
    with django_capture_on_commit_callbacks() as queued:
        swept: int = collect_pending_invoices()
    assert swept == len(queued)
    return swept


def stripe_refuses_customers(stripe_api: Any) -> None:
    stripe_api.get(f"{API}/v1/customers", json=recorded("customer_list_empty"))
    stripe_api.post(f"{API}/v1/customers", status=400, json=REFUSED)


# ---------------------------------------------------------------- collection
def test_an_invoice_stripe_refuses_is_blocked_at_once_and_never_queued_again(
    acme, stripe_api, clock, django_capture_on_commit_callbacks
):
    invoice = finalized(acme)
    stripe_refuses_customers(stripe_api)
    collect_invoice(invoice.pk)  # queued by the close
    calls = len(stripe_api.calls)

    queued = []
    for _ in range(4 * 24):  # a day of sweeps
        clock.shift(timedelta(minutes=15))
        queued.append(sweep(django_capture_on_commit_callbacks))
    assert sum(queued) == 0
    collect_invoice(invoice.pk)  # a stray delivery of the task: blocked, so Stripe is not asked
    assert len(stripe_api.calls) == calls

    (item,) = work_items()
    assert (item.job, item.object_id, item.state, item.attempts) == ("invoicing.collect", invoice.pk, "blocked", 1)
    assert "Invalid email address" in item.blocked_reason
    assert item.subject == invoice.number
    assert TaskFailure.objects.count() == 0  # the blocked item is the one record, not a row per sweep


def test_totals_that_disagree_with_stripes_block_the_invoice_with_both_totals(
    acme, stripe_api, clock, django_capture_on_commit_callbacks
):
    invoice = finalized(acme)  # 56.34; Stripe's recorded draft totals 49.00
    register_push(stripe_api, invoice)
    collect_invoice(invoice.pk)

    for _ in range(8):
        clock.shift(timedelta(minutes=15))
        assert sweep(django_capture_on_commit_callbacks) == 0
    assert posts(stripe_api, f"/v1/invoices/{STRIPE_INVOICE}/finalize") == []
    (item,) = work_items()
    assert item.state == "blocked"
    assert "Stripe's draft totals 49.00, ours 56.34 USD" in item.blocked_reason


def test_with_stripe_tax_a_mismatch_blocks_the_draft_and_records_why(acme, stripe_api, settings):
    from tests.invoicing.test_stripe_adapter import draft

    settings.STRIPE_TAX_ENABLED = True
    invoice = draft(acme, amounts=("49.00",))
    register_push(stripe_api, invoice, after_items="invoice_draft_with_tax")
    stripe_api.replace(
        "GET", f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_draft_with_tax", total=6331)
    )
    collect_invoice(invoice.pk)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.number) == ("draft", None)
    (item,) = work_items()
    assert (item.state, item.subject) == ("blocked", f"draft #{invoice.pk}")
    assert "Stripe's draft totals 63.31, ours with Stripe's tax 58.31 USD; neither is finalized" in item.blocked_reason


def test_stripe_unreachable_backs_off_doubling_and_blocks_after_eight_attempts(
    acme, stripe_api, clock, django_capture_on_commit_callbacks
):
    invoice = finalized(acme)
    stripe_api.get(f"{API}/v1/customers", body=requests.ConnectionError("connection refused"))
    start = timezone.now()
    attempts = [start]
    collect_invoice(invoice.pk)  # queued by the close: the first attempt
    for _ in range(4 * 48):  # two days of sweeps, every 15 minutes
        clock.shift(timedelta(minutes=15))
        if sweep(django_capture_on_commit_callbacks):
            attempts.append(timezone.now())
            collect_invoice(invoice.pk)

    gaps = [int((b - a) / MINUTE) for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps == [15, 30, 60, 120, 240, 480, 960]  # then blocked: 8 attempts in ~32 hours
    assert len(stripe_api.calls) == 8  # one call each (the customer lookup fails)
    (item,) = work_items()
    assert (item.state, item.attempts) == ("blocked", 8)
    assert item.blocked_reason.startswith("8 failed attempts in a row; the last: ")
    assert "connection refused" in item.blocked_reason
    assert TaskFailure.objects.count() == 0


def test_an_attempt_that_succeeds_after_failures_clears_the_item(
    acme, stripe_api, clock, django_capture_on_commit_callbacks
):
    invoice = finalized(acme, amounts=("49.00",))
    stripe_api.get(f"{API}/v1/customers", body=requests.ConnectionError("connection refused"))
    collect_invoice(invoice.pk)
    clock.shift(timedelta(minutes=10))
    assert sweep(django_capture_on_commit_callbacks) == 0  # backing off
    clock.shift(timedelta(minutes=5))
    stripe_api.reset()
    register_push(stripe_api, invoice)
    stripe_api.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize", json=ours(invoice, "invoice_open"))
    assert sweep(django_capture_on_commit_callbacks) == 1
    collect_invoice(invoice.pk)
    invoice.refresh_from_db()
    assert invoice.stripe_number == "7C1D2E3F-0001"
    (item,) = work_items()
    assert (item.state, item.next_attempt_at) == ("done", None)
    clock.shift(timedelta(minutes=15))
    assert sweep(django_capture_on_commit_callbacks) == 0  # Stripe holds it now


# ---------------------------------------------------------------- staff see it, and retry after fixing the cause
def staff(group: str) -> tuple[Any, Client]:
    user = get_user_model().objects.create_user(group, password="correct horse battery", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    verified_login(client, user)
    return user, client


CHANGELIST = "/admin/billing_project/workitem/"


def retry(client: Client, item: Any, note: str = "Fixed the tenant's billing email") -> Any:
    return client.post(
        CHANGELIST,
        {"action": "retry", "_selected_action": [item.pk], "apply": "1", "note": note},
        follow=True,
    )


def test_staff_see_a_blocked_invoice_with_its_reason_and_finance_retries_it_audited(
    acme, stripe_api, clock, django_capture_on_commit_callbacks
):
    invoice = finalized(acme, amounts=("49.00",))
    stripe_refuses_customers(stripe_api)
    collect_invoice(invoice.pk)
    (item,) = work_items()

    auditor, auditor_client = staff("auditor")
    page = auditor_client.get(f"{CHANGELIST}?state__exact=blocked").content.decode()
    assert str(invoice.number) in page
    assert "Invalid email address" in page
    invoice_page = auditor_client.get(f"/admin/invoicing/invoice/{invoice.pk}/change/").content.decode()
    assert "Blocked until staff retry it" in invoice_page
    assert "Invalid email address" in invoice_page
    with django_capture_on_commit_callbacks() as queued:
        retry(auditor_client, item)  # the auditor reads; the action is not theirs
    assert queued == []
    item.refresh_from_db()
    assert item.state == "blocked"

    ann, finance = staff("finance")
    assert "Retry" in finance.get(CHANGELIST).content.decode()
    assert retry(finance, item, note="").status_code == 200  # a note is required
    item.refresh_from_db()
    assert item.state == "blocked"
    with django_capture_on_commit_callbacks() as queued:
        assert retry(finance, item).status_code == 200
    assert len(queued) == 1  # the collection, queued at once
    item.refresh_from_db()
    assert (item.state, item.attempts, item.next_attempt_at) == ("retrying", 0, timezone.now())
    assert item.retry_note == "Fixed the tenant's billing email"
    (logged,) = [e for e in LogEntry.objects.get_for_object(item) if e.actor == ann]
    assert logged.changes_dict["state"] == ["blocked", "retrying"]

    # the cause fixed, the retried attempt collects it
    stripe_api.reset()
    register_push(stripe_api, invoice)
    stripe_api.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize", json=ours(invoice, "invoice_open"))
    collect_invoice(invoice.pk)
    invoice.refresh_from_db()
    item.refresh_from_db()
    assert (invoice.stripe_number, item.state) == ("7C1D2E3F-0001", "done")


def test_support_staff_do_not_see_background_work(acme):
    _, support = staff("support")
    assert support.get(CHANGELIST).status_code == 403


# ---------------------------------------------------------------- dunning retries
def test_a_dunning_retry_stripe_refuses_is_blocked_not_queued_every_hour(acme, stripe_api, clock, settings):
    settings.DUNNING_RETRY_DAYS = [1, 3]
    invoice = pushed(finalized(acme, amounts=("49.00",)))
    invoice = invoice_payment_failed(invoice_id=invoice.pk, error="card_declined")
    assert invoice.next_payment_retry_at is not None
    clock.move_to(invoice.next_payment_retry_at)
    stripe_api.post(
        f"{API}/v1/invoices/{STRIPE_INVOICE}/pay",
        status=400,
        json={"error": {"type": "invalid_request_error", "message": "This invoice can no longer be paid."}},
    )
    retry_payment(invoice.pk)  # queued by the hourly job

    for _ in range(24):
        clock.shift(timedelta(hours=1))
        assert payment_retries_due(now=timezone.now()) == []
        assert retry_due_payments() == 0
    (item,) = work_items()
    assert (item.job, item.state) == ("invoicing.payment_retry", "blocked")
    assert "can no longer be paid" in item.blocked_reason
    assert len(posts(stripe_api, f"/v1/invoices/{STRIPE_INVOICE}/pay")) == 1


# ---------------------------------------------------------------- period close
JAN1 = datetime(2026, 1, 1, tzinfo=UTC)


@time_machine.travel(JAN1 + timedelta(days=10), tick=False)  # the dates below, whatever day it runs
def test_a_subscription_whose_close_fails_is_blocked_and_the_others_still_close(db):
    catalog_import(spec=catalog_validate(CATALOG))
    acme = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    other = tenant_upsert(external_id="other", name="Other", currency="USD")[0]
    sub = subscription_create(tenant=acme, plan_code="basic", actor="t", at=JAN1)
    subscription_create(tenant=other, plan_code="basic", actor="t", at=JAN1)
    change = subscription_change_plan(tenant=acme, plan_code="plus", when="now", actor="t", at=JAN1 + timedelta(days=9))
    ProrationItem.objects.create(  # a line in another currency: the close refuses it (CurrencyMismatch)
        subscription=sub,
        event=SubscriptionEvent.objects.get(action="change_plan"),
        kind="charge",
        description="stray",
        amount=Decimal(5),
        currency="EUR",
        period_start=change.effective_at,
        period_end=datetime(2026, 2, 1, tzinfo=UTC),
    )
    at = JAN1 + timedelta(days=10)

    assert invoices_close_due(now=at) == 1  # the other tenant's fee; acme's close is refused, not raised
    assert Invoice.objects.get().tenant_id == other.pk
    (item,) = work_items()
    assert (item.job, item.object_id, item.state) == ("invoicing.close", sub.pk, "blocked")
    assert "EUR" in item.blocked_reason
    assert "acme" in item.subject
    for hours in range(1, 25):  # every later run leaves it alone
        assert invoices_close_due(now=at + timedelta(hours=hours)) == 0
    (item,) = work_items()
    assert item.attempts == 1


def test_the_close_task_does_not_fail_for_a_blocked_subscription(db, clock):
    """Before, one bad subscription failed the whole beat task on every run (5 Celery retries
    and a task-failure row every 5 minutes)."""
    catalog_import(spec=catalog_validate(CATALOG))
    acme = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    start = timezone.now() - timedelta(days=20)
    sub = subscription_create(tenant=acme, plan_code="basic", actor="t", at=start)
    change = subscription_change_plan(
        tenant=acme, plan_code="plus", when="now", actor="t", at=timezone.now() - timedelta(days=2)
    )
    ProrationItem.objects.create(
        subscription=sub,
        event=SubscriptionEvent.objects.get(action="change_plan"),
        kind="charge",
        description="stray",
        amount=Decimal(5),
        currency="EUR",
        period_start=change.effective_at,
        period_end=change.effective_at + timedelta(days=10),
    )
    for _ in range(3):
        result = close_periods.apply()
        assert result.successful(), result.traceback
        clock.shift(timedelta(minutes=5))
    assert TaskFailure.objects.count() == 0
    (item,) = work_items()
    assert (item.state, item.attempts) == ("blocked", 1)
