"""A tenant's whole picture on one page, and the money actions on it (console/tenant.py,
console/actions.py), on the hand-built ledger of tests/console/ledger.py: who may open and
use what (the matrix's TENANT_PAGE and TENANT_ACTIONS, walked as each group), that each
action calls its service once and audits the staff member, and that above
APPROVAL_THRESHOLDS a credit, refund or credit note is asked for, not done."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.urls import reverse

from approvals.models import ApprovalRequest
from billing_project.staff_matrix import NO_GROUP, ROLES, TENANT_ACTIONS, TENANT_PAGE
from console.actions import ACTIONS
from console.models import StaffAction
from invoicing.models import CreditEntry, Invoice, Refund
from tests.conftest import verified_login
from tests.console.ledger import T

pytestmark = [pytest.mark.django_db]


def staff(role: str, name: str | None = None) -> User:
    user = User.objects.create_user(name or f"staff-{role}".replace(" ", "-"), password="x" * 16, is_staff=True)
    if role != NO_GROUP:
        user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)


def client_for(user: User) -> Client:
    client = Client()
    verified_login(client, user)
    return client


def page(tenant) -> str:
    return reverse("console-tenant:page", args=[tenant.pk])


def act(tenant, code: str, **query: object) -> str:
    url = reverse("console-tenant:act", args=[tenant.pk, code])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def form_token(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return str(response.context["form"].initial["token"])


def test_every_action_is_in_the_matrix():
    assert set(ACTIONS) == set(TENANT_ACTIONS)


@pytest.mark.parametrize("role", ROLES)
def test_each_group_opens_the_page_and_uses_the_actions_the_matrix_gives_it(ledger, role):
    acme = ledger.tenants["acme"]
    paid = ledger.invoices["i2"]
    client = client_for(staff(role))
    assert client.get(page(acme)).status_code == (200 if role in TENANT_PAGE else 403)
    for code, groups in TENANT_ACTIONS.items():
        query = {"invoice": paid.pk} if ACTIONS[code].needs == "invoice" else {}
        if ACTIONS[code].needs == "grant":
            query = {"grant": 0}
        get = client.get(act(acme, code, **query)).status_code
        post = client.post(act(acme, code, **query), {"reason": "x", "token": "t"}).status_code
        if role in groups:
            assert get in (200, 404), (code, role, get)  # 404: no such grant here
        else:
            assert (get, post) == (403, 403), (code, role)


def test_the_page_shows_the_whole_picture(ledger):
    acme = ledger.tenants["acme"]
    response = client_for(staff("finance")).get(page(acme))
    html = response.content.decode()
    for section in (
        "tp-details",
        "tp-subscription",
        "tp-credit",
        "tp-entitlements",
        "tp-invoices",
        "tp-ledger",
        "tp-grants",
        "tp-timeline",
    ):
        assert f'id="{section}"' in html, section
    assert "1,200.00 USD" in html  # amounts at the currency's precision, thousands separated
    assert ledger.invoices["i2"].number in html
    timeline = response.context["timeline"]
    assert any("Refund" in h.what for h in timeline)
    assert any(h.what.startswith("Invoice ") for h in timeline)
    assert timeline == sorted(timeline, key=lambda h: h.at, reverse=True)


def test_support_sees_what_the_admin_lets_it_read_and_no_action(ledger):
    html = client_for(staff("support")).get(page(ledger.tenants["acme"])).content.decode()
    assert 'id="tp-subscription"' in html
    assert 'id="tp-usage"' in html  # the billing view: usage and cost to date
    assert 'id="tp-invoices"' not in html  # no invoices: no amounts beyond the billing view
    assert "1,200.00" not in html  # nor in the timeline or the approvals
    assert "Refund of" not in html
    assert 'id="tp-approvals"' not in html
    assert 'id="tp-ledger"' not in html  # not the credit ledger
    assert 'id="tp-credit"' not in html
    assert "/refund/" not in html
    assert "/credit/" not in html


def test_a_tenants_name_is_escaped(ledger):
    acme = ledger.tenants["acme"]
    type(acme).objects.filter(pk=acme.pk).update(name='<script>alert("x")</script>')
    html = client_for(staff("auditor")).get(page(acme)).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html


def test_a_credit_below_the_threshold_is_granted_and_audited_with_the_staff_member(ledger):
    acme = ledger.tenants["acme"]
    fin = staff("finance", "fin")
    client = client_for(fin)
    url = act(acme, "credit")
    response = client.post(
        url, {"token": form_token(client, url), "amount": "25.00", "currency": "USD", "reason": "outage"}
    )
    assert response.status_code == 302, response.content[:500]
    entry = CreditEntry.objects.filter(tenant=acme, reason="outage").get()
    assert (entry.amount, entry.currency, entry.actor) == (Decimal("25.00"), "USD", "staff:fin")
    assert not ApprovalRequest.objects.exists()


def test_a_credit_with_an_expiry_shows_when_it_expires(ledger):
    acme = ledger.tenants["acme"]
    client = client_for(staff("finance", "fin"))
    url = act(acme, "credit")
    expires = (T + timedelta(days=30)).replace(second=0, microsecond=0)
    fields = {"token": form_token(client, url), "amount": "12.00", "currency": "USD", "reason": "promo"}
    response = client.post(url, {**fields, "expires_at": f"{expires:%Y-%m-%d %H:%M}"}, follow=True)
    assert "expiring" in response.content.decode()
    assert CreditEntry.objects.get(reason="promo").expires_at == expires
    html = client.get(page(acme)).content.decode()
    assert f"of it expires {expires:%Y-%m-%d %H:%M} UTC" in html

    refused = client.post(url, {**fields, "token": form_token(client, url), "expires_at": "2001-01-01 00:00"})
    assert refused.status_code == 400
    assert "in the future" in refused.content.decode()
    assert CreditEntry.objects.filter(reason="promo").count() == 1


def test_a_credit_above_the_threshold_waits_for_a_second_person(ledger):
    acme = ledger.tenants["acme"]
    client = client_for(staff("finance", "fin"))
    url = act(acme, "credit")
    client.post(url, {"token": form_token(client, url), "amount": "500.01", "currency": "USD", "reason": "big outage"})
    assert not CreditEntry.objects.filter(reason="big outage").exists()
    request = ApprovalRequest.objects.select_related("requested_by").get()
    assert request.requested_by is not None
    assert (request.kind, request.status, request.amount, request.requested_by.username) == (
        "credit",
        "pending",
        Decimal("500.01"),
        "fin",
    )


def test_a_refund_is_recorded_and_above_the_threshold_awaits_approval(ledger):
    acme = ledger.tenants["acme"]
    paid = ledger.invoices["i2"]
    Invoice.objects.filter(pk=paid.pk).update(stripe_invoice_id="in_test_console_i2")
    client = client_for(staff("finance", "fin"))
    url = act(acme, "refund", invoice=paid.pk)
    small = client.post(
        url, {"token": form_token(client, url), "amount": "40.00", "reason": "goodwill", "invoice": paid.pk}
    )
    assert small.status_code == 302, small.content[:500]
    refund = Refund.objects.get(invoice=paid, amount=Decimal("40.00"))
    assert (refund.status, refund.requested_by) == ("requested", "staff:fin")
    big = client.post(
        url, {"token": form_token(client, url), "amount": "600.00", "reason": "cancelled", "invoice": paid.pk}
    )
    assert big.status_code == 302
    waiting = Refund.objects.get(invoice=paid, amount=Decimal("600.00"))
    assert waiting.status == "awaiting_approval"
    assert ApprovalRequest.objects.get().kind == "refund"


def test_a_refund_beyond_what_is_left_is_refused_with_the_services_reason(ledger):
    acme = ledger.tenants["acme"]
    paid = ledger.invoices["i1"]  # 49.00 paid, 10.00 refunded
    Invoice.objects.filter(pk=paid.pk).update(stripe_invoice_id="in_test_console_i1")
    client = client_for(staff("finance"))
    url = act(acme, "refund", invoice=paid.pk)
    response = client.post(
        url, {"token": form_token(client, url), "amount": "40.00", "reason": "x", "invoice": paid.pk}
    )
    assert response.status_code == 400
    assert b"refunded up to" in response.content
    assert not Refund.objects.filter(invoice=paid, amount=Decimal("40.00")).exists()


def test_voiding_marking_uncollectible_and_extending_a_trial(ledger):
    client = client_for(staff("finance", "fin"))
    bolt, core, tria = ledger.tenants["bolt"], ledger.tenants["core"], ledger.tenants["tria"]
    open_invoice, other = ledger.invoices["i3"], ledger.invoices["i4"]
    url = act(bolt, "void", invoice=open_invoice.pk)
    assert (
        client.post(
            url, {"token": form_token(client, url), "reason": "sent twice", "invoice": open_invoice.pk}
        ).status_code
        == 302
    )
    open_invoice.refresh_from_db()
    assert open_invoice.status == "void"
    timeline = client.get(page(bolt)).context["timeline"]  # who voided it, from the audit trail
    voided = [(h.who, h.why) for h in timeline if h.what == f"Invoice {open_invoice.number} voided"]
    assert voided == [("fin", "sent twice")]  # who, from the audit trail; why, from the console's form
    url = act(core, "uncollectible", invoice=other.pk)
    assert (
        client.post(url, {"token": form_token(client, url), "reason": "gone bust", "invoice": other.pk}).status_code
        == 302
    )
    other.refresh_from_db()
    assert other.status == "uncollectible"
    timeline = client.get(page(core)).context["timeline"]
    marked = [(h.who, h.why) for h in timeline if h.what == f"Invoice {other.number} marked uncollectible"]
    assert marked == [("fin", "gone bust")]
    sub = tria.subscriptions.get()
    before = sub.trial_end
    url = act(tria, "extend_trial")
    assert client.post(url, {"token": form_token(client, url), "days": "7", "reason": "onboarding"}).status_code == 302
    sub.refresh_from_db()
    assert (sub.trial_end - before).days == 7


def test_adding_and_revoking_a_grant(ledger):
    from entitlements.models import Grant
    from plans.models import Feature

    Feature.objects.get_or_create(code="api_access", defaults={"name": "API"})
    acme = ledger.tenants["acme"]
    client = client_for(staff("finance", "fin"))
    url = act(acme, "add_grant")
    body = {
        "token": form_token(client, url),
        "feature": "api_access",
        "kind": "enable",
        "expires_at": "2027-02-01 00:00",
        "reason": "pilot",
    }
    assert client.post(url, body).status_code == 302
    grant = Grant.objects.get(tenant=acme)
    url = act(acme, "revoke_grant", grant=grant.pk)
    assert (
        client.post(url, {"token": form_token(client, url), "reason": "pilot over", "grant": grant.pk}).status_code
        == 302
    )
    grant.refresh_from_db()
    assert grant.revoked_at is not None
    timeline = client.get(page(acme)).context["timeline"]
    assert [(h.who, h.why) for h in timeline if h.what.startswith("Grant revoked")] == [("staff:fin", "pilot over")]


def test_csrf_stays_on(ledger):
    client = Client(enforce_csrf_checks=True)
    verified_login(client, staff("finance"))
    response = client.post(
        act(ledger.tenants["acme"], "credit"), {"token": "t", "amount": "1", "currency": "USD", "reason": "x"}
    )
    assert response.status_code == 403
    assert not CreditEntry.objects.filter(reason="x").exists()


@pytest.mark.django_db(transaction=True)
def test_ten_submissions_of_one_form_grant_one_credit(ledger):
    """A double click, a retried request: the form's token is unique, the rest wait on it."""
    acme = ledger.tenants["acme"]
    fin = staff("finance", "fin")
    token_client = client_for(fin)
    url = act(acme, "credit")
    token = form_token(token_client, url)
    body = {"token": token, "amount": "30.00", "currency": "USD", "reason": "twice?"}
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def submit() -> None:
        try:
            client = client_for(fin)
            barrier.wait()
            statuses.append(client.post(url, body).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [302] * 10
    assert CreditEntry.objects.filter(tenant=acme, reason="twice?").count() == 1
    assert StaffAction.objects.filter(token=token).count() == 1


def test_an_invoice_paid_outside_stripe_is_refunded_by_bank_transfer_with_its_reference(ledger):
    acme = ledger.tenants["acme"]
    paid = ledger.invoices["i2"]  # marked paid by staff: no Stripe invoice
    client = client_for(staff("finance", "fin"))
    url = act(acme, "refund", invoice=paid.pk)
    no_reference = client.post(
        url, {"token": form_token(client, url), "amount": "40.00", "reason": "x", "invoice": paid.pk}
    )
    assert no_reference.status_code == 400  # a refund paid back by staff names its transfer
    body = {"token": form_token(client, url), "amount": "40.00", "reason": "goodwill", "invoice": paid.pk}
    assert client.post(url, {**body, "payout_reference": "SEPA-2027-0042"}).status_code == 302
    refund = Refund.objects.get(invoice=paid, amount=Decimal("40.00"))
    assert (refund.method, refund.payout_reference) == ("manual", "SEPA-2027-0042")
    big = {"token": form_token(client, url), "amount": "700.00", "reason": "cancelled", "invoice": paid.pk}
    assert client.post(url, {**big, "payout_reference": "SEPA-2027-0043"}).status_code == 302
    request = ApprovalRequest.objects.get()
    assert request.payload["payout_reference"] == "SEPA-2027-0043"
    assert "bank transfer SEPA-2027-0043" in request.description


def test_the_tenant_list_and_page_lead_to_the_whole_picture(ledger):
    acme = ledger.tenants["acme"]
    client = client_for(staff("support"))
    listing = client.get(reverse("admin:subscriptions_tenant_changelist")).content.decode()
    assert f'href="{page(acme)}"' in listing
    change = client.get(reverse("admin:subscriptions_tenant_change", args=[acme.pk])).content.decode()
    assert f'href="{page(acme)}"' in change


def test_the_page_links_to_the_tenants_objects_at_stripe(ledger):
    """The customer (from our mirror: the page never waits on Stripe), a pushed invoice,
    each refund Stripe made; nothing links where there is no Stripe object."""
    from djstripe.models import Customer

    acme = ledger.tenants["acme"]
    client = client_for(staff("finance"))
    html = client.get(page(acme)).content.decode()
    assert "dashboard.stripe.com/test/customers/" not in html
    assert "dashboard.stripe.com/test/invoices/" not in html
    assert "none yet" in html  # no customer at Stripe yet
    stripe_refunds = set(
        Refund.objects.filter(tenant=acme).exclude(stripe_refund_id="").values_list("stripe_refund_id", flat=True)
    )
    assert stripe_refunds  # the hand-built ledger has refunds Stripe made
    for refund_id in stripe_refunds:
        assert f'href="https://dashboard.stripe.com/test/refunds/{refund_id}"' in html

    Customer.objects.create(id="cus_console_acme", livemode=False, metadata={"billing_tenant_id": acme.external_id})
    Invoice.objects.filter(pk=ledger.invoices["i2"].pk).update(stripe_invoice_id="in_console_link")
    html = client.get(page(acme)).content.decode()
    assert 'href="https://dashboard.stripe.com/test/customers/cus_console_acme"' in html
    assert 'href="https://dashboard.stripe.com/test/invoices/in_console_link"' in html


# ------------------------------------------------------------ found by attacking the console
def test_marking_a_paid_invoice_uncollectible_is_refused_not_reported_done(ledger):
    acme, paid = ledger.tenants["acme"], ledger.invoices["i2"]
    client = client_for(staff("finance"))
    url = act(acme, "uncollectible", invoice=paid.pk)
    response = client.post(url, {"token": form_token(client, url), "reason": "gone", "invoice": paid.pk})
    assert response.status_code == 400
    assert b"cannot be marked uncollectible" in response.content
    paid.refresh_from_db()
    assert paid.status == "paid"
    assert not StaffAction.objects.exists()  # nothing recorded as done


@pytest.mark.parametrize("value", ["abc", "1.5", "-1", "１", "9" * 40])
def test_an_id_that_is_not_a_whole_number_names_nothing(ledger, value):
    acme = ledger.tenants["acme"]
    client = client_for(staff("finance"))
    assert client.get(act(acme, "refund", invoice=value)).status_code == 404
    assert client.get(act(acme, "revoke_grant", grant=value)).status_code == 404


def test_a_forged_long_token_is_a_form_error_not_a_crash(ledger):
    acme = ledger.tenants["acme"]
    client = client_for(staff("finance"))
    url = act(acme, "credit")
    response = client.post(url, {"token": "t" * 300, "amount": "3.00", "currency": "USD", "reason": "x"})
    assert response.status_code == 400
    assert not CreditEntry.objects.filter(tenant=acme, reason="x").exists()


def test_a_token_sent_again_with_other_values_is_refused_not_taken_for_the_first(ledger):
    acme, bolt = ledger.tenants["acme"], ledger.tenants["bolt"]
    client = client_for(staff("finance"))
    url = act(acme, "credit")
    token = form_token(client, url)
    first = {"token": token, "amount": "1.00", "currency": "USD", "reason": "one token, one credit"}
    assert client.post(url, first).status_code == 302
    again = client.post(url, first, follow=True)  # the same submission: what it did
    assert b"Already done" in again.content
    edited = client.post(url, {**first, "amount": "50.00"})
    assert edited.status_code == 400
    assert b"already submitted with other values" in edited.content
    elsewhere = client.post(act(bolt, "credit"), first)  # the token on another tenant's form
    assert elsewhere.status_code == 400
    grants = CreditEntry.objects.filter(kind="grant", reason="one token, one credit")
    assert [(g.tenant_id, g.amount) for g in grants] == [(acme.pk, Decimal("1.00"))]


@pytest.mark.parametrize(("amount", "currency"), [("١٢", "USD"), ("12", "XXX"), ("12", "XTS"), ("12", "XAU")])
def test_amounts_in_other_digits_and_codes_that_are_not_money_are_refused(ledger, amount, currency):
    acme = ledger.tenants["acme"]
    client = client_for(staff("finance"))
    url = act(acme, "credit")
    response = client.post(
        url, {"token": form_token(client, url), "amount": amount, "currency": currency, "reason": "r"}
    )
    assert response.status_code == 400
    assert not CreditEntry.objects.filter(tenant=acme, reason="r").exists()
    assert not ApprovalRequest.objects.exists()


def test_switching_a_feature_on_takes_no_amount_from_the_console_either(ledger):
    from entitlements.models import Grant
    from plans.models import Feature

    Feature.objects.get_or_create(code="api_access", defaults={"name": "API"})
    acme = ledger.tenants["acme"]
    client = client_for(staff("finance"))
    url = act(acme, "add_grant")
    body = {
        "token": form_token(client, url),
        "feature": "api_access",
        "kind": "enable",
        "amount": "5",
        "expires_at": "2027-02-01 00:00",
        "reason": "pilot",
    }
    response = client.post(url, body)
    assert response.status_code == 400
    assert b"takes no amount" in response.content
    assert not Grant.objects.filter(tenant=acme).exists()
