"""Refund requests (invoicing.refunds): what may be refunded, idempotency by the request's
key, approval and cancellation, the credit note's lines, and the database's own guard.
Submission to Stripe and its confirmation: test_refund_submission.py; races:
test_refund_races.py."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from hypothesis import given
from hypothesis import strategies as st

from billing_project.errors import BillingError, Conflict, InvalidRequest
from billing_project.money import Money
from invoicing import jobs
from invoicing.models import CreditNote, Invoice, Refund
from invoicing.refunds import refund_note_lines, spread
from invoicing.services import (
    credit_note_issue,
    invoice_finalize,
    invoice_mark_paid,
    refund_approve_ready,
    refund_cancel,
    refund_request,
    refund_totals,
    refundable,
)
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.stripe_refunds import paid_at_stripe
from tests.invoicing.test_stripe_adapter import draft, finalized

acme = recorded_stripe.acme
pytestmark = [pytest.mark.django_db]


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


def ask(invoice: Invoice, amount: str, key: str = "k1", awaiting_approval: bool = False) -> Refund:
    return refund_request(
        invoice_id=invoice.pk,
        amount=usd(amount),
        reason="customer asked",
        actor="staff:ana",
        request_key=key,
        awaiting_approval=awaiting_approval,
    )


def queued(callbacks: list[object]) -> int:
    """How many sends the committed transaction queued (refunds queue one per submission)."""
    return len(callbacks)


# ---------------------------------------------------------------- requests
def test_a_request_is_recorded_and_queued_for_stripe_once_however_often_it_is_sent(
    acme, django_capture_on_commit_callbacks
):
    invoice = paid_at_stripe(acme)
    with django_capture_on_commit_callbacks() as sent:
        refund = ask(invoice, "15.00", key="form-7f3a")
    assert (refund.status, refund.amount, refund.currency, refund.tenant_id) == (
        "requested",
        Decimal("15.00"),
        "USD",
        acme.pk,
    )
    assert (refund.requested_by, refund.request_key, refund.reason) == ("staff:ana", "form-7f3a", "customer asked")
    assert queued(sent) == 1  # refunds.refund_submit, by task name, once committed

    for _ in range(9):  # the same form sent again
        with django_capture_on_commit_callbacks() as again:
            assert ask(invoice, "15.00", key="form-7f3a").pk == refund.pk
        assert queued(again) == 0
    assert Refund.objects.count() == 1

    with pytest.raises(Conflict) as conflict:
        ask(invoice, "16.00", key="form-7f3a")
    assert conflict.value.code == "idempotency_conflict"
    assert conflict.value.details["amount"] == "15.0000"


def test_a_refund_of_an_invoice_staff_marked_paid_is_queued_as_a_payout_of_staff(
    acme, django_capture_on_commit_callbacks
):
    invoice = invoice_mark_paid(invoice_id=finalized(acme, amounts=("49.00",)).pk, actor="staff:ana")  # a bank transfer
    with django_capture_on_commit_callbacks() as sent:
        refund = refund_request(
            invoice_id=invoice.pk,
            amount=usd("15.00"),
            reason="customer asked",
            actor="staff:ana",
            request_key="form-1",
            payout_reference="SEPA-0042",
        )
    assert (refund.status, refund.method, refund.payout_reference) == ("requested", "manual", "SEPA-0042")
    assert queued(sent) == 1  # the same submission settles it, without Stripe (test_refunds_paid_out.py)


def test_a_refund_above_the_threshold_waits_for_approval_then_goes_to_stripe(acme, django_capture_on_commit_callbacks):
    invoice = paid_at_stripe(acme)
    with django_capture_on_commit_callbacks() as sent:
        refund = ask(invoice, "49.00", awaiting_approval=True)
    assert (refund.status, queued(sent)) == ("awaiting_approval", 0)  # nothing goes to Stripe yet
    assert refundable(invoice=invoice) == 0  # but the amount is reserved

    with django_capture_on_commit_callbacks() as sent:
        approved = refund_approve_ready(refund_id=refund.pk)
    assert (approved.status, queued(sent)) == ("requested", 1)
    with django_capture_on_commit_callbacks() as sent:
        assert refund_approve_ready(refund_id=refund.pk).status == "requested"  # approved twice: once
    assert queued(sent) == 0


def test_a_rejected_request_fails_with_the_reason_and_frees_its_amount(acme):
    invoice = paid_at_stripe(acme)
    refund = ask(invoice, "40.00", awaiting_approval=True)
    assert refundable(invoice=invoice) == Decimal("9.00")

    canceled = refund_cancel(refund_id=refund.pk, reason="rejected by staff:bo: not in the contract")
    assert (canceled.status, canceled.failure_reason) == ("failed", "rejected by staff:bo: not in the contract")
    assert canceled.failed_at is not None
    assert refundable(invoice=invoice) == Decimal("49.00")
    assert refund_cancel(refund_id=refund.pk, reason="again").failure_reason.startswith("rejected")  # once
    with pytest.raises(Conflict) as not_pending:
        refund_approve_ready(refund_id=refund.pk)
    assert not_pending.value.code == "refund_not_pending"
    assert not CreditNote.objects.exists()

    requested = ask(invoice, "10.00", key="k2")  # may be at Stripe already: Stripe's answer settles it
    with pytest.raises(Conflict) as not_cancelable:
        refund_cancel(refund_id=requested.pk, reason="changed my mind")
    assert not_cancelable.value.code == "refund_not_cancelable"


def test_approval_checks_again_what_is_left_to_refund(acme):
    invoice = paid_at_stripe(acme)
    waiting = ask(invoice, "30.00", awaiting_approval=True)
    # meanwhile a refund made in Stripe's dashboard is booked by hand: its credit note
    # settled by refund takes 30.00 of what is left to correct, beside the reservation
    credit_note_issue(
        invoice_id=invoice.pk, lines={1: Decimal("30.00")}, reason="refunded at Stripe", actor="staff:bo",
        settlement=CreditNote.Settlement.REFUND,
    )  # fmt: skip
    with pytest.raises(Conflict) as stale:
        refund_approve_ready(refund_id=waiting.pk)
    assert (stale.value.code, stale.value.details["refundable"]) == ("refund_exceeds_paid", "19.0000")
    assert Refund.objects.get(pk=waiting.pk).status == "awaiting_approval"


def test_refunds_of_what_was_not_paid_or_not_as_paid_are_refused(acme):
    unpaid = finalized(acme, amounts=("49.00",))
    Invoice.objects.filter(pk=unpaid.pk).update(stripe_invoice_id="in_open_1")
    paid_by_hand = invoice_mark_paid(invoice_id=finalized(acme, amounts=("49.00",)).pk)  # not through Stripe
    invoice = paid_at_stripe(acme)
    cases: list[tuple[Invoice, Money, str, str]] = [
        (draft(acme), usd("1.00"), "customer asked", "invoice_not_refundable"),
        (unpaid, usd("1.00"), "customer asked", "invoice_not_refundable"),
        (paid_by_hand, usd("1.00"), "customer asked", "validation_error"),  # paid out by staff: no reference given
        (invoice, usd("0"), "customer asked", "invalid_amount"),
        (invoice, usd("-1.00"), "customer asked", "invalid_amount"),
        (invoice, usd("1.001"), "customer asked", "invalid_amount"),
        (invoice, Money(Decimal("1.00"), "EUR"), "customer asked", "currency_mismatch"),
        (invoice, usd("49.01"), "customer asked", "refund_exceeds_paid"),
        (invoice, usd("1.00"), "  ", "validation_error"),
    ]
    for n, (target, amount, reason, code) in enumerate(cases):
        with pytest.raises(BillingError) as refused:
            refund_request(
                invoice_id=target.pk, amount=amount, reason=reason, actor="staff:ana", request_key=f"bad-{n}"
            )
        assert refused.value.code == code, (n, refused.value)
    with pytest.raises(InvalidRequest):
        refund_request(invoice_id=invoice.pk, amount=usd("1.00"), reason="x", actor="staff:ana", request_key="")
    assert not Refund.objects.exists()


def test_every_refund_not_failed_reserves_its_amount(acme):
    invoice = paid_at_stripe(acme)
    first = ask(invoice, "20.00", key="a")
    with pytest.raises(Conflict) as beyond:
        ask(invoice, "30.00", key="b")  # 20 + 30 > 49
    assert (beyond.value.code, beyond.value.details["refundable"]) == ("refund_exceeds_paid", "29.0000")
    ask(invoice, "29.00", key="c")
    with pytest.raises(Conflict):
        ask(invoice, "0.01", key="d")
    Refund.objects.filter(pk=first.pk).update(status="failed", failed_at=first.created_at, failure_reason="declined")
    assert refundable(invoice=invoice) == Decimal("20.00")  # a failed refund reserves nothing


def test_credit_notes_and_refunds_share_what_is_left_to_correct(acme):
    invoice = paid_at_stripe(acme)
    ask(invoice, "40.00")  # in flight: its own credit note comes when Stripe confirms it
    note = credit_note_issue(invoice_id=invoice.pk, reason="outage", actor="staff:ana")
    assert (note.total, note.settlement) == (Decimal("9.00"), "credit")  # the rest, not the refund's part

    other = paid_at_stripe(acme, stripe_invoice_id="in_1SxYz9Qa7bC3dE4f")
    credit_note_issue(invoice_id=other.pk, reason="outage", actor="staff:ana")  # all 49 as credit
    with pytest.raises(Conflict) as nothing_left:
        ask(other, "1.00")  # paid, but corrected already: a refund's credit note would not fit
    assert nothing_left.value.code == "refund_exceeds_paid"


def test_an_invoice_paid_partly_with_credit_refunds_at_most_the_cash(acme):
    from invoicing.ledger import credit_grant

    credit_grant(tenant=acme, amount=usd("10.00"), reason="goodwill", actor="staff:ana")
    invoice = paid_at_stripe(acme)
    assert (invoice.total, invoice.credit_applied) == (Decimal("39.00"), Decimal("10.00"))
    with pytest.raises(Conflict):
        ask(invoice, "39.01")
    assert ask(invoice, "39.00").amount == Decimal("39.00")
    totals = refund_totals(invoice=invoice)
    assert (totals.paid, totals.in_flight, totals.refundable) == (Decimal("39.00"), Decimal("39.00"), Decimal(0))


# ---------------------------------------------------------------- the credit note's lines
def test_a_refund_spreads_over_the_charge_lines_in_proportion(acme):
    invoice = invoice_mark_paid(invoice_id=invoice_finalize(invoice_id=draft(acme, ("30.00", "10.00", "-5.00")).pk).pk)
    with transaction.atomic():
        Invoice.objects.select_for_update().get(pk=invoice.pk)
        assert refund_note_lines(invoice=invoice, amount=Decimal("35.00")) == {
            1: Decimal("26.25"),
            2: Decimal("8.75"),
        }  # the proration line (−5.00) credits nothing: the charges carry it
        assert refund_note_lines(invoice=invoice, amount=Decimal("0.01")) == {1: Decimal("0.01")}
        assert refund_note_lines(invoice=invoice, amount=Decimal("0.03")) == {1: Decimal("0.02"), 2: Decimal("0.01")}


@given(
    lefts=st.dictionaries(st.integers(1, 20), st.integers(0, 10**9), min_size=1, max_size=8),
    share=st.fractions(0, 1),
)
def test_spread_adds_up_and_never_exceeds_a_line(lefts, share):
    whole = sum(lefts.values())
    units = int(whole * share)
    spread_ = spread(units, lefts)
    assert sum(spread_.values()) == units
    for pos, n in spread_.items():
        assert 0 <= n <= lefts[pos]
        assert abs(n - units * lefts[pos] / max(whole, 1)) < 1 + 1e-9  # within a unit of its share


# ---------------------------------------------------------------- below the ORM
def test_the_database_keeps_refunds_within_what_was_paid_and_their_terms_fixed(acme):
    invoice = paid_at_stripe(acme)
    refund = ask(invoice, "40.00")
    refused = [
        ("UPDATE invoicing_refund SET amount = 41 WHERE id = %s", [refund.pk], "terms cannot change"),
        ("UPDATE invoicing_refund SET requested_by = 'x' WHERE id = %s", [refund.pk], "terms cannot change"),
        ("DELETE FROM invoicing_refund WHERE id = %s", [refund.pk], "DELETE refused"),
        (
            "UPDATE invoicing_refund SET status = 'awaiting_approval' WHERE id = %s",
            [refund.pk],
            "requested → awaiting_approval refused",
        ),
        (
            "INSERT INTO invoicing_refund (invoice_id, tenant_id, amount, currency, reason, status, request_key,"
            " requested_by, stripe_refund_id, failure_reason, created_at)"
            " VALUES (%s, %s, 10, 'USD', 'x', 'requested', 'raw', 'sql', '', '', now())",
            [invoice.pk, acme.pk],
            "more than the 49.0000 paid",
        ),
    ]
    for sql, params, message in refused:
        with pytest.raises(DatabaseError, match=message), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    unpaid = finalized(acme)
    with pytest.raises(DatabaseError, match="not paid"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO invoicing_refund (invoice_id, tenant_id, amount, currency, reason, status, request_key,"
            " requested_by, stripe_refund_id, failure_reason, created_at)"
            " VALUES (%s, %s, 1, 'USD', 'x', 'requested', 'raw', 'sql', '', '', now())",
            [unpaid.pk, acme.pk],
        )
    # failed is final
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE invoicing_refund SET status = 'failed', failed_at = now(), failure_reason = 'x' WHERE id = %s",
            [refund.pk],
        )
    with pytest.raises(DatabaseError, match="failed → requested"), transaction.atomic(), connection.cursor() as c:
        c.execute("UPDATE invoicing_refund SET status = 'requested' WHERE id = %s", [refund.pk])


def test_submissions_are_queued_by_task_name():
    assert jobs.REFUND_SUBMIT_TASK == "invoicing.tasks.submit_refund"
    from invoicing import tasks

    assert tasks.submit_refund.name == jobs.REFUND_SUBMIT_TASK


def test_a_refund_is_audited_with_who_asked(acme):
    from auditlog.models import LogEntry

    from billing_project.audit import acting_as, api_actor_of

    invoice = paid_at_stripe(acme)
    with acting_as("staff:ana"):
        refund = ask(invoice, "15.00", awaiting_approval=True)
    with acting_as("staff:bo"):
        refund_cancel(refund_id=refund.pk, reason="rejected")
    entries = list(LogEntry.objects.get_for_object(refund).order_by("pk"))
    assert [(e.action, api_actor_of(e)) for e in entries] == [
        (LogEntry.Action.CREATE, "staff:ana"),
        (LogEntry.Action.UPDATE, "staff:bo"),
    ]
    assert "failed" in str(entries[1].changes_dict["status"])
