"""Asking: checked at once by a dry run of the service approval will run (refused now with
that service's own error code, nothing written), pending for APPROVAL_EXPIRY_DAYS, and
idempotent per requester and key."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.db import connection

from approvals.kinds import KINDS
from approvals.models import ApprovalRequest
from approvals.services import approval_request
from billing_project.errors import BillingError, Conflict, Forbidden, InvalidRequest
from invoicing.models import InvoiceSequence, Refund
from subscriptions.services import subscription_create
from tests.approvals.conftest import credit_request
from tests.clock import NOW
from tests.invoicing.test_stripe_adapter import finalized

pytestmark = [pytest.mark.django_db]


def test_a_request_is_pending_with_what_approving_would_do(acme, ann, settings):
    settings.APPROVAL_EXPIRY_DAYS = 7
    request = credit_request(acme, ann, "1234.5")
    request.refresh_from_db()
    assert (request.kind, request.status, request.tenant, request.requested_by, request.requested_by_key) == (
        "credit",
        "pending",
        acme,
        ann,
        None,
    )
    assert (request.amount, request.currency, request.payload) == (
        Decimal("1234.5"),
        "USD",
        {"amount": "1234.5", "currency": "USD"},
    )
    assert (request.created_at, request.expires_at) == (NOW, NOW + timedelta(days=7))
    assert request.description == ("Grant 1,234.50 USD of credit to acme (credit balance 0.00 USD → 1,234.50 USD).")
    assert request.requester_label == "staff:ann"
    assert not acme.credit_entries.exists()  # asked, not done


def test_an_agents_proposal_names_its_key(acme, agent_key):
    request = approval_request(
        kind="credit",
        tenant=acme,
        payload={"amount": "25.00"},  # the tenant's currency when omitted
        reason="the customer lost a day of service",
        requested_by_key=agent_key.key,
        idempotency_key="prop-1",
    )
    assert (request.requested_by, request.requested_by_key, request.currency) == (None, agent_key.key, "USD")
    assert request.requester_label == f"agent:{agent_key.key.prefix}"


def test_exactly_one_requester_an_active_one_and_a_reason(acme, ann, agent_key):
    base: dict[str, Any] = {"kind": "credit", "tenant": acme, "payload": {"amount": "10"}, "reason": "r"}
    with pytest.raises(InvalidRequest):
        approval_request(**base)
    with pytest.raises(InvalidRequest):
        approval_request(**base, requested_by=ann, requested_by_key=agent_key.key)
    with pytest.raises(InvalidRequest) as err:
        approval_request(**{**base, "reason": "  "}, requested_by=ann)
    assert err.value.details["fields"] == {"reason": "Say why (the approver reads it)."}
    agent_key.key.revoked_at, agent_key.key.revoked_reason = NOW, "leaked"
    agent_key.key.save()
    with pytest.raises(Forbidden):
        approval_request(**base, requested_by_key=agent_key.key)
    ann.is_active = False
    with pytest.raises(Forbidden):
        approval_request(**base, requested_by=ann)
    assert not ApprovalRequest.objects.exists()


# ---------------------------------------------------------------- refused now, with the service's code
@pytest.fixture
def trialing(acme):
    return subscription_create(tenant=acme, plan_code="pro", actor="test")  # a 14-day trial


def refusals(acme, invoice) -> list[tuple[str, Any, str]]:
    unpaid = finalized(acme, amounts=("10.00",))
    later = (NOW + timedelta(days=30)).isoformat()
    return [
        ("credit", {"amount": "0"}, "invalid_amount"),
        ("credit", {"amount": "1.001"}, "invalid_amount"),
        ("credit", {"amount": "10", "currency": "XYZ"}, "unknown_currency"),
        ("credit", {"amount": "ten"}, "validation_error"),
        ("credit", {"amount": "10", "note": "x"}, "validation_error"),  # unknown field
        ("credit", ["10"], "validation_error"),
        ("credit_note", {"invoice": unpaid.number}, "invoice_not_creditable"),
        ("credit_note", {"invoice": invoice.number, "amount": "1000.01"}, "invalid_amount"),
        ("credit_note", {"invoice": invoice.number, "lines": {"1": "600.01"}}, "invalid_amount"),
        ("credit_note", {"invoice": invoice.number, "lines": {"9": "1"}}, "validation_error"),
        ("credit_note", {"invoice": "INV-1999-000001"}, "unknown_invoice"),
        ("refund", {"invoice": invoice.number, "amount": "1000.01"}, "refund_exceeds_paid"),
        ("refund", {"invoice": unpaid.number, "amount": "1"}, "invoice_not_refundable"),
        ("refund", {"invoice": invoice.number}, "validation_error"),
        ("grant", {"feature": "nope", "kind": "enable", "expires_at": later}, "unknown_feature"),
        ("grant", {"feature": "sso", "kind": "enable", "expires_at": NOW.isoformat()}, "validation_error"),
        ("grant", {"feature": "sso", "kind": "extra_limit", "amount": "5", "expires_at": later}, "validation_error"),
        ("grant", {"feature": "sso", "kind": "forever", "expires_at": later}, "validation_error"),
        ("trial_extension", {"days": 0}, "validation_error"),
        ("plan_change", {"plan": "gold"}, "unknown_plan"),
        ("plan_change", {"plan": "pro"}, "already_on_plan"),
        ("plan_change", {"plan": "team", "when": "tomorrow"}, "validation_error"),
    ]


def test_a_request_that_could_never_be_approved_is_refused_now_with_the_services_code(acme, ann, invoice, trialing):
    for kind, payload, code in refusals(acme, invoice):
        with pytest.raises(BillingError) as err:
            approval_request(kind=kind, tenant=acme, payload=payload, reason="try", requested_by=ann)
        assert err.value.code == code, (kind, payload, err.value.code, err.value.message)
    with pytest.raises(InvalidRequest):
        approval_request(kind="pay_out", tenant=acme, payload={}, reason="try", requested_by=ann)
    assert not ApprovalRequest.objects.exists()
    assert not Refund.objects.exists()


def test_a_subscription_that_is_not_in_its_trial_is_not_extended(acme, ann):
    with pytest.raises(BillingError) as err:
        approval_request(kind="trial_extension", tenant=acme, payload={"days": 3}, reason="r", requested_by=ann)
    assert err.value.code == "no_subscription"
    subscription_create(tenant=acme, plan_code="enterprise", actor="test")
    with pytest.raises(Conflict) as err:
        approval_request(kind="trial_extension", tenant=acme, payload={"days": 3}, reason="r", requested_by=ann)
    assert err.value.code == "subscription_not_trialing"


# ---------------------------------------------------------------- a dry run writes nothing
def snapshot() -> dict[str, int]:
    """Every table's row count, the number sequences' positions and the audit log."""
    tables = [model for model in apps.get_models() if model._meta.managed and not model._meta.proxy]
    counts = {model._meta.label: model._default_manager.count() for model in tables}
    counts |= {f"seq:{s.series}-{s.year}": s.last_number for s in InvoiceSequence.objects.all()}
    return counts


def payloads(invoice) -> dict[str, Any]:
    return {
        "credit": {"amount": "600.00", "currency": "USD"},
        "credit_note": {"invoice": invoice.number, "amount": "120.00"},
        "refund": {"invoice": invoice.number, "amount": "700.00"},
        "grant": {
            "feature": "ai_tokens",
            "kind": "extra_limit",
            "amount": "1000000",
            "expires_at": (NOW + timedelta(days=30)).isoformat(),
        },
        "trial_extension": {"days": 7},
        "plan_change": {"plan": "team", "when": "now"},
    }


def test_every_kinds_dry_run_writes_nothing_and_queues_nothing(
    acme, invoice, trialing, django_capture_on_commit_callbacks
):
    # privacy's erasure is registered from above; its dry run is tested in tests/privacy/test_erasure.py
    assert set(payloads(invoice)) == set(KINDS) - {"erasure"}
    before = snapshot()
    for kind, payload in payloads(invoice).items():
        with django_capture_on_commit_callbacks() as queued:
            plan = KINDS[kind].validate(acme, payload)
        assert plan.description, kind
        assert snapshot() == before, kind
        assert queued == [], kind
    # and what the plans said came from the real services
    assert KINDS["credit_note"].validate(acme, payloads(invoice)["credit_note"]).details["lines"] == [
        {"position": 1, "description": "line 1", "amount": "72"},  # 120 spread as 600 : 400
        {"position": 2, "description": "line 2", "amount": "48"},
    ]
    assert "Refund 700.00 USD of" in KINDS["refund"].validate(acme, payloads(invoice)["refund"]).description
    change = KINDS["plan_change"].validate(acme, {"plan": "team"})
    assert change.details["applied"] is True
    assert "from pro v1 to team v1 now" in change.description


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_outside_any_transaction_commits_nothing(acme, invoice, django_capture_on_commit_callbacks):
    assert not connection.in_atomic_block
    before = snapshot()
    with django_capture_on_commit_callbacks(execute=True) as queued:
        plan = KINDS["credit_note"].validate(acme, {"invoice": invoice.number})
    assert plan.amount is not None
    assert plan.amount.amount == Decimal("1000")
    assert (snapshot(), queued) == (before, [])


# ---------------------------------------------------------------- idempotency
def test_the_same_key_is_the_same_request(acme, ann, bob, agent_key):
    first = credit_request(acme, ann, "600.00", idempotency_key="form-1")
    assert credit_request(acme, ann, "600", idempotency_key="form-1").pk == first.pk  # the same amount, as sent
    assert ApprovalRequest.objects.count() == 1
    with pytest.raises(Conflict) as err:
        credit_request(acme, ann, "601.00", idempotency_key="form-1")
    assert (err.value.code, err.value.details) == ("idempotency_conflict", {"approval_request": first.pk})
    with pytest.raises(Conflict):
        approval_request(
            kind="credit",
            tenant=acme,
            payload={"amount": "600", "currency": "USD"},
            reason="another reason",
            requested_by=ann,
            idempotency_key="form-1",
        )
    # another requester's key of the same name is theirs; no key: a new request each time
    assert credit_request(acme, bob, "600.00", idempotency_key="form-1").pk != first.pk
    assert credit_request(acme, ann).pk != credit_request(acme, ann).pk
    proposal = {"kind": "credit", "tenant": acme, "payload": {"amount": "5"}, "reason": "r"}
    made = approval_request(**proposal, requested_by_key=agent_key.key, idempotency_key="form-1")
    assert approval_request(**proposal, requested_by_key=agent_key.key, idempotency_key="form-1").pk == made.pk
    assert ApprovalRequest.objects.count() == 5


def test_the_database_holds_the_key_unique_per_requester(acme, ann):
    from django.db import IntegrityError, transaction

    first = credit_request(acme, ann, idempotency_key="k")
    with pytest.raises(IntegrityError), transaction.atomic():
        ApprovalRequest.objects.create(
            kind="credit",
            tenant=acme,
            payload={},
            reason="r",
            requested_by=ann,
            idempotency_key="k",
            expires_at=first.expires_at,
        )
    with pytest.raises(IntegrityError), transaction.atomic():  # nobody asked: refused
        ApprovalRequest.objects.create(kind="credit", tenant=acme, payload={}, reason="r", expires_at=first.expires_at)


def test_a_staff_refund_is_recorded_awaiting_approval_and_an_agents_is_not(acme, ann, invoice, agent_key):
    staff = approval_request(
        kind="refund",
        tenant=acme,
        payload={"invoice": invoice.number, "amount": "700.00"},
        reason="double charge",
        requested_by=ann,
    )
    refund = Refund.objects.get(pk=staff.result["refund"])
    assert (refund.status, refund.amount, refund.requested_by) == ("awaiting_approval", Decimal(700), "staff:ann")
    assert (staff.amount, staff.currency) == (Decimal(700), "USD")
    # its amount is reserved: a second request beyond what is left is refused now
    with pytest.raises(Conflict) as err:
        approval_request(
            kind="refund",
            tenant=acme,
            payload={"invoice": invoice.number, "amount": "300.01"},
            reason="again",
            requested_by=ann,
        )
    assert err.value.code == "refund_exceeds_paid"
    proposal = approval_request(
        kind="refund",
        tenant=acme,
        payload={"invoice": invoice.number, "amount": "300.00"},
        reason="agent thinks so",
        requested_by_key=agent_key.key,
    )
    assert proposal.result == {}
    assert Refund.objects.count() == 1  # a proposal changes nothing
