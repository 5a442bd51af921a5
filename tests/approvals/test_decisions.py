"""Deciding: only an approver who did not ask; approving checks again and runs the service
(a refusal fails the request, nothing executed); rejected or expired, nothing happens; every
decision is audited with the requester and the approver."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.conf import settings as django_settings
from django.contrib.auth.models import User

from approvals.models import ApprovalRequest
from approvals.services import approval_approve, approval_reject, approval_request, approvals_expire_due
from approvals.tasks import expire_approval_requests
from billing_project.errors import Conflict, Forbidden, InvalidRequest
from billing_project.money import Money
from invoicing.models import CreditEntry, CreditNote, Refund
from invoicing.services import credit_note_issue, refund_request
from tests.approvals.conftest import credit_request, staff_member
from tests.clock import NOW

pytestmark = [pytest.mark.django_db]


# ---------------------------------------------------------------- four eyes
def test_an_approver_who_did_not_ask_approves_and_the_service_runs(acme, ann, bob):
    request = credit_request(acme, ann, "600.00")
    done = approval_approve(request_id=request.pk, approver=bob, reason="checked the outage report")
    assert (done.status, done.decided_by, done.decided_at, done.decision_reason) == (
        "approved",
        bob,
        NOW,
        "checked the outage report",
    )
    entry = CreditEntry.objects.get(pk=done.result["credit_entry"])
    assert (entry.tenant, entry.amount, entry.currency, entry.actor) == (
        acme,
        Decimal("600.00"),
        "USD",
        "staff:bob approving staff:ann",
    )
    assert entry.reason == "goodwill after the outage (approved by staff:bob: checked the outage report)"
    with pytest.raises(Conflict) as err:  # decided once
        approval_approve(request_id=request.pk, approver=bob, reason="again")
    assert err.value.code == "approval_not_pending"
    assert CreditEntry.objects.count() == 1


def test_the_requester_cannot_decide_even_as_an_approver_or_a_superuser(acme, bob, cat):
    request = credit_request(acme, bob)
    for decide in (approval_approve, approval_reject):
        with pytest.raises(Forbidden) as err:
            decide(request_id=request.pk, approver=bob, reason="mine")
        assert err.value.code == "approver_is_requester"
    root = User.objects.create_superuser("root", password="x" * 16)
    own = credit_request(acme, root)
    with pytest.raises(Forbidden, match="Four eyes"):
        approval_approve(request_id=own.pk, approver=root, reason="mine")
    assert approval_approve(request_id=own.pk, approver=bob, reason="ok").status == "approved"
    assert approval_approve(request_id=request.pk, approver=cat, reason="ok").status == "approved"


def test_staff_without_the_approver_permission_cannot_decide(acme, ann, auditor, support, bob):
    request = credit_request(acme, bob)
    other_finance = staff_member("fred", "finance")
    for user in (ann, other_finance, auditor, support, staff_member("nobody")):
        for decide in (approval_approve, approval_reject):
            with pytest.raises(Forbidden) as err:
                decide(request_id=request.pk, approver=user, reason="let me")
            assert err.value.code == "approval_not_permitted", user
    bob.is_active = False  # a deactivated approver neither
    with pytest.raises(Forbidden):
        approval_approve(request_id=request.pk, approver=bob, reason="ok")
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"
    assert not CreditEntry.objects.exists()


def test_a_decision_needs_a_reason(acme, ann, bob):
    request = credit_request(acme, ann)
    with pytest.raises(InvalidRequest):
        approval_approve(request_id=request.pk, approver=bob, reason=" ")
    with pytest.raises(InvalidRequest):
        approval_reject(request_id=request.pk, approver=bob, reason="")


def test_a_rejection_does_nothing_and_cancels_a_refund_it_recorded(acme, ann, bob, invoice):
    request = approval_request(
        kind="refund",
        tenant=acme,
        payload={"invoice": invoice.number, "amount": "700.00"},
        reason="double charge",
        requested_by=ann,
    )
    done = approval_reject(request_id=request.pk, approver=bob, reason="not a double charge")
    assert (done.status, done.decided_by, done.decision_reason) == ("rejected", bob, "not a double charge")
    refund = Refund.objects.get(pk=request.result["refund"])
    assert (refund.status, refund.failure_reason) == ("failed", "rejected by staff:bob: not a double charge")
    with pytest.raises(Conflict):
        approval_approve(request_id=request.pk, approver=bob, reason="changed my mind")


def test_approving_a_staff_refund_moves_the_recorded_refund_on(
    acme, ann, bob, invoice, django_capture_on_commit_callbacks
):
    request = approval_request(
        kind="refund",
        tenant=acme,
        payload={"invoice": invoice.number, "amount": "700.00"},
        reason="double charge",
        requested_by=ann,
    )
    with django_capture_on_commit_callbacks() as queued:
        done = approval_approve(request_id=request.pk, approver=bob, reason="confirmed with the bank")
    assert done.status == "approved"
    assert done.result == {"refund": request.result["refund"]}
    refund = Refund.objects.get()
    assert refund.status == "requested"  # refund_approve_ready: to Stripe once committed
    assert len(queued) == 1  # refund_submit, queued by task name


# ---------------------------------------------------------------- checked again when approved
def test_an_invoice_refunded_meanwhile_fails_the_approval_and_nothing_is_executed(acme, bob, invoice, agent_key):
    proposal = approval_request(
        kind="refund",
        tenant=acme,
        payload={"invoice": invoice.number, "amount": "700.00"},
        reason="the agent found a double charge",
        requested_by_key=agent_key.key,
    )
    refund_request(  # meanwhile finance refunds most of it directly
        invoice_id=invoice.pk, amount=Money(Decimal(500), "USD"), reason="x", actor="staff:ann", request_key="direct"
    )
    done = approval_approve(request_id=proposal.pk, approver=bob, reason="looks right")
    assert done.status == "failed"
    assert done.failure.startswith("refund_exceeds_paid: ")
    assert (done.decided_by, done.decision_reason, done.result) == (bob, "looks right", {})
    assert list(Refund.objects.values_list("request_key", flat=True)) == ["direct"]  # the proposal made none


def test_a_credit_note_for_what_was_already_credited_fails(acme, ann, bob, invoice):
    request = approval_request(
        kind="credit_note",
        tenant=acme,
        payload={"invoice": invoice.number, "lines": {"1": "600.00"}},
        reason="line 1 was wrong",
        requested_by=ann,
    )
    credit_note_issue(invoice_id=invoice.pk, reason="meanwhile", actor="staff:cat")  # everything left
    done = approval_approve(request_id=request.pk, approver=bob, reason="ok")
    assert (done.status, done.failure.split(":")[0]) == ("failed", "invalid_amount")
    assert CreditNote.objects.count() == 1


def test_an_amount_that_changed_since_the_request_fails_rather_than_moving_another(acme, ann, bob, invoice):
    request = approval_request(
        kind="credit_note",
        tenant=acme,
        payload={"invoice": invoice.number},  # everything left: 1,000.00 when asked
        reason="contract ended",
        requested_by=ann,
    )
    assert request.amount == Decimal(1000)
    credit_note_issue(invoice_id=invoice.pk, lines={2: Decimal(100)}, reason="meanwhile", actor="staff:cat")
    done = approval_approve(request_id=request.pk, approver=bob, reason="ok")
    assert (done.status, done.failure.split(":")[0]) == ("failed", "approval_amount_changed")
    assert "not the 1000 USD requested" in done.failure
    assert CreditNote.objects.count() == 1


# ---------------------------------------------------------------- expiry
def test_requests_expire_under_a_moved_clock(acme, ann, bob, invoice, clock, settings):
    settings.APPROVAL_EXPIRY_DAYS = 7
    refund = approval_request(
        kind="refund",
        tenant=acme,
        payload={"invoice": invoice.number, "amount": "700.00"},
        reason="double charge",
        requested_by=ann,
    )
    clock.shift(timedelta(days=1))
    credit = credit_request(acme, ann, "600.00")  # a day younger
    clock.move_to(NOW + timedelta(days=7) - timedelta(seconds=1))
    assert expire_approval_requests() == 0  # the beat task: nothing due yet
    clock.move_to(NOW + timedelta(days=7))
    assert expire_approval_requests() == 1
    refund.refresh_from_db()
    assert (refund.status, refund.decided_at, refund.decided_by) == ("expired", NOW + timedelta(days=7), None)
    assert Refund.objects.get().status == "failed"  # its refund canceled: the amount is free again
    assert ApprovalRequest.objects.get(pk=credit.pk).status == "pending"
    # not swept yet but past its time: approving expires it and does nothing
    clock.move_to(NOW + timedelta(days=8, seconds=1))
    done = approval_approve(request_id=credit.pk, approver=bob, reason="late")
    assert (done.status, done.decided_by) == ("expired", None)
    assert not CreditEntry.objects.exists()
    assert approvals_expire_due(now=NOW + timedelta(days=30)) == 0


def test_the_expiry_runs_hourly_on_beat():
    entry = django_settings.CELERY_BEAT_SCHEDULE["expire-approval-requests"]
    assert entry == {"task": "approvals.tasks.expire_approval_requests", "schedule": 3600.0}
    assert expire_approval_requests.name == entry["task"]


# ---------------------------------------------------------------- audited with both
def test_the_audit_trail_names_the_requester_and_the_approver(acme, bob, agent_key):
    proposal = approval_request(
        kind="credit",
        tenant=acme,
        payload={"amount": "25.00"},
        reason="lost a day of service",
        requested_by_key=agent_key.key,
    )
    asked = LogEntry.objects.get_for_object(proposal).get(action=LogEntry.Action.CREATE)
    agent = f"agent:{agent_key.key.prefix}"
    assert asked.actor is None
    assert asked.additional_data == {"actor": agent, "requested_by": agent, "api_key_id": agent_key.key.pk}
    done = approval_approve(request_id=proposal.pk, approver=bob, reason="fair")
    entry = CreditEntry.objects.get(pk=done.result["credit_entry"])
    both = {"actor": f"staff:bob approving {agent}", "requested_by": agent, "approved_by": "staff:bob"}
    for logged in (
        LogEntry.objects.get_for_object(entry).get(),
        LogEntry.objects.get_for_object(done).filter(action=LogEntry.Action.UPDATE).get(),
    ):
        assert (logged.actor, logged.additional_data) == (bob, both)
    assert entry.actor == f"staff:bob approving {agent}"


def test_the_database_refuses_a_decision_by_the_requester_or_without_a_reason(acme, ann, bob):
    from django.db import IntegrityError, transaction

    request = credit_request(acme, ann)
    for changes in (
        {"status": "approved", "decided_by": ann, "decided_at": NOW, "decision_reason": "mine"},  # four eyes
        {"status": "approved", "decided_by": bob, "decided_at": NOW, "decision_reason": ""},
        {"status": "rejected", "decided_at": NOW, "decision_reason": "nobody"},
        {"status": "approved", "decided_by": bob, "decision_reason": "when?"},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            ApprovalRequest.objects.filter(pk=request.pk).update(**changes)
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"
