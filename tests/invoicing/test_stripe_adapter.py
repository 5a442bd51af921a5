"""The Stripe adapter against recorded responses (API version STRIPE_API_VERSION), replayed
through stripe-python's own HTTP layer with `responses`: no internet, real request encoding,
real headers (Stripe-Version, Idempotency-Key)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from djstripe.models import Customer as DjstripeCustomer

from billing_project.money import Money
from invoicing.ledger import credit_grant
from invoicing.models import Invoice, InvoiceLine
from invoicing.providers import (
    ProviderRejected,
    ProviderUnavailable,
    charge_fetch,
    checkout_session_create,
    customer_for,
    invoice_fetch,
    invoice_push,
    refund_create,
    stripe_adapter,
)
from invoicing.services import invoice_finalize
from plans.services import catalog_import, catalog_validate
from subscriptions.services import tenant_upsert
from tests.plans.factories import demo

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"
API = "https://api.stripe.com"
STRIPE_INVOICE = "in_1SxYz2Qa7bC3dE4f"
T = datetime(2026, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- helpers (test_payments uses them too)
def recorded(name: str, **changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    obj.update(changes)
    return obj


def form(call: Any) -> dict[str, list[str]]:
    body = call.request.body or ""
    return parse_qs(body if isinstance(body, str) else body.decode())


def posts(rsps: responses.RequestsMock, path: str | None = None) -> list[Any]:
    return [
        c for c in rsps.calls if c.request.method == "POST" and (path is None or urlsplit(c.request.url).path == path)
    ]


def idempotency_keys(rsps: responses.RequestsMock, path: str | None = None) -> list[str]:
    return [c.request.headers.get("Idempotency-Key") for c in posts(rsps, path)]


def ours(invoice: Invoice, name: str, **changes: Any) -> dict[str, Any]:
    """A recorded Stripe invoice stamped with our invoice's id and number."""
    metadata = {"billing_invoice_id": str(invoice.pk), "billing_invoice_number": invoice.number or ""}
    return recorded(name, metadata=metadata, **changes)


def register_push(
    rsps: responses.RequestsMock, invoice: Invoice, *, after_items: str = "invoice_draft_with_items"
) -> None:
    """Stripe as it answers a first push: no customer, no invoice yet."""
    rsps.get(f"{API}/v1/customers", json=recorded("customer_list_empty"))
    rsps.post(f"{API}/v1/customers", json=recorded("customer"))
    rsps.get(f"{API}/v1/invoices", json=recorded("invoice_list_empty"))
    rsps.post(f"{API}/v1/invoices", json=ours(invoice, "invoice_draft"))
    rsps.get(f"{API}/v1/invoiceitems", json=recorded("invoiceitem_list_empty"))
    rsps.post(f"{API}/v1/invoiceitems", json=recorded("invoiceitem"))
    rsps.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, after_items))


@pytest.fixture
def stripe_api(settings, monkeypatch):
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_LIVE_MODE = False
    settings.STRIPE_TAX_ENABLED = False
    monkeypatch.setattr(stripe_adapter, "MAX_NETWORK_RETRIES", 0)  # no sleeping retries in tests
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        # dj-stripe asks once which account the key belongs to, before mirroring a customer
        rsps.get(f"{API}/v1/account", json=recorded("account"))
        yield rsps


@pytest.fixture
def acme(db):
    catalog_import(spec=catalog_validate(demo()))
    return tenant_upsert(
        external_id="acme", name="Acme", billing_email="billing@acme.test", country="DE", currency="USD"
    )[0]


def draft(tenant, amounts=("49.00", "12.34", "-5.00")) -> Invoice:
    invoice = Invoice.objects.create(tenant=tenant, currency="USD", period_start=T, period_end=T)
    kinds = ["base_fee", "usage", "proration"]
    for i, amount in enumerate(amounts, start=1):
        InvoiceLine.objects.create(
            invoice=invoice,
            position=i,
            kind=kinds[(i - 1) % 3],
            description=f"line {i}",
            amount=Decimal(amount),
            currency="USD",
        )
    return invoice


def finalized(tenant, **kw) -> Invoice:
    return invoice_finalize(invoice_id=draft(tenant, **kw).pk)


# ---------------------------------------------------------------- customers
@pytest.mark.django_db
def test_customer_is_created_once_per_tenant_with_a_key_from_the_tenant(acme, stripe_api, settings):
    stripe_api.get(f"{API}/v1/customers", json=recorded("customer_list_empty"))
    stripe_api.post(f"{API}/v1/customers", json=recorded("customer"))
    assert customer_for(acme) == "cus_TQ3mW2aXk9Lb1C"
    DjstripeCustomer.objects.all().delete()  # as if the mirror had failed: Stripe is asked again
    assert customer_for(acme) == "cus_TQ3mW2aXk9Lb1C"  # a retry: same key, Stripe answers the same customer
    keys = idempotency_keys(stripe_api, "/v1/customers")
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert keys[0].startswith(f"customer-{acme.pk}-")
    # the tenant's details changed within Stripe's key window: another key, not a refusal
    DjstripeCustomer.objects.all().delete()
    acme.billing_email = "finance@acme.test"
    acme.save()
    customer_for(acme)
    assert idempotency_keys(stripe_api, "/v1/customers")[2] not in keys
    sent = posts(stripe_api, "/v1/customers")[0]
    assert form(sent)["metadata[billing_tenant_id]"] == ["acme"]
    assert form(sent)["email"] == ["billing@acme.test"]
    assert sent.request.headers["Stripe-Version"] == settings.STRIPE_API_VERSION
    assert sent.request.headers["Authorization"] == f"Bearer {settings.STRIPE_TEST_SECRET_KEY}"
    lookup = stripe_api.calls[0].request
    assert parse_qs(urlsplit(lookup.url).query)["email"] == ["billing@acme.test"]


@pytest.mark.django_db
@pytest.mark.django_db
def test_customers_are_mirrored_by_dj_stripe_and_found_there_without_asking_stripe(acme, stripe_api):
    from djstripe.models import Customer

    stripe_api.get(f"{API}/v1/customers", json=recorded("customer_list_empty"))
    stripe_api.post(f"{API}/v1/customers", json=recorded("customer"))
    assert customer_for(acme) == "cus_TQ3mW2aXk9Lb1C"
    mirrored = Customer.objects.get(id="cus_TQ3mW2aXk9Lb1C")
    assert mirrored.metadata["billing_tenant_id"] == "acme"
    calls = len(stripe_api.calls)
    assert customer_for(acme) == "cus_TQ3mW2aXk9Lb1C"
    assert len(stripe_api.calls) == calls  # found in the mirror: no Stripe call at all


@pytest.mark.django_db
def test_a_failed_mirror_is_counted_and_the_customer_still_returned(acme, stripe_api):
    from invoicing.providers.stripe_adapter import MIRROR_FAILURES

    stripe_api.replace("GET", f"{API}/v1/account", status=500, json={"error": {"type": "api_error"}})
    stripe_api.get(f"{API}/v1/customers", json=recorded("customer_list_empty"))
    stripe_api.post(f"{API}/v1/customers", json=recorded("customer"))
    before = MIRROR_FAILURES._value.get()
    assert customer_for(acme) == "cus_TQ3mW2aXk9Lb1C"
    assert MIRROR_FAILURES._value.get() == before + 1


def test_an_existing_customer_is_found_by_email_and_tenant_metadata(acme, stripe_api):
    other = recorded("customer", id="cus_other", metadata={"billing_tenant_id": "someone-else"})
    stripe_api.get(f"{API}/v1/customers", json=recorded("customer_list_empty", data=[other, recorded("customer")]))
    assert customer_for(acme) == "cus_TQ3mW2aXk9Lb1C"
    assert posts(stripe_api) == []


# ---------------------------------------------------------------- invoices
@pytest.mark.django_db
def test_invoice_push_creates_a_draft_with_one_item_per_line_and_keys_from_our_records(acme, stripe_api):
    credit_grant(tenant=acme, amount=Money(Decimal("2.50"), "USD"), reason="goodwill", actor="staff:ann")
    invoice = finalized(acme)
    assert invoice.total == Decimal("53.84")
    register_push(stripe_api, invoice)

    pushed = invoice_push(invoice)

    assert (pushed.stripe_invoice_id, pushed.status, pushed.total) == (STRIPE_INVOICE, "draft", Decimal("49.00"))
    created = form(posts(stripe_api, "/v1/invoices")[0])
    assert created["collection_method"] == ["charge_automatically"]
    assert created["auto_advance"] == ["false"]
    assert created["customer"] == ["cus_TQ3mW2aXk9Lb1C"]
    assert created["currency"] == ["usd"]
    assert created["metadata[billing_invoice_id]"] == [str(invoice.pk)]
    assert created["metadata[billing_invoice_number]"] == [invoice.number]
    assert created["custom_fields[0][value]"] == [invoice.number]
    items = [form(c) for c in posts(stripe_api, "/v1/invoiceitems")]
    assert [(i["amount"][0], i["description"][0]) for i in items] == [
        ("4900", "line 1"),
        ("1234", "line 2"),
        ("-500", "line 3"),
        ("-250", "Credit applied"),  # credit: a negative item
    ]
    assert all(i["invoice"] == [STRIPE_INVOICE] for i in items)
    assert idempotency_keys(stripe_api)[1:] == [
        f"inv-{invoice.pk}-create",
        *[f"inv-{invoice.pk}-item-{n}" for n in (1, 2, 3, 4)],
    ]


@pytest.mark.django_db
def test_a_retried_push_sends_the_same_keys(acme, stripe_api):
    invoice = finalized(acme, amounts=("49.00",))
    stripe_api.get(f"{API}/v1/customers", json=recorded("customer", object="list", data=[recorded("customer")]))
    stripe_api.get(f"{API}/v1/invoices", json=recorded("invoice_list_empty"))
    stripe_api.post(f"{API}/v1/invoices", body=requests.ConnectionError("connection reset"))
    stripe_api.post(f"{API}/v1/invoices", json=ours(invoice, "invoice_draft"))
    stripe_api.get(f"{API}/v1/invoiceitems", json=recorded("invoiceitem_list_empty"))
    stripe_api.post(f"{API}/v1/invoiceitems", json=recorded("invoiceitem"))
    stripe_api.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_draft_with_items"))

    with pytest.raises(ProviderUnavailable):
        invoice_push(invoice)
    invoice_push(invoice)

    assert idempotency_keys(stripe_api, "/v1/invoices") == [f"inv-{invoice.pk}-create"] * 2
    assert idempotency_keys(stripe_api, "/v1/invoiceitems") == [f"inv-{invoice.pk}-item-1"]


@pytest.mark.django_db
def test_a_push_after_stripe_forgot_its_keys_finds_the_invoice_and_adds_only_missing_items(acme, stripe_api):
    invoice = finalized(acme)
    stripe_api.get(f"{API}/v1/customers", json=recorded("customer_list_empty", data=[recorded("customer")]))
    someone_elses = recorded("invoice_draft", id="in_other", metadata={"billing_invoice_id": "999999"})
    stripe_api.get(
        f"{API}/v1/invoices", json=recorded("invoice_list_empty", data=[someone_elses, ours(invoice, "invoice_draft")])
    )
    stripe_api.get(f"{API}/v1/invoiceitems", json=recorded("invoiceitem_list_empty", data=[recorded("invoiceitem")]))
    stripe_api.post(f"{API}/v1/invoiceitems", json=recorded("invoiceitem"))
    stripe_api.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=ours(invoice, "invoice_draft_with_items"))

    assert invoice_push(invoice).stripe_invoice_id == STRIPE_INVOICE
    assert posts(stripe_api, "/v1/invoices") == []  # found, not created again
    assert idempotency_keys(stripe_api, "/v1/invoiceitems") == [f"inv-{invoice.pk}-item-{n}" for n in (2, 3)]
    lists = [c for c in stripe_api.calls if urlsplit(c.request.url).path == "/v1/invoices"]
    listed = parse_qs(urlsplit(lists[0].request.url).query)
    assert listed["customer"] == ["cus_TQ3mW2aXk9Lb1C"]


@pytest.mark.parametrize(
    ("name", "status", "paid", "attempts", "error"),
    [
        ("invoice_paid", "paid", Decimal("49.00"), 1, ""),
        ("invoice_open_payment_failed", "open", Decimal("0.00"), 1, "Your card has insufficient funds."),
        ("invoice_void", "void", Decimal("0.00"), 0, ""),
        ("invoice_uncollectible", "uncollectible", Decimal("0.00"), 0, ""),
    ],
)
def test_invoice_fetch_reads_stripe_state(stripe_api, name, status, paid, attempts, error):
    stripe_api.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", json=recorded(name, metadata={"billing_invoice_id": "7"}))
    remote = invoice_fetch(STRIPE_INVOICE)
    assert (remote.status, remote.amount_paid, remote.attempt_count, remote.last_payment_error) == (
        status,
        paid,
        attempts,
        error,
    )
    assert remote.billing_invoice_id == 7
    assert remote.payment_failed is (name == "invoice_open_payment_failed")
    if status == "paid":
        assert remote.paid_at == datetime.fromtimestamp(1767225760, tz=UTC)


# ---------------------------------------------------------------- charges, refunds, checkout
def test_refund_create_sends_the_callers_key_and_minor_units(stripe_api):
    stripe_api.post(f"{API}/v1/refunds", json=recorded("refund"))
    refund = refund_create(
        charge_id="ch_3SxZ00Qa7bC3dE4f",
        amount=Money(Decimal("15.00"), "USD"),
        reason="requested_by_customer",
        idempotency_key="refund-42",
    )
    assert (refund.refund_id, refund.status, refund.amount, refund.currency) == (
        "re_3SxZ00Qa7bC3dE4f",
        "succeeded",
        Decimal("15.00"),
        "USD",
    )
    sent = form(posts(stripe_api)[0])
    assert (sent["charge"], sent["amount"], sent["reason"]) == (
        ["ch_3SxZ00Qa7bC3dE4f"],
        ["1500"],
        ["requested_by_customer"],
    )
    assert idempotency_keys(stripe_api) == ["refund-42"]
    with pytest.raises(ValueError, match="minor units"):
        refund_create(charge_id="ch_x", amount=Money(Decimal("1.005"), "USD"), reason="x", idempotency_key="k")


def test_charge_fetch(stripe_api):
    stripe_api.get(f"{API}/v1/charges/ch_3SxZ00Qa7bC3dE4f", json=recorded("charge_partially_refunded"))
    charge = charge_fetch("ch_3SxZ00Qa7bC3dE4f")
    assert (charge.amount, charge.amount_refunded, charge.refunded, charge.payment_intent) == (
        Decimal("49.00"),
        Decimal("15.00"),
        False,
        "pi_3SxZ00Qa7bC3dE4f",
    )


@pytest.mark.django_db
def test_checkout_collects_a_payment_method_in_setup_mode(acme, stripe_api):
    stripe_api.get(f"{API}/v1/customers", json=recorded("customer_list_empty", data=[recorded("customer")]))
    url = "https://checkout.stripe.com/c/pay/cs_test_c1SxZ03Qa7bC3dE4f"
    stripe_api.post(f"{API}/v1/checkout/sessions", json=recorded("checkout_session_setup", status="open", url=url))
    assert checkout_session_create(acme, "pro", "https://app.example.test/ok", "https://app.example.test/no") == url
    sent = form(posts(stripe_api)[0])
    assert (sent["mode"], sent["customer"], sent["metadata[plan_code]"]) == (["setup"], ["cus_TQ3mW2aXk9Lb1C"], ["pro"])
    # a retried request (same tenant, plan and pages) sends the same key: one page, not two
    checkout_session_create(acme, "pro", "https://app.example.test/ok", "https://app.example.test/no")
    keys = idempotency_keys(stripe_api, "/v1/checkout/sessions")
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert keys[0].startswith(f"checkout-{acme.pk}-")


@pytest.mark.parametrize(
    ("status", "error_type", "raised"),
    [
        (500, "api_error", ProviderUnavailable),
        (503, "api_error", ProviderUnavailable),
        (429, "invalid_request_error", ProviderUnavailable),
        (402, "card_error", ProviderRejected),
        (400, "invalid_request_error", ProviderRejected),
        (401, "invalid_request_error", ProviderRejected),
    ],
)
def test_stripe_errors_become_ours(stripe_api, status, error_type, raised):
    body = {"error": {"type": error_type, "message": "nope", "code": "rate_limit" if status == 429 else None}}
    stripe_api.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", status=status, json=body)
    with pytest.raises(raised):
        invoice_fetch(STRIPE_INVOICE)


def test_a_connection_error_is_unavailable(stripe_api):
    stripe_api.get(f"{API}/v1/invoices/{STRIPE_INVOICE}", body=requests.ConnectionError("no route to host"))
    with pytest.raises(ProviderUnavailable):
        invoice_fetch(STRIPE_INVOICE)


def test_api_base_setting_points_the_client_elsewhere(stripe_api, settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:8420"
    stripe_api.get(f"http://127.0.0.1:8420/v1/invoices/{STRIPE_INVOICE}", json=recorded("invoice_paid"))
    assert invoice_fetch(STRIPE_INVOICE).status == "paid"


# ---------------------------------------------------------------- localstripe (optional smoke test)
# localstripe is GPL: it runs in its own interpreter (LOCALSTRIPE_PYTHON, e.g. a throwaway venv
# with `pip install localstripe`) as a separate process, never imported here. The launcher binds
# it to 127.0.0.1 and turns off its pickle dump to /tmp (its CLI offers neither).
LOCALSTRIPE_LAUNCHER = """
import sys
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


@pytest.fixture
def localstripe(settings, monkeypatch):
    import os
    import socket
    import subprocess
    import time

    python = os.environ.get("LOCALSTRIPE_PYTHON", "")
    if not python:  # a bare `pytest` run; `make test` (and so CI) always sets it
        pytest.skip("set LOCALSTRIPE_PYTHON to an interpreter with localstripe installed (make test does)")
    assert Path(python).exists(), f"LOCALSTRIPE_PYTHON={python} does not exist"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([python, "-c", LOCALSTRIPE_LAUNCHER, str(port)])  # noqa: S603
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("localstripe did not start")
                time.sleep(0.1)
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"
        settings.STRIPE_LIVE_MODE = False
        monkeypatch.setattr(stripe_adapter, "MAX_NETWORK_RETRIES", 0)
        yield settings.STRIPE_API_BASE
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
@pytest.mark.django_db
def test_localstripe_customer_smoke(acme, localstripe, settings):
    from djstripe.models import Account, APIKey

    # localstripe serves no /v1/account: dj-stripe learns the key's account offline, as in production it asks once
    data = recorded("account")
    account = Account.objects.create(id=data["id"], livemode=False, stripe_data=data)
    key, _ = APIKey.objects.get_or_create_by_api_key(settings.STRIPE_TEST_SECRET_KEY)
    key.djstripe_owner_account = account
    key.save()
    first = customer_for(acme)
    assert first.startswith("cus_")
    assert DjstripeCustomer.objects.filter(id=first).exists()  # mirrored by dj-stripe from localstripe
    assert customer_for(acme) == first  # found again by email + tenant metadata, not created twice
    other = tenant_upsert(external_id="globex", name="Globex", billing_email="billing@acme.test")[0]
    assert customer_for(other) != first  # same email, another tenant: its own customer
