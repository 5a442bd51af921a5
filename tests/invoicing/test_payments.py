"""Collection through Stripe (invoicing.payments and the collect task) against recorded
Stripe responses: ids stored once, reruns idempotent, outages change nothing, and the
sync from Stripe reads current state so event order does not matter."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from billing_project.errors import Conflict
from billing_project.models import TaskFailure, WorkItem
from invoicing import payments
from invoicing.models import Invoice, InvoiceLine
from invoicing.payments import (
    checkout_session_completed,
    invoice_collect,
    invoice_sync_from_stripe,
)
from invoicing.providers import ProviderUnavailable
from invoicing.tasks import collect_invoice
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.test_stripe_adapter import (
    API,
    STRIPE_INVOICE,
    draft,
    finalized,
    form,
    idempotency_keys,
    ours,
    posts,
    recorded,
    register_push,
)

# the adapter suite's fixtures: a tenant with the demo catalog, and Stripe's recorded answers
acme = recorded_stripe.acme
stripe_api = recorded_stripe.stripe_api

COLLECTION = ("status", "stripe_invoice_id", "stripe_number", "collection_attempts", "last_payment_error", "paid_at")


def snapshot(invoice: Invoice) -> tuple[object, ...]:
    invoice.refresh_from_db()
    return tuple(getattr(invoice, f) for f in COLLECTION)


def pushed(invoice: Invoice) -> Invoice:
    """An open invoice already at Stripe."""
    invoice.stripe_invoice_id = STRIPE_INVOICE
    invoice.save(update_fields=["stripe_invoice_id"])
    return invoice


# ---------------------------------------------------------------- collect
@pytest.mark.django_db
def test_collect_pushes_finalizes_remotely_and_stores_stripes_ids_once(acme, stripe_api):
    invoice = finalized(acme, amounts=("49.00",))
    register_push(stripe_api, invoice)
    stripe_api.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize", json=ours(invoice, "invoice_open"))

    collected = invoice_collect(invoice_id=invoice.pk)

    assert (collected.status, collected.stripe_invoice_id, collected.stripe_number) == (
        "open",
        STRIPE_INVOICE,
        "7C1D2E3F-0001",
    )
    finalize = posts(stripe_api, f"/v1/invoices/{STRIPE_INVOICE}/finalize")
    assert [c.request.headers["Idempotency-Key"] for c in finalize] == [f"inv-{invoice.pk}-finalize"]
    assert form(finalize[0])["auto_advance"] == ["true"]  # Stripe collects from here
    calls = len(stripe_api.calls)
    invoice_collect(invoice_id=invoice.pk)  # a rerun: done already, nothing sent
    assert len(stripe_api.calls) == calls
    # Stripe's id is stored once: neither the service nor SQL can change it later
    with pytest.raises(Conflict):
        payments._store_stripe_refs(invoice_id=invoice.pk, stripe_invoice_id="in_other")
    with pytest.raises(DatabaseError, match="finalized"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE invoicing_invoice SET stripe_invoice_id = 'in_other' WHERE id = %s", [invoice.pk])
    assert Invoice.objects.get(pk=invoice.pk).stripe_invoice_id == STRIPE_INVOICE


@pytest.mark.django_db
def test_a_stripe_outage_changes_nothing_and_a_rerun_continues_with_the_same_keys(acme, stripe_api):
    invoice = finalized(acme, amounts=("49.00",))
    before = snapshot(invoice)
    stripe_api.get(f"{API}/v1/customers", body=requests.ConnectionError("connection refused"))
    with pytest.raises(ProviderUnavailable):
        invoice_collect(invoice_id=invoice.pk)
    assert snapshot(invoice) == before

    # back up, but down again right at the finalization
    stripe_api.reset()
    register_push(stripe_api, invoice)
    stripe_api.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize", body=requests.ConnectionError("reset"))
    stripe_api.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize", json=ours(invoice, "invoice_open"))
    with pytest.raises(ProviderUnavailable):
        invoice_collect(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    assert (invoice.stripe_invoice_id, invoice.stripe_number) == (STRIPE_INVOICE, "")

    # the rerun finds the invoice by the id we stored and finalizes it with the same key
    stripe_api.get(
        f"{API}/v1/invoiceitems",
        json=recorded(
            "invoiceitem_list_empty",
            data=[recorded("invoiceitem", metadata={"billing_line_position": str(n)}) for n in (1,)],
        ),
    )
    assert invoice_collect(invoice_id=invoice.pk).stripe_number == "7C1D2E3F-0001"
    assert len(posts(stripe_api, "/v1/invoices")) == 1
    assert idempotency_keys(stripe_api, f"/v1/invoices/{STRIPE_INVOICE}/finalize") == [f"inv-{invoice.pk}-finalize"] * 2


@pytest.mark.django_db
def test_stripe_is_not_told_to_collect_an_amount_other_than_ours(acme, stripe_api):
    invoice = finalized(acme)  # 56.34; Stripe's recorded draft totals 49.00
    register_push(stripe_api, invoice)
    with pytest.raises(Conflict, match="ours 56.34"):
        invoice_collect(invoice_id=invoice.pk)
    assert posts(stripe_api, f"/v1/invoices/{STRIPE_INVOICE}/finalize") == []


@pytest.mark.django_db
def test_with_stripe_tax_the_draft_is_finalized_with_stripes_tax(acme, stripe_api, settings):
    settings.STRIPE_TAX_ENABLED = True
    invoice = draft(acme, amounts=("49.00",))
    register_push(stripe_api, invoice, after_items="invoice_draft_with_tax")
    stripe_api.post(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_draft_with_tax"))
    stripe_api.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize", json=ours(invoice, "invoice_open"))

    collected = invoice_collect(invoice_id=invoice.pk)

    assert (collected.status, collected.tax, collected.total, collected.tax_status) == (
        "open",
        Decimal("9.31"),
        Decimal("58.31"),
        "calculated",
    )
    tax_line = InvoiceLine.objects.get(invoice=invoice, kind="tax")
    assert tax_line.amount == Decimal("9.31")
    created = form(posts(stripe_api, "/v1/invoices")[0])
    assert created["automatic_tax[enabled]"] == ["true"]
    numbered = form(posts(stripe_api, f"/v1/invoices/{STRIPE_INVOICE}")[0])
    assert numbered["custom_fields[0][value]"] == [collected.number]


@pytest.mark.django_db
def test_with_stripe_tax_a_total_mismatch_finalizes_neither_invoice(acme, stripe_api, settings):
    """Stripe's draft holds a stray item: its total (63.31) is not what ours would be with
    Stripe's tax (49.00 + 9.31). Compared before anything is frozen: ours stays a draft (no
    number taken, no tax line), Stripe's is not finalized, and the error says why."""
    settings.STRIPE_TAX_ENABLED = True
    invoice = draft(acme, amounts=("49.00",))
    register_push(stripe_api, invoice, after_items="invoice_draft_with_tax")
    stripe_api.replace(
        "GET", f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_draft_with_tax", total=6331)
    )

    why = "Stripe's draft totals 63.31, ours with Stripe's tax 58.31 USD; neither is finalized"
    with pytest.raises(Conflict, match=why) as refused:
        invoice_collect(invoice_id=invoice.pk)

    assert refused.value.code == "stripe_total_mismatch"
    invoice.refresh_from_db()
    assert (invoice.status, invoice.number, invoice.finalized_at) == ("draft", None, None)
    assert not invoice.lines.filter(kind="tax").exists()
    assert invoice.stripe_invoice_id == STRIPE_INVOICE  # where it is, for whoever looks into it
    assert posts(stripe_api, f"/v1/invoices/{STRIPE_INVOICE}/finalize") == []
    assert posts(stripe_api, f"/v1/invoices/{STRIPE_INVOICE}") == []  # nor numbered


@pytest.mark.django_db
def test_a_draft_is_not_collected_without_stripe_tax(acme, stripe_api):
    with pytest.raises(Conflict):
        invoice_collect(invoice_id=draft(acme).pk)
    assert len(stripe_api.calls) == 0


@pytest.mark.django_db
def test_the_task_counts_an_outage_backs_off_and_changes_nothing(acme, stripe_api, clock):
    """Stripe unreachable: the attempt is counted on the invoice's work item and the next
    is due in 15 minutes (the sweeper's; tests/invoicing/test_poison_loops.py follows the
    whole schedule); the task itself succeeds, so no task-failure row for an outage."""
    invoice = finalized(acme)
    before = snapshot(invoice)
    stripe_api.get(f"{API}/v1/customers", body=requests.ConnectionError("connection refused"))
    result = collect_invoice.apply(args=(invoice.pk,))
    assert result.successful(), result.traceback
    assert len(stripe_api.calls) == 1
    item = WorkItem.objects.get(job="invoicing.collect", object_id=invoice.pk)
    assert (item.state, item.attempts, item.next_attempt_at) == ("retrying", 1, timezone.now() + timedelta(minutes=15))
    assert "ProviderUnavailable" in item.last_error
    assert not TaskFailure.objects.exists()
    assert snapshot(invoice) == before


# ---------------------------------------------------------------- sync from Stripe
@pytest.mark.django_db
def test_paid_then_a_stale_payment_failed_stays_paid(acme, stripe_api):
    invoice = pushed(finalized(acme))
    # Stripe's state is "paid" whenever we read it: the late failure event reads that too
    stripe_api.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_paid"))
    invoice_sync_from_stripe(stripe_invoice_id=STRIPE_INVOICE)  # invoice.paid
    invoice_sync_from_stripe(stripe_invoice_id=STRIPE_INVOICE)  # invoice.payment_failed, delivered late
    invoice.refresh_from_db()
    assert (invoice.status, invoice.collection_attempts, invoice.last_payment_error) == ("paid", 0, "")

    # even a stale read of the failure leaves a paid invoice paid
    stripe_api.replace("GET", f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_open_payment_failed"))
    invoice_sync_from_stripe(stripe_invoice_id=STRIPE_INVOICE)
    invoice.refresh_from_db()
    assert invoice.status == "paid"


@pytest.mark.django_db
def test_payment_failed_then_paid_ends_paid(acme, stripe_api):
    invoice = pushed(finalized(acme))
    stripe_api.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_open_payment_failed"))
    invoice_sync_from_stripe(stripe_invoice_id=STRIPE_INVOICE)
    invoice_sync_from_stripe(stripe_invoice_id=STRIPE_INVOICE)  # the same event again: one attempt
    invoice.refresh_from_db()
    assert (invoice.status, invoice.collection_attempts, invoice.last_payment_error) == (
        "open",
        1,
        "Your card has insufficient funds.",
    )
    stripe_api.replace("GET", f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_paid"))
    invoice_sync_from_stripe(stripe_invoice_id=STRIPE_INVOICE)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.last_payment_error) == ("paid", "")
    assert invoice.paid_at is not None
    assert int(invoice.paid_at.timestamp()) == 1767225760


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "status"), [("invoice_void", "void"), ("invoice_uncollectible", "uncollectible")])
def test_void_and_uncollectible_follow_stripe(acme, stripe_api, name, status):
    invoice = pushed(finalized(acme))
    stripe_api.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, name))
    for _ in range(2):  # and again: the same state, nothing more
        synced = invoice_sync_from_stripe(stripe_invoice_id=STRIPE_INVOICE)
        assert synced is not None
        assert synced.status == status


@pytest.mark.django_db
def test_an_unknown_stripe_invoice_is_not_ours(stripe_api):
    assert invoice_sync_from_stripe(stripe_invoice_id="in_not_ours") is None
    assert len(stripe_api.calls) == 0


# ---------------------------------------------------------------- checkout (refunds: test_refunds.py)
@pytest.mark.django_db
def test_checkout_session_completed(stripe_api):
    stripe_api.get(f"{API}/v1/checkout/sessions/cs_test_c1SxZ03Qa7bC3dE4f", json=recorded("checkout_session_setup"))
    result = checkout_session_completed(session_id="cs_test_c1SxZ03Qa7bC3dE4f")
    assert (result.customer, result.status, result.setup_intent, result.tenant_external_id) == (
        "cus_TQ3mW2aXk9Lb1C",
        "complete",
        "seti_1SxZ04Qa7bC3dE4f",
        "acme",
    )
