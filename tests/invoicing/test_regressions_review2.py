"""Regressions from the second review: credit notes within what was charged and paid,
late usage on a draft not billed twice, late-usage drafts swept for collection, and a
dunning suspension that re-checks under the lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_project.errors import Conflict, InvalidRequest
from invoicing.ledger import credit_balance
from invoicing.models import Invoice, InvoiceLine
from invoicing.services import (
    credit_note_issue,
    invoice_finalize,
    invoice_late_usage,
    invoice_mark_paid,
    invoice_void,
    invoices_awaiting_collection,
    invoices_close_due,
)
from subscriptions import services as sub_services
from subscriptions.models import Subscription
from subscriptions.services import subscription_apply, subscription_cancel, subscription_create, subscription_roll
from tests.invoicing.test_invariants import acme as acme  # noqa: PLC0414 - the fixture
from tests.invoicing.test_invariants import draft
from tests.invoicing.test_period_close import LATER, PAID_END, PAID_START, T0, report
from tests.invoicing.test_period_close import reporter as reporter  # noqa: PLC0414 - the fixture


# --- 1. credit note can exceed what the invoice charged -------------------------------
@pytest.mark.django_db
def test_credit_note_never_exceeds_the_invoice_total(acme):
    inv = draft(acme, "100.00")
    InvoiceLine.objects.create(
        invoice=inv, position=2, kind="proration", description="downgrade", amount=Decimal("-30"), currency="USD"
    )
    inv = invoice_mark_paid(invoice_id=invoice_finalize(invoice_id=inv.pk).pk)
    assert inv.total == Decimal("70.00")
    note = credit_note_issue(invoice_id=inv.pk, reason="refund everything", actor="staff")
    assert note.total == Decimal("70.00")  # what was charged, not the 100.00 gross line
    with pytest.raises(Conflict):
        credit_note_issue(invoice_id=inv.pk, reason="again", actor="staff")
    fresh = invoice_mark_paid(invoice_id=invoice_finalize(invoice_id=_prorated(acme).pk).pk)
    with pytest.raises(InvalidRequest):  # by line too: the invoice's own limit holds
        credit_note_issue(invoice_id=fresh.pk, lines={1: Decimal("100.00")}, reason="x", actor="staff")


def _prorated(tenant):
    inv = draft(tenant, "100.00")
    InvoiceLine.objects.create(
        invoice=inv, position=2, kind="proration", description="downgrade", amount=Decimal("-30"), currency="USD"
    )
    return inv


# --- 2. credit note on an unpaid invoice, then void: credit for nothing ---------------
@pytest.mark.django_db
def test_an_unpaid_invoice_takes_no_credit_note_it_is_voided(acme):
    inv = invoice_finalize(invoice_id=draft(acme, "49.00").pk)  # open, never paid
    with pytest.raises(Conflict):
        credit_note_issue(invoice_id=inv.pk, reason="goodwill", actor="staff")
    invoice_void(invoice_id=inv.pk, reason="voided at Stripe", actor="stripe")
    assert credit_balance(tenant=acme, currency="USD") == Decimal("0")


# --- 3. late usage billed twice while an earlier invoice is still a (Stripe Tax) draft --
@pytest.mark.django_db
def test_late_usage_on_a_draft_is_not_billed_again(api, acme, reporter, settings):
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=T0)
    report(api, reporter, "ai_tokens", 2_500_000, datetime(2026, 1, 20, tzinfo=UTC))
    subscription_roll(subscription_id=sub.pk, at=PAID_END)
    invoices_close_due(now=LATER)  # Jan 15 – Feb 15 usage billed, finalized (10.00)
    report(api, reporter, "ai_tokens", 1_000_000, datetime(2026, 1, 25, tzinfo=UTC))  # late, +20.00
    settings.STRIPE_TAX_ENABLED = settings.STRIPE_COLLECTION_ENABLED = True  # drafts wait for Stripe's tax
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 3, 15, tzinfo=UTC))
    subscription_cancel(tenant=acme, at_period_end=False, actor="t", at=datetime(2026, 3, 20, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 4, 1, tzinfo=UTC))  # two boundaries in one run
    late = InvoiceLine.objects.filter(kind="late_usage", period_start=PAID_START)
    assert [x.amount for x in late] == [Decimal("20.00")]


# --- 4. a late-usage draft (Stripe Tax) is never swept for collection -------------------
@pytest.mark.django_db
def test_late_usage_draft_is_swept(api, acme, reporter, settings):
    sub = subscription_create(tenant=acme, plan_code="enterprise", actor="t", at=T0)
    report(api, reporter, "active_users", 1, datetime(2026, 1, 3, tzinfo=UTC), n=2, user_ref="u")
    subscription_cancel(tenant=acme, at_period_end=False, actor="t", at=datetime(2026, 1, 10, tzinfo=UTC))
    invoices_close_due(now=LATER)
    report(api, reporter, "active_users", 1, datetime(2026, 1, 5, tzinfo=UTC), n=1, user_ref="late")
    settings.STRIPE_TAX_ENABLED = settings.STRIPE_COLLECTION_ENABLED = True
    late = invoice_late_usage(subscription_id=sub.pk, now=LATER)
    assert late is not None
    assert late.status == "draft"
    Invoice.objects.filter(pk=late.pk).update(created_at=LATER - timedelta(hours=1))
    assert late.pk in invoices_awaiting_collection(now=LATER)


# --- 5. dunning suspension races a payment: a paid subscription is suspended ------------
@pytest.mark.django_db
def test_the_dunning_suspension_rechecks_under_the_lock(acme):
    """The beat job lists past-due subscriptions, then suspends each under its row lock: a
    payment that lands in between (recovery) must win."""
    sub = subscription_create(tenant=acme, plan_code="enterprise", actor="t", at=T0)
    subscription_apply(subscription=sub, action="mark_past_due", actor="stripe", at=T0 + timedelta(days=1))
    at = T0 + timedelta(days=30)
    listed = Subscription.objects.filter(status="past_due").values_list("pk", flat=True)
    assert list(listed) == [sub.pk]  # what the job saw
    subscription_apply(subscription=sub, action="recover", actor="stripe", at=at)  # then the payment
    assert sub_services.subscription_suspend_if_overdue(subscription_id=sub.pk, at=at) is False
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.ACTIVE
