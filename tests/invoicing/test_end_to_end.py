"""A tenant's month, end to end: subscribe, report usage through the API, change plan
mid-period, close the period, collect at Stripe (recorded responses), receive a signed
`invoice.paid`, processed by a real Celery worker, and end with a paid invoice whose
lines and total match a hand computation. Then checkout: a signed
`checkout.session.completed` subscribes a new tenant to the plan it chose."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing_project.money import Money
from billing_project.scopes import SUBSCRIPTIONS_WRITE
from invoicing.ledger import credit_grant
from invoicing.models import Invoice
from invoicing.payments import invoice_collect
from invoicing.services import invoices_close_due
from subscriptions.models import Subscription
from subscriptions.services import subscription_change_plan, subscription_create, subscription_roll
from tests.invoicing.test_period_close import LATER, PAID_END, PAID_START, T0, report
from tests.invoicing.test_stripe_adapter import API, STRIPE_INVOICE, ours, recorded, register_push
from tests.invoicing.test_stripe_adapter import acme as acme  # noqa: PLC0414 - the fixture, re-exported
from tests.invoicing.test_stripe_adapter import stripe_api as stripe_api  # noqa: PLC0414
from tests.waiting import wait_for
from tests.webhooks.conftest import make_event, post_event
from webhooks.models import StripeEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    from tests.webhooks.conftest import SECRET

    settings.STRIPE_WEBHOOK_SECRET = SECRET


def test_a_month_from_usage_to_a_paid_invoice(api, make_key, acme, stripe_api, worker):
    reporter = make_key("service", metrics=["ai_tokens", "active_users", "storage_gb"])
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=T0)
    subscription_roll(subscription_id=sub.pk, at=PAID_START)  # trial over: Pro's fee in advance
    invoices_close_due(now=LATER)  # invoice 1: Pro's 49.00 (Stripe collection is off until configured)
    report(api, reporter, "ai_tokens", 1_500_000, datetime(2026, 1, 20, tzinfo=UTC))
    report(api, reporter, "ai_tokens", 1_500_000, datetime(2026, 2, 10, tzinfo=UTC))
    report(api, reporter, "active_users", 1, datetime(2026, 1, 21, tzinfo=UTC), n=3, user_ref="u")
    report(api, reporter, "storage_gb", 5, datetime(2026, 1, 22, tzinfo=UTC))
    mid = datetime(2026, 2, 1, tzinfo=UTC)
    subscription_change_plan(tenant=acme, plan_code="team", when="now", actor="t", at=mid)
    credit_grant(tenant=acme, amount=Money(Decimal("10.00"), "USD"), reason="goodwill", actor="staff:ann")
    subscription_roll(subscription_id=sub.pk, at=PAID_END)
    invoices_close_due(now=LATER)
    invoice = Invoice.objects.get(period_start=PAID_START, period_end=mid)

    # Hand computation of the Pro part of the period (the change on Feb 1 split it; 14 of
    # 31 days changed plan):
    #   ai_tokens, graduated: 1,500,000 within 2M free     0.00
    #   api_calls: none                                    0.00
    #   active_users, per unit: 3 × 8.00                  24.00
    #   storage_gb, per unit: max 5 GB × 0.10              0.50
    #   Pro unused: −49 × 14/31                          −22.13
    #   Team remainder: 199 × 14/31                       89.87
    #   credit                                           −10.00
    #   total                                             82.24
    lines = [(x.kind, x.metric, x.amount) for x in invoice.lines.order_by("position")]
    assert lines == [
        ("usage", "ai_tokens", Decimal("0.00")),
        ("usage", "api_calls", Decimal("0.00")),
        ("usage", "active_users", Decimal("24.00")),
        ("usage", "storage_gb", Decimal("0.50")),
        ("proration", "", Decimal("-22.13")),
        ("proration", "", Decimal("89.87")),
        ("credit", "", Decimal("-10.00")),
    ]
    assert (invoice.status, invoice.total) == ("open", Decimal("82.24"))

    # Push to Stripe for collection: its draft totals what ours does.
    register_push(stripe_api, invoice, after_items="invoice_draft_with_items")
    stripe_api.replace(
        "GET",
        f"{API}/v1/invoices/{STRIPE_INVOICE}",
        json=ours(invoice, "invoice_draft_with_items", total=8224, amount_due=8224, subtotal=8224),
    )
    stripe_api.post(
        f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize",
        json=ours(invoice, "invoice_open", total=8224, amount_due=8224),
    )
    invoice = invoice_collect(invoice_id=invoice.pk)
    assert invoice.stripe_invoice_id == STRIPE_INVOICE

    # Stripe charges the card and tells us, signed; the worker reads Stripe's current state.
    stripe_api.replace(
        "GET", f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_paid", total=8224, amount_paid=8224)
    )
    event = make_event("invoice.paid", id=STRIPE_INVOICE)
    event["data"]["object"]["id"] = STRIPE_INVOICE
    assert post_event(event).status_code == 200
    assert wait_for(lambda: StripeEvent.objects.filter(stripe_id=event["id"], processed_at__isnull=False).exists())
    invoice.refresh_from_db()
    assert (invoice.status, invoice.total) == ("paid", Decimal("82.24"))
    assert invoice.total == sum(amount for _, _, amount in lines)


def test_checkout_then_its_completion_subscribes_the_tenant(api, make_key, acme, stripe_api, worker):
    key = make_key("service", scopes=[SUBSCRIPTIONS_WRITE])
    stripe_api.get(f"{API}/v1/customers", json=recorded("customer_list_empty", data=[recorded("customer")]))
    url = "https://checkout.stripe.com/c/pay/cs_test_c1SxZ03Qa7bC3dE4f"
    stripe_api.post(f"{API}/v1/checkout/sessions", json=recorded("checkout_session_setup", status="open", url=url))
    body = {"plan": "pro", "success_url": "https://app.test/ok", "cancel_url": "https://app.test/no"}
    response = api.post("/api/v1/tenants/acme/checkout", body, format="json", **key.header)
    assert (response.status_code, response.json()) == (201, {"url": url})
    assert not Subscription.objects.exists()  # nothing until Stripe says the page completed

    session = "cs_test_c1SxZ03Qa7bC3dE4f"
    stripe_api.get(f"{API}/v1/checkout/sessions/{session}", json=recorded("checkout_session_setup"))
    event = make_event("checkout.session.completed")
    event["data"]["object"] = {"id": session, "object": "checkout.session"}
    for _ in range(3):  # redelivered: still one subscription
        post_event({**event})
    assert wait_for(lambda: StripeEvent.objects.filter(processed_at__isnull=False).exists())
    sub = Subscription.objects.get()
    assert (sub.tenant_id, sub.plan_version.plan.code, sub.status) == (acme.pk, "pro", "trialing")


def test_checkout_refuses_bad_input_without_asking_stripe(api, make_key, acme, stripe_api):
    key = make_key("service", scopes=[SUBSCRIPTIONS_WRITE])
    ok = {"success_url": "https://app.test/ok", "cancel_url": "https://app.test/no"}
    unknown = api.post("/api/v1/tenants/acme/checkout", {"plan": "gold", **ok}, format="json", **key.header)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "unknown_plan")
    bad = api.post(
        "/api/v1/tenants/acme/checkout",
        {"plan": "pro", "success_url": "javascript:alert(1)", "cancel_url": "x"},
        format="json",
        **key.header,
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "validation_error")
    assert (
        api.post("/api/v1/tenants/nobody/checkout", {"plan": "pro", **ok}, format="json", **key.header).status_code
        == 404
    )
    assert len(stripe_api.calls) == 0


def test_checkout_when_stripe_is_down_is_a_clear_503(api, make_key, acme, stripe_api):
    import requests

    key = make_key("service", scopes=[SUBSCRIPTIONS_WRITE])
    stripe_api.get(f"{API}/v1/customers", body=requests.ConnectionError("no route"))
    body = {"plan": "pro", "success_url": "https://app.test/ok", "cancel_url": "https://app.test/no"}
    response = api.post("/api/v1/tenants/acme/checkout", body, format="json", **key.header)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "payment_provider_unavailable")


@pytest.mark.parametrize(
    "order", [("invoice.payment_failed", "invoice.paid"), ("invoice.paid", "invoice.payment_failed")]
)
def test_payment_events_in_either_order_end_paid(api, acme, stripe_api, worker, order):
    """Stripe retried the card: the attempt failed, then succeeded. Whatever order the two
    signed events arrive in, the worker reads Stripe's current state: paid, and active."""
    sub = subscription_create(tenant=acme, plan_code="enterprise", actor="t", at=T0)
    invoices_close_due(now=LATER)
    invoice = Invoice.objects.get()
    register_push(stripe_api, invoice, after_items="invoice_draft_with_items")
    total = int(invoice.total * 100)
    stripe_api.replace(
        "GET",
        f"{API}/v1/invoices/{STRIPE_INVOICE}",
        json=ours(invoice, "invoice_draft_with_items", total=total, amount_due=total, subtotal=total),
    )
    stripe_api.post(f"{API}/v1/invoices/{STRIPE_INVOICE}/finalize", json=ours(invoice, "invoice_open", total=total))
    invoice_collect(invoice_id=invoice.pk)
    stripe_api.replace(
        "GET", f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_paid", total=total, amount_paid=total)
    )
    for kind in order:
        event = make_event(kind)
        event["data"]["object"]["id"] = STRIPE_INVOICE
        assert post_event(event).status_code == 200
    assert wait_for(lambda: StripeEvent.objects.filter(processed_at__isnull=False).count() == 2)
    invoice.refresh_from_db()
    sub.refresh_from_db()
    assert (invoice.status, sub.status) == ("paid", "active")


def test_checkout_for_another_plan_than_the_live_one_is_refused(api, make_key, acme, stripe_api):
    subscription_create(tenant=acme, plan_code="enterprise", actor="t")
    key = make_key("service", scopes=[SUBSCRIPTIONS_WRITE])
    body = {"plan": "pro", "success_url": "https://app.test/ok", "cancel_url": "https://app.test/no"}
    response = api.post("/api/v1/tenants/acme/checkout", body, format="json", **key.header)
    assert (response.status_code, response.json()["error"]["code"]) == (409, "subscription_exists")
    assert len(stripe_api.calls) == 0
