"""Each kind, approved, runs the lower app's own service for real: what it wrote is what that
service writes, with the approver and the requester named."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from approvals.services import approval_approve, approval_request
from entitlements.models import Grant
from invoicing.ledger import credit_balance
from invoicing.models import CreditNote, Refund
from subscriptions.models import Subscription, SubscriptionEvent
from subscriptions.services import subscription_create
from tests.clock import NOW

pytestmark = [pytest.mark.django_db]


def approved(tenant, requester, kind, payload, approver, **by):
    who = {"requested_by_key": requester} if by.get("agent") else {"requested_by": requester}
    request = approval_request(kind=kind, tenant=tenant, payload=payload, reason="asked for", **who)
    done = approval_approve(request_id=request.pk, approver=approver, reason="fine")
    assert done.status == "approved", done.failure
    return done


def test_a_credit_note_by_lines_and_by_an_amount(acme, ann, bob, invoice):
    by_lines = approved(acme, ann, "credit_note", {"invoice": invoice.number, "lines": {"2": "40.00"}}, bob)
    note = CreditNote.objects.get(pk=by_lines.result["credit_note"])
    assert by_lines.result["number"] == note.number
    assert [(x.invoice_line.position, x.amount) for x in note.lines.all()] == [(2, Decimal("40.00"))]
    assert (note.actor, note.settlement, by_lines.amount) == ("staff:bob approving staff:ann", "credit", Decimal(40))
    by_amount = approved(acme, ann, "credit_note", {"invoice": invoice.number, "amount": "96.00"}, bob)
    note = CreditNote.objects.get(pk=by_amount.result["credit_note"])
    # spread over what each line has left (600 : 360)
    assert [(x.invoice_line.position, x.amount) for x in note.lines.all()] == [
        (1, Decimal("60.00")),
        (2, Decimal("36.00")),
    ]
    assert credit_balance(tenant=acme, currency="USD") == Decimal("136.00")


def test_an_agents_refund_is_recorded_and_approved_when_approved(acme, bob, invoice, agent_key):
    done = approved(acme, agent_key.key, "refund", {"invoice": invoice.number, "amount": "250.00"}, bob, agent=True)
    refund = Refund.objects.get(pk=done.result["refund"])
    assert (refund.status, refund.amount, refund.request_key) == ("requested", Decimal(250), f"approval-{done.pk}")
    assert refund.requested_by == f"staff:bob approving agent:{agent_key.key.prefix}"


def test_a_grant(acme, ann, bob):
    until = NOW + timedelta(days=30)
    done = approved(
        acme,
        ann,
        "grant",
        {"feature": "ai_tokens", "kind": "extra_limit", "amount": "1000000", "expires_at": until.isoformat()},
        bob,
    )
    grant = Grant.objects.get(pk=done.result["grant"])
    assert (grant.tenant, grant.feature.code, grant.kind, grant.amount, grant.expires_at, grant.created_by) == (
        acme,
        "ai_tokens",
        "extra_limit",
        Decimal(1000000),
        until,
        bob,
    )
    assert grant.reason == "asked for (approved by staff:bob: fine)"
    assert "1,000,000 more AI tokens" in done.description
    assert done.amount is None


def test_a_trial_extension(acme, ann, bob):
    sub = subscription_create(tenant=acme, plan_code="pro", actor="test")
    done = approved(acme, ann, "trial_extension", {"days": 10}, bob)
    sub.refresh_from_db()
    assert sub.trial_end == NOW + timedelta(days=24)
    event = SubscriptionEvent.objects.get(pk=done.result["subscription_event"])
    assert (event.action, event.actor) == ("extend_trial", "staff:bob approving staff:ann")


def test_a_plan_change(acme, ann, bob):
    subscription_create(tenant=acme, plan_code="enterprise", actor="test")
    done = approved(acme, ann, "plan_change", {"plan": "team", "when": "period_end"}, bob)
    sub = Subscription.objects.get(tenant=acme)
    assert sub.scheduled_plan_version is not None
    assert sub.scheduled_plan_version.plan.code == "team"
    event = SubscriptionEvent.objects.get(pk=done.result["subscription_event"])
    assert (event.action, event.actor) == ("schedule_change", "staff:bob approving staff:ann")
    assert "at the period end" in done.description
    assert done.preview["applied"] is False
