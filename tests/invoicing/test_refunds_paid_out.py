"""Refunds of invoices staff marked paid (a bank transfer; collection off, as in `make run`'s
demo): paid back by staff outside Stripe, with their payout's reference. Settled by the
same submission as a refund through Stripe, with no Stripe call (each Stripe request would
be recorded by tests/invoicing/stripe_watch.py, and none is registered for refunds), the
same credit note settled by refund, the same reservations, idempotency and audit. An
invoice paid at Stripe is still refunded through Stripe."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.db import DatabaseError, IntegrityError, connection, transaction

from billing_project.audit import acting_as, api_actor_of
from billing_project.errors import Conflict, InvalidRequest
from billing_project.money import Money
from invoicing.ledger import credit_balance
from invoicing.models import CreditEntry, CreditNote, Invoice, Refund
from invoicing.refunds import refunds_awaiting_submission
from invoicing.services import (
    invoice_mark_paid,
    refund_approve_ready,
    refund_method,
    refund_request,
    refund_submit,
    refund_totals,
    refundable,
)
from invoicing.tasks import submit_refund
from tests.invoicing import stripe_watch
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.stripe_refunds import paid_at_stripe
from tests.invoicing.test_stripe_adapter import finalized

pytestmark = [pytest.mark.django_db(transaction=True)]

acme = recorded_stripe.acme
watched_stripe = stripe_watch.watched_stripe
TRANSFER = "SEPA-2026-11-0042"


@pytest.fixture
def watch(watched_stripe: tuple[Any, stripe_watch.Watch], clock: Any) -> stripe_watch.Watch:
    """Recorded Stripe with no refund endpoint at all: any Stripe call is in `watch.calls`."""
    return watched_stripe[1]


def paid_by_staff(tenant: Any, amounts: tuple[str, ...] = ("49.00",)) -> Invoice:
    """A finalized invoice Stripe never held, marked paid by staff (a bank transfer arrived)."""
    invoice = finalized(tenant, amounts=amounts)
    assert invoice.stripe_invoice_id is None
    return invoice_mark_paid(invoice_id=invoice.pk, actor="staff:ana")


def ask(invoice: Invoice, amount: str, key: str = "k1", reference: str = TRANSFER, **kw: Any) -> Refund:
    return refund_request(
        invoice_id=invoice.pk,
        amount=Money(Decimal(amount), "USD"),
        reason="customer asked",
        actor="staff:ana",
        request_key=key,
        payout_reference=reference,
        **kw,
    )


def assert_reconciled(invoice: Invoice) -> None:
    totals = refund_totals(invoice=invoice)
    assert totals.refunded == totals.credited_by_refund
    assert totals.refunded + totals.in_flight + totals.refundable <= totals.paid
    assert credit_balance(tenant=invoice.tenant, currency=invoice.currency) == totals.credited_as_credit


# ---------------------------------------------------------------- settled without Stripe
def test_a_staff_paid_invoice_is_refunded_in_part_then_in_full_without_calling_stripe(acme, watch):
    invoice = paid_by_staff(acme)
    assert refund_method(invoice=invoice) == "manual"

    part = ask(invoice, "15.00", key="part")
    assert (part.status, part.method, part.payout_reference, part.stripe_refund_id) == (
        "requested",
        "manual",
        TRANSFER,
        "",
    )
    done = refund_submit(refund_id=part.pk)

    assert watch.calls == []  # not one request to Stripe
    assert (done.status, done.succeeded_at is not None, done.submit_lease_until) == ("succeeded", True, None)
    assert (done.submitted_at, done.stripe_refund_id) == (None, "")
    note = done.credit_note
    assert note is not None
    assert (note.total, note.settlement, note.actor) == (Decimal("15.00"), "refund", "staff:ana")
    assert note.reason == f"refund {part.pk}: customer asked"
    assert not CreditEntry.objects.exists()  # the money went back by bank transfer, not as credit
    assert refundable(invoice=invoice) == Decimal("34.00")
    assert_reconciled(invoice)

    rest = ask(invoice, "34.00", key="rest", reference="SEPA-2026-11-0043")
    submit_refund(rest.pk)  # the task, as the worker runs it

    assert watch.calls == []
    rest.refresh_from_db()
    assert rest.status == "succeeded"
    totals = refund_totals(invoice=invoice)
    assert (totals.paid, totals.refunded, totals.credited_by_refund, totals.refundable) == (
        Decimal("49.00"),
        Decimal("49.00"),
        Decimal("49.00"),
        Decimal(0),
    )
    assert sorted(CreditNote.objects.values_list("total", flat=True)) == [Decimal("15.00"), Decimal("34.00")]
    assert_reconciled(invoice)
    with pytest.raises(Conflict) as nothing_left:
        ask(invoice, "0.01", key="more")
    assert nothing_left.value.code == "refund_exceeds_paid"

    assert refund_submit(refund_id=part.pk).credit_note_id == note.pk  # a redelivery settles nothing twice
    assert CreditNote.objects.count() == 2
    assert watch.calls == []


def test_reservations_four_eyes_and_idempotency_hold_as_through_stripe(acme, watch):
    invoice = paid_by_staff(acme)
    waiting = ask(invoice, "40.00", key="big", awaiting_approval=True)
    assert waiting.status == "awaiting_approval"  # nothing paid out yet
    assert refund_submit(refund_id=waiting.pk).status == "awaiting_approval"  # nor settled before approval
    assert refundable(invoice=invoice) == Decimal("9.00")  # but its amount is reserved
    with pytest.raises(Conflict) as beyond:
        ask(invoice, "10.00", key="small")
    assert (beyond.value.code, beyond.value.details["refundable"]) == ("refund_exceeds_paid", "9.0000")

    # the same request again is the same refund; the same key with another payout is refused
    assert ask(invoice, "40.00", key="big", awaiting_approval=True).pk == waiting.pk
    with pytest.raises(Conflict) as other_payout:
        ask(invoice, "40.00", key="big", reference="SEPA-other")
    assert (other_payout.value.code, other_payout.value.details["payout_reference"]) == (
        "idempotency_conflict",
        TRANSFER,
    )

    assert refund_approve_ready(refund_id=waiting.pk).status == "requested"
    assert refund_submit(refund_id=waiting.pk).status == "succeeded"
    assert watch.calls == []
    assert refundable(invoice=invoice) == Decimal("9.00")
    assert Refund.objects.count() == 1
    assert_reconciled(invoice)


def test_a_lost_submission_is_swept_and_settled_like_any_other(acme, watch, clock):
    from datetime import timedelta

    invoice = paid_by_staff(acme)
    refund = ask(invoice, "10.00")  # its task was lost
    clock.shift(timedelta(minutes=5))
    assert refunds_awaiting_submission() == [refund.pk]
    submit_refund(refund.pk)
    assert Refund.objects.get(pk=refund.pk).status == "succeeded"
    assert refunds_awaiting_submission() == []
    assert watch.calls == []


# ---------------------------------------------------------------- the payout reference and the method
def test_the_payout_reference_is_required_for_a_staff_paid_invoice_and_refused_for_a_stripe_paid_one(acme, watch):
    by_staff = paid_by_staff(acme)
    at_stripe = paid_at_stripe(acme)
    for invoice, reference in ((by_staff, ""), (by_staff, "   "), (at_stripe, TRANSFER), (by_staff, "x" * 256)):
        with pytest.raises(InvalidRequest) as refused:
            ask(invoice, "1.00", key=f"bad-{invoice.pk}-{len(reference)}", reference=reference)
        assert (refused.value.code, list(refused.value.details["fields"])) == ("validation_error", ["payout_reference"])
    assert not Refund.objects.exists()

    # paid at Stripe: back through Stripe, always (never booked as a payout of staff)
    through_stripe = ask(at_stripe, "1.00", reference="")
    assert (refund_method(invoice=at_stripe), through_stripe.method, through_stripe.payout_reference) == (
        "stripe",
        "stripe",
        "",
    )
    assert ask(by_staff, "1.00", reference=f"  {TRANSFER} ").payout_reference == TRANSFER  # trimmed


# ---------------------------------------------------------------- below the ORM
def test_the_database_keeps_the_method_to_how_the_invoice_was_paid_and_fixed(acme, clock):
    at_stripe = paid_at_stripe(acme)
    insert = (
        "INSERT INTO invoicing_refund (invoice_id, tenant_id, amount, currency, reason, status, request_key,"
        " requested_by, stripe_refund_id, failure_reason, created_at, method, payout_reference)"
        " VALUES (%s, %s, 1, 'USD', 'x', 'requested', %s, 'sql', '', '', now(), 'manual', %s)"
    )
    with pytest.raises(DatabaseError, match="refunded through Stripe"), transaction.atomic(), connection.cursor() as c:
        c.execute(insert, [at_stripe.pk, acme.pk, "raw-1", TRANSFER])

    by_staff = paid_by_staff(acme)
    no_reference = pytest.raises(IntegrityError, match="refund_method_matches_its_references")
    with no_reference, transaction.atomic(), connection.cursor() as c:
        c.execute(insert, [by_staff.pk, acme.pk, "raw-2", ""])  # a payout with no reference

    refund = ask(by_staff, "10.00")
    refused = [
        ("UPDATE invoicing_refund SET method = 'stripe', payout_reference = '' WHERE id = %s", "terms cannot change"),
        ("UPDATE invoicing_refund SET payout_reference = 'other' WHERE id = %s", "terms cannot change"),
        (
            "UPDATE invoicing_refund SET status = 'submitted', submitted_at = now() WHERE id = %s",
            "refund_method_matches_its_references",
        ),
    ]
    for sql, message in refused:
        with pytest.raises(DatabaseError, match=message), transaction.atomic(), connection.cursor() as c:
            c.execute(sql, [refund.pk])


# ---------------------------------------------------------------- audit
def test_a_payout_by_staff_is_audited_with_who_asked_and_what_settled_it(acme, watch):
    invoice = paid_by_staff(acme)
    with acting_as("staff:ana"):
        refund = ask(invoice, "15.00")
    with acting_as("task:invoicing.tasks.submit_refund[t1]"):
        done = refund_submit(refund_id=refund.pk)

    entries = list(LogEntry.objects.get_for_object(refund).order_by("pk"))
    assert [(e.action, api_actor_of(e)) for e in entries] == [
        (LogEntry.Action.CREATE, "staff:ana"),
        (LogEntry.Action.UPDATE, "task:invoicing.tasks.submit_refund[t1]"),
    ]
    created = entries[0].changes_dict
    assert (created["method"][1], created["payout_reference"][1]) == ("manual", TRANSFER)
    assert "succeeded" in str(entries[1].changes_dict["status"])
    assert done.credit_note is not None
    (note_entry,) = LogEntry.objects.get_for_object(done.credit_note)
    assert (note_entry.action, api_actor_of(note_entry)) == (
        LogEntry.Action.CREATE,
        "task:invoicing.tasks.submit_refund[t1]",
    )
