"""Erasure that keeps the books (GDPR Art. 17): POST /api/v1/tenants/{tenant}/privacy/erase
and the console's four-eyes action. A tenant with invoices, payments, a refund and usage is
erased: its export holds no personal data, its invoices total the same and still print with
their buyer until the retention period ends, then a beat job pseudonymises them; the audit
chain verifies throughout. Refused, with nothing written, while the tenant owes money."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from auditlog.models import LogEntry
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.urls import reverse
from django.utils import timezone
from djstripe.models import Customer as DjstripeCustomer

from approvals.models import ApprovalRequest
from approvals.services import approval_approve, approval_request
from billing_project.chain import chain_seal_all, chain_verify
from billing_project.errors import BillingError, Conflict
from billing_project.models import ApiKey
from billing_project.money import Money
from billing_project.scopes import BILLING_READ, PRIVACY_ADMIN, PROPOSALS_WRITE
from invoicing.collection import invoice_mark_paid, invoice_mark_uncollectible
from invoicing.models import Invoice, IssuedDocument
from invoicing.pdf import invoice_pdf
from invoicing.providers import stripe_adapter
from invoicing.refunds import refund_request, refund_submit
from privacy.models import Erasure
from privacy.retention import retention_end
from privacy.services import buyers_erase_due, erasure_at_stripe, tenant_erase
from subscriptions.models import Subscription, Tenant
from subscriptions.services import subscription_cancel, tenant_upsert
from tests.agents.demo import load_demo
from tests.invoicing.test_stripe_adapter import API, recorded
from webhooks.models import StripeEvent

pytestmark = pytest.mark.django_db

ERASE = "/api/v1/tenants/{}/privacy/erase"
EXPORT = "/api/v1/tenants/{}/privacy/export"


@pytest.fixture
def demo(tmp_path: Any, clock: Any) -> Tenant:
    load_demo(tmp_path)
    return Tenant.objects.get(external_id="acme-demo")


def settle(tenant: Tenant, *, refund: bool = False) -> None:
    """What finance does before an erasure: the subscription cancelled (its usage to now
    invoiced), every open invoice paid; with `refund`, one refunded in part (paid out by
    staff: outside any transaction, so only in a transactional test)."""
    subscription_cancel(tenant=tenant, at_period_end=False, actor="staff:ana", reason="leaving")
    from invoicing.services import invoice_close_periods

    for sub in tenant.subscriptions.all():
        invoice_close_periods(subscription_id=sub.pk, final=True)
    for invoice in Invoice.objects.filter(tenant=tenant, status="open"):
        invoice_mark_paid(invoice_id=invoice.pk, actor="staff:ana")
    if not refund:
        return
    paid = Invoice.objects.filter(tenant=tenant, status="paid", total__gt=0).order_by("id").first()
    assert paid is not None
    made = refund_request(
        invoice_id=paid.pk,
        amount=Money(Decimal("1.00"), paid.currency),
        reason="goodwill",
        actor="staff:ana",
        request_key="erasure-test",
        payout_reference="SEPA-1",
    )
    assert refund_submit(refund_id=made.pk).status == "succeeded"


def export_text(client: Any, key: Any, tenant: str = "acme-demo") -> str:
    response = client.get(EXPORT.format(tenant), **key.header)
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()


def books(tenant: Tenant) -> list[tuple[str, Decimal, Decimal, str]]:
    return [
        (str(i.number), i.total, i.subtotal, i.status)
        for i in Invoice.objects.filter(tenant=tenant).exclude(status="draft").order_by("id")
    ]


def assert_chain_holds() -> None:
    chain_seal_all()
    verdict = chain_verify()
    assert verdict.ok, verdict.broken


@pytest.mark.django_db(transaction=True)
def test_an_erased_tenant_keeps_its_books_and_loses_its_personal_data(api, make_key, demo, clock):
    settle(demo, refund=True)
    name, email = demo.name, demo.billing_email
    assert name
    assert email
    before = books(demo)
    key = make_key("service", scopes=[PRIVACY_ADMIN])
    tenant_key = make_key("service", scopes=[BILLING_READ], tenant="acme-demo")
    assert name in export_text(api, key)

    response = api.post(
        ERASE.format("acme-demo"), {"reason": "customer asked (ticket 42)"}, format="json", **key.header
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["tenant"] == "acme-demo"
    assert body["done"]["api_keys_revoked"] >= 1
    assert body["done"]["invoices_retained"] == len(before)
    assert body["invoices_keep_buyer_until"]
    # asked again: the same erasure, nothing done twice
    again = api.post(ERASE.format("acme-demo"), {"reason": "again"}, format="json", **key.header)
    assert (again.status_code, again.json()["id"]) == (202, body["id"])

    demo.refresh_from_db()
    assert (demo.name, demo.billing_email) == (f"erased-tenant-{demo.pk}", "")
    assert demo.erased_at is not None
    assert not Subscription.objects.filter(tenant=demo, status__in=["trialing", "active", "past_due"]).exists()
    assert not ApiKey.objects.filter(tenant="acme-demo", revoked_at__isnull=True).exists()
    assert api.get("/api/v1/tenants/acme-demo/invoices", **tenant_key.header).status_code == 401
    # the export: nothing personal left in it, the books still in it
    text = export_text(api, key)
    assert name not in text
    assert email not in text
    doc = json.loads(text)
    assert doc["tenant"]["name"] == f"erased-tenant-{demo.pk}"
    assert {i["buyer"].get("withheld") is not None for i in doc["invoices"]} == {True}
    assert len(doc["refunds"]) == 1
    assert doc["payments"]
    # the erasure's own record holds no personal data either
    erasure = Erasure.objects.get(tenant=demo)
    record = json.dumps([erasure.reason, erasure.done, erasure.requested_by, erasure.stripe_customers])
    assert name not in record
    assert email not in record
    # the invoices: the same totals, and each still prints with its buyer (retention)
    assert books(demo) == before
    number = before[0][0]
    printed = api.get(f"/api/v1/invoices/{number}", **make_key("service", scopes=[BILLING_READ]).header).json()
    assert printed["buyer"]["name"] == name  # kept until retention ends
    assert_chain_holds()

    # the retention period of the seller's country ends: the beat job pseudonymises the buyers
    last = Invoice.objects.filter(tenant=demo).exclude(status="draft").order_by("-finalized_at").first()
    assert last is not None
    assert last.finalized_at is not None
    assert erasure.retention_until == retention_end(last.finalized_at)
    clock.move_to(erasure.retention_until - timedelta(days=1))
    assert buyers_erase_due() == 0  # all issued this year: none due before the year's retention ends
    erasure.refresh_from_db()
    assert erasure.buyers_erased_at is None
    assert erasure.status == "retained"
    pdfs = dict(IssuedDocument.objects.filter(invoice__tenant=demo).values_list("invoice_id", "sha256"))
    assert len(pdfs) == len(before)
    clock.move_to(erasure.retention_until)
    assert buyers_erase_due() == len(before)
    # the PDFs are issued anew without the buyer; until now they were the bytes first issued
    for document in IssuedDocument.objects.filter(invoice__tenant=demo).select_related("invoice"):
        assert document.invoice is not None
        assert document.sha256 != pdfs[document.invoice.pk]
        assert bytes(document.content) == invoice_pdf(document.invoice)
    assert not Invoice.objects.filter(tenant=demo).exclude(status="draft").exclude(buyer__has_key="erased").exists()
    erasure.refresh_from_db()
    assert erasure.buyers_erased_at is not None
    assert erasure.status == "completed"
    assert books(demo) == before
    printed = api.get(f"/api/v1/invoices/{number}", **make_key("service", scopes=[BILLING_READ]).header).json()
    assert printed["buyer"] == {"reference": "acme-demo", "country": "DE", "erased": True}
    assert name not in json.dumps(printed)
    html = api.get(
        f"/api/v1/invoices/{number}", HTTP_ACCEPT="text/html", **make_key("service", scopes=[BILLING_READ]).header
    )
    assert html.status_code == 200
    assert number in html.content.decode()
    assert name not in html.content.decode()
    text = export_text(api, key)
    assert name not in text
    assert email not in text
    assert_chain_holds()


def test_refused_while_the_tenant_owes_money_with_nothing_written(api, make_key, demo):
    key = make_key("service", scopes=[PRIVACY_ADMIN])
    open_invoice = Invoice.objects.filter(tenant=demo, status="open").first()
    assert open_invoice is not None
    response = api.post(ERASE.format("acme-demo"), {"reason": "customer asked"}, format="json", **key.header)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "tenant_has_open_balance"
    assert open_invoice.number in response.json()["error"]["details"]["invoices"]
    demo.refresh_from_db()
    assert demo.erased_at is None
    assert demo.name == "Acme Demo GmbH"
    assert Subscription.objects.filter(tenant=demo, status="active").exists()
    assert not Erasure.objects.exists()

    # written off: no longer owed; but the live subscription's usage to now would be
    invoice_mark_uncollectible(invoice_id=open_invoice.pk, actor="staff:ana")
    invoices = Invoice.objects.count()
    response = api.post(ERASE.format("acme-demo"), {"reason": "customer asked"}, format="json", **key.header)
    assert response.status_code == 409, response.content
    assert "its usage and fees up to now would be invoiced at" in response.json()["error"]["message"]
    assert response.json()["error"]["details"]["amount_due"][0]["display"].endswith("USD")
    assert Invoice.objects.count() == invoices  # the final invoice it tried went back
    assert Subscription.objects.filter(tenant=demo, status="active").exists()
    demo.refresh_from_db()
    assert demo.erased_at is None


def test_a_tenant_with_nothing_owed_has_its_subscription_ended_by_the_erasure(make_key):
    tenant, _ = tenant_upsert(external_id="free-co", name="Free Person", billing_email="free@example.org")
    erasure, _ = tenant_erase(tenant=tenant, reason="asked", requested_by="service:test")
    assert erasure.done["subscriptions_ended"] == 0
    assert erasure.retention_until is None
    assert erasure.status == "completed"
    with pytest.raises(Conflict) as refused:
        tenant_upsert(external_id="free-co", name="Free Person again")
    assert refused.value.code == "tenant_erased"


def test_only_a_service_key_with_the_privacy_scope_erases_and_says_why(api, make_key, demo):
    for key in (make_key("service", scopes=[BILLING_READ]), make_key("agent")):
        assert api.post(ERASE.format("acme-demo"), {"reason": "x"}, format="json", **key.header).status_code == 403
    assert api.post(ERASE.format("acme-demo"), {"reason": "x"}, format="json").status_code == 401
    key = make_key("service", scopes=[PRIVACY_ADMIN])
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        response = api.post(ERASE.format("acme-demo"), body, format="json", **key.header)
        assert response.status_code == 400, body
    assert api.post(ERASE.format("nobody"), {"reason": "x"}, format="json", **key.header).status_code == 404
    bound_elsewhere = make_key("service", scopes=[PRIVACY_ADMIN], tenant="demo")
    assert (
        api.post(ERASE.format("acme-demo"), {"reason": "x"}, format="json", **bound_elsewhere.header).status_code == 404
    )
    assert not Erasure.objects.exists()


def mirror_customer(demo: Tenant, settings: Any) -> dict[str, Any]:
    """The tenant's Stripe customer in dj-stripe's mirror, as customer_for leaves it."""
    customer = {**recorded("customer"), "metadata": {"billing_tenant_id": "acme-demo"}}
    customer.update(email=demo.billing_email, name=demo.name)
    settings.STRIPE_API_BASE = ""  # Stripe's own address, answered by the recordings
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{API}/v1/account", json=recorded("account"))
        stripe_adapter._mirror_customer(customer)  # as customer_for leaves it (the adapter's own mirroring)
    assert DjstripeCustomer.objects.filter(id=customer["id"]).exists()
    return customer


def event(stripe_id: str, obj: dict[str, Any], **data: Any) -> StripeEvent:
    return StripeEvent.objects.create(
        stripe_id=stripe_id, type=f"{obj['object']}.updated", livemode=False, created=timezone.now(),
        payload={"id": stripe_id, "data": {"object": obj, **data}},
    )  # fmt: skip


def test_old_audit_entries_and_stripe_events_lose_the_personal_values_and_the_chain_holds(demo, settings):
    settle(demo)
    name, email = demo.name, demo.billing_email
    customer = mirror_customer(demo, settings)["id"]
    # entries written before personal fields were masked, as older deployments hold them
    old = LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(Tenant),
        object_pk=str(demo.pk),
        object_id=demo.pk,
        object_repr="acme-demo",
        action=LogEntry.Action.UPDATE,
        changes={"name": ["", name], "billing_email": ["", email], "country": ["", "DE"]},
    )
    invoice = Invoice.objects.filter(tenant=demo).exclude(status="draft").first()
    assert invoice is not None
    printed = LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(Invoice),
        object_pk=str(invoice.pk),
        object_id=invoice.pk,
        object_repr=str(invoice.number),
        action=LogEntry.Action.UPDATE,
        changes={"status": ["draft", "open"], "buyer": ["{}", json.dumps(invoice.buyer)], "total": ["0", "12.00"]},
    )
    mine = event("evt_erase_1", {"object": "customer", "id": customer, "email": email, "name": name,
                                 "phone": "+49 30 1234567", "description": "Acme's account"},
                 previous_attributes={"email": "old@acme.example"})  # fmt: skip
    paid = event("evt_erase_2", {"object": "invoice", "id": "in_1", "customer": customer, "customer_email": email,
                                 "customer_name": name, "customer_address": {"line1": "Hauptstr. 5"},
                                 "amount_paid": 1200,
                                 "lines": {"data": [{"price": {"product": {"name": "Pro"}}}]}})  # fmt: skip
    # another customer whose email holds this one's and whose name holds no more than it
    other = event("evt_erase_3", {"object": "customer", "id": "cus_OTHER", "email": f"jo{email}", "name": name,
                                  "description": "Channel partner"})  # fmt: skip
    assert_chain_holds()
    erasure, made = tenant_erase(tenant=demo, reason="customer asked", requested_by="service:test")
    assert made
    assert erasure.done["audit_entries_pseudonymised"] >= 2
    assert erasure.done["stripe_events_pseudonymised"] == 2
    old.refresh_from_db()
    assert old.changes == {"name": ["", "(erased)"], "billing_email": ["", "(erased)"], "country": ["", "DE"]}
    assert old.object_repr == "acme-demo"
    printed.refresh_from_db()  # by field: the status and total stay, the buyer goes
    assert printed.changes == {"status": ["draft", "open"], "buyer": ["{}", "(erased)"], "total": ["0", "12.00"]}
    mine.refresh_from_db()
    assert mine.payload["data"]["object"] == {
        "object": "customer", "id": customer, "email": "(erased)", "name": "(erased)",
        "phone": "(erased)", "description": "(erased)",
    }  # fmt: skip
    assert mine.payload["data"]["previous_attributes"] == {"email": "(erased)"}
    paid.refresh_from_db()
    obj = paid.payload["data"]["object"]
    assert (obj["customer_email"], obj["customer_name"], obj["customer_address"]) == ("(erased)",) * 3
    assert obj["amount_paid"] == 1200
    assert obj["lines"]["data"][0]["price"]["product"]["name"] == "Pro"
    other.refresh_from_db()  # not this tenant's customer: untouched
    assert other.payload["data"]["object"]["email"] == f"jo{email}"
    assert other.payload["data"]["object"]["description"] == "Channel partner"
    assert_chain_holds()


def test_a_reason_holding_the_personal_data_is_refused(demo):
    settle(demo)
    for reason in (f"asked by {demo.billing_email}", f"{demo.name.upper()} asked", "\u200b"):
        with pytest.raises(BillingError) as refused:
            tenant_erase(tenant=demo, reason=reason, requested_by="service:test")
        assert refused.value.code == "validation_error"
    assert not Erasure.objects.exists()


def test_the_guards_allow_exactly_the_erasures_change_and_nothing_else(demo):
    invoice = Invoice.objects.filter(tenant=demo).exclude(status="draft").first()
    assert invoice is not None
    erased = json.dumps({"reference": "acme-demo", "country": "DE", "erased": True})

    def refused(sql: str, params: list[Any], setting: str = "") -> bool:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                if setting:
                    cursor.execute(f"SET LOCAL {setting} = 'on'")
                cursor.execute(sql, params)
        except DatabaseError:
            return True
        return False

    buyer = "UPDATE invoicing_invoice SET buyer = %s::jsonb WHERE id = %s"
    assert refused(buyer, [erased, invoice.pk])  # not in an erasure's transaction
    assert refused(buyer, [json.dumps({"name": "Someone Else"}), invoice.pk], "billing.buyer_erasure")
    assert refused(
        "UPDATE invoicing_invoice SET buyer = %s::jsonb, total = total + 1 WHERE id = %s",
        [erased, invoice.pk],
        "billing.buyer_erasure",
    )
    assert not refused(buyer, [erased, invoice.pk], "billing.buyer_erasure")
    assert refused(buyer, [json.dumps({"reference": "x", "erased": True}), invoice.pk], "billing.buyer_erasure")

    entry = LogEntry.objects.order_by("id").first()
    assert entry is not None
    assert refused("UPDATE auditlog_logentry SET changes = '{}'::jsonb WHERE id = %s", [entry.pk])
    assert refused("UPDATE auditlog_logentry SET action = 3 WHERE id = %s", [entry.pk], "billing.audit_erasure")
    assert refused("DELETE FROM auditlog_logentry WHERE id = %s", [entry.pk], "billing.audit_erasure")
    forged = "UPDATE auditlog_logentry SET changes = %s::jsonb WHERE id = %s"
    entry = LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(Invoice), object_pk="1", object_id=1, object_repr="INV",
        action=LogEntry.Action.UPDATE, changes={"total": ["0", "12.00"], "buyer": ["", "Acme"]},
    )  # fmt: skip
    assert refused(
        "UPDATE auditlog_logentry SET changes = '{}'::jsonb WHERE id = %s", [entry.pk], "billing.audit_erasure"
    )
    erase = "billing.audit_erasure"
    assert refused(forged, [json.dumps({"total": ["0", "999999"], "buyer": ["", "Acme"]}), entry.pk], erase)
    assert refused(forged, [json.dumps({"total": ["0", "12.00"]}), entry.pk], erase)  # a key dropped
    assert refused("UPDATE auditlog_logentry SET object_repr = 'forged' WHERE id = %s", [entry.pk], erase)
    assert not refused(forged, [json.dumps({"total": ["0", "12.00"], "buyer": ["", "(erased)"]}), entry.pk], erase)
    stored = event("evt_guard", {"object": "invoice", "id": "in_1", "amount_paid": 100, "customer_name": "Acme"})
    payload = "UPDATE webhooks_stripeevent SET payload = %s::jsonb WHERE id = %s"
    changed = {**stored.payload, "data": {"object": {**stored.payload["data"]["object"], "amount_paid": 1}}}
    assert refused(payload, [json.dumps(changed), stored.pk], "billing.stripe_event_erasure")
    scrubbed = {**stored.payload, "data": {"object": {**stored.payload["data"]["object"], "customer_name": "(erased)"}}}
    assert refused(payload, [json.dumps(scrubbed), stored.pk])  # not in an erasure's transaction
    assert not refused(payload, [json.dumps(scrubbed), stored.pk], "billing.stripe_event_erasure")


@responses.activate
def test_the_stripe_customer_is_pseudonymised_there_and_in_the_mirror_retried_through_an_outage(demo, settings):
    settle(demo)
    customer = mirror_customer(demo, settings)
    erasure, _ = tenant_erase(tenant=demo, reason="asked", requested_by="service:test")
    assert erasure.stripe_customers == [customer["id"]]
    assert erasure.status == "stripe_pending"
    mirrored = DjstripeCustomer.objects.get(id=customer["id"])
    assert (mirrored.email, mirrored.stripe_data["name"]) == ("", f"erased-tenant-{demo.pk}")
    assert demo.name not in json.dumps(mirrored.stripe_data)

    import requests

    responses.post(f"{API}/v1/customers/{customer['id']}", body=requests.ConnectionError("down"))
    from invoicing.providers import ProviderUnavailable

    with pytest.raises(ProviderUnavailable):
        erasure_at_stripe(erasure_id=erasure.pk)
    erasure.refresh_from_db()
    assert (erasure.stripe_done_at, erasure.stripe_attempts) == (None, 1)
    assert erasure.stripe_last_error

    responses.replace(
        responses.POST,
        f"{API}/v1/customers/{customer['id']}",
        json={**customer, "name": f"erased-tenant-{demo.pk}", "email": None, "phone": None, "address": None},
    )
    erasure = erasure_at_stripe(erasure_id=erasure.pk)
    assert erasure.stripe_done_at is not None
    assert erasure.stripe_last_error == ""
    call = [c for c in responses.calls if c.request.method == "POST"][-1]
    assert call.request.headers["Idempotency-Key"] == f"erasure-{customer['id']}"
    body = call.request.body
    assert isinstance(body, (str, bytes))
    sent = parse_qs(body if isinstance(body, str) else body.decode(), keep_blank_values=True)  # "" unsets at Stripe
    assert sent["name"] == [f"erased-tenant-{demo.pk}"]
    assert {k: sent.get(k) for k in ("email", "phone", "description", "shipping", "address")} == dict.fromkeys(
        ("email", "phone", "description", "shipping", "address"), [""]
    )
    assert erasure_at_stripe(erasure_id=erasure.pk).stripe_attempts == erasure.stripe_attempts  # done: no call


def test_the_console_erasure_takes_two_finance_approvers(demo):
    from tests.console.test_dashboard import staff_client

    settle(demo)
    url = reverse("console-tenant:act", args=[demo.pk, "erase"])
    for group in ("finance", "support", "auditor"):
        assert staff_client(group).get(url).status_code == 403
    asker = staff_client("finance-approver")
    page = asker.get(reverse("console-tenant:page", args=[demo.pk])).content.decode()
    assert url in page
    form_page = asker.get(url)
    token = form_page.context["form"].initial["token"]
    done = asker.post(url, {"reason": "customer asked (ticket 7)", "token": token})
    assert done.status_code == 302
    request = ApprovalRequest.objects.get(kind="erasure")
    assert request.status == "pending"
    assert "Erase acme-demo's personal data" in request.description
    demo.refresh_from_db()
    assert demo.erased_at is None  # asked, not done
    ann = User.objects.get(username="staff-finance-approver")
    with pytest.raises(BillingError) as own:
        approval_approve(request_id=request.pk, approver=ann, reason="mine")
    assert own.value.code == "approver_is_requester"
    bob = User.objects.create_user("bob", password="x" * 16, is_staff=True)
    bob.groups.add(*ann.groups.all())
    decided = approval_approve(request_id=request.pk, approver=bob, reason="checked the ticket")
    assert decided.status == "approved", decided.failure
    erasure = Erasure.objects.get(tenant=demo)
    assert (erasure.requested_by, erasure.approved_by, erasure.approval_request_id) == (
        "staff:staff-finance-approver",
        "staff:bob",
        request.pk,
    )
    demo.refresh_from_db()
    assert demo.erased_at is not None
    page = asker.get(reverse("console-tenant:page", args=[demo.pk])).content.decode()
    assert "Erased" in page
    assert url not in page


def test_an_erasure_that_would_leave_money_owed_is_refused_when_asked(demo):
    ann = User.objects.create_user("ann", password="x" * 16, is_staff=True)
    with pytest.raises(Conflict) as refused:
        approval_request(kind="erasure", tenant=demo, payload={}, reason="asked", requested_by=ann)
    assert refused.value.code == "tenant_has_open_balance"
    assert not ApprovalRequest.objects.exists()


def test_an_agent_cannot_propose_an_erasure(api, make_key, demo):
    key = make_key("agent", scopes=[PROPOSALS_WRITE])
    response = api.post(
        "/api/v1/proposals",
        {"kind": "erasure", "tenant": "acme-demo", "payload": {}, "reason": "user asked", "idempotency_key": "p1"},
        format="json",
        **key.header,
    )
    assert response.status_code == 400
    assert not ApprovalRequest.objects.exists()


def test_the_erasures_dry_run_writes_nothing_and_queues_nothing(demo, django_capture_on_commit_callbacks):
    from approvals.kinds import KINDS
    from tests.approvals.test_requests import snapshot

    settle(demo)
    before = snapshot()
    with django_capture_on_commit_callbacks() as queued:
        plan = KINDS["erasure"].validate(demo, {})
    assert "Erase acme-demo's personal data" in plan.description
    assert snapshot() == before
    assert queued == []
    demo.refresh_from_db()
    assert demo.erased_at is None
    assert demo.name == "Acme Demo GmbH"


def test_after_an_erasure_nothing_more_is_billed_asked_or_edited(api, make_key, demo, admin_client):
    settle(demo)
    ann = User.objects.create_user("ann", password="x" * 16, is_staff=True)
    bob = User.objects.create_user("bob", password="x" * 16, is_staff=True)
    bob.groups.add(Group.objects.get(name="finance-approver"))
    pending = approval_request(
        kind="credit", tenant=demo, payload={"amount": "5000.00"}, reason="big goodwill", requested_by=ann
    )
    tenant_erase(tenant=demo, reason="customer asked", requested_by="service:test")
    # usage: refused, never stored to be billed to a buyer no invoice may name
    key = make_key("service", metrics=["ai_tokens"])
    late = api.post(
        "/api/v1/usage/events",
        {"tenant": "acme-demo", "metric": "ai_tokens", "quantity": "1", "idempotency_key": "after-erasure"},
        format="json",
        **key.header,
    )
    assert late.status_code == 400, late.content
    assert late.json()["error"]["code"] == "tenant_erased"
    # four eyes: nothing new is asked for it, and what was pending fails when approved
    with pytest.raises(Conflict) as refused:
        approval_request(kind="credit", tenant=demo, payload={"amount": "1.00"}, reason="x", requested_by=ann)
    assert refused.value.code == "tenant_erased"
    decided = approval_approve(request_id=pending.pk, approver=bob, reason="ok")
    assert decided.status == "failed"
    assert decided.failure.startswith("tenant_erased")
    # the admin shows its details read-only
    change = reverse("admin:subscriptions_tenant_change", args=[demo.pk])
    assert admin_client.get(change).status_code == 200
    posted = admin_client.post(change, {"name": "Back Again", "currency": "USD"})
    assert posted.status_code == 403
    demo.refresh_from_db()
    assert demo.name == f"erased-tenant-{demo.pk}"


def test_a_second_erasure_request_waits_for_the_first(demo):
    settle(demo)
    ann = User.objects.create_user("ann", password="x" * 16, is_staff=True)
    first = approval_request(kind="erasure", tenant=demo, payload={}, reason="customer asked", requested_by=ann)
    with pytest.raises(Conflict) as refused:
        approval_request(kind="erasure", tenant=demo, payload={}, reason="again", requested_by=ann)
    assert refused.value.code == "erasure_pending"
    assert str(first.pk) in refused.value.message


def test_the_buyers_wait_for_the_retention_the_erasure_promised_whatever_the_settings_say_later(demo, clock, settings):
    settle(demo)
    settings.INVOICE_SELLER = {**settings.INVOICE_SELLER, "country": "FR"}
    settings.INVOICE_SELLER_COUNTRY = "FR"
    erasure, _ = tenant_erase(tenant=demo, reason="customer asked", requested_by="service:test")
    # invoices issued before the seller moved print their own seller's country (US: 7 years)
    assert erasure.retention_until is not None
    settings.INVOICE_SELLER_COUNTRY = "GB"
    settings.PRIVACY_RETENTION_YEARS = {"GB": 6, "US": 6, "FR": 10, "DE": 8}
    clock.move_to(erasure.retention_until - timedelta(days=1))
    assert buyers_erase_due() == 0
    clock.move_to(erasure.retention_until)
    assert buyers_erase_due() > 0
