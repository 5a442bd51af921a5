"""A refund sent to Stripe and settled by Stripe's answer, against recorded Stripe responses
(tests/invoicing/stripe_refunds.py), each Stripe request checked as it is sent: no
transaction open, no row of ours locked (tests/invoicing/stripe_watch.py). Then Stripe's
confirmation through the webhooks, replayed; outages counted and backed off; refusals
leaving the books as they were."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest
from django.utils import timezone

from billing_project.models import WorkItem
from billing_project.money import Money
from billing_project.work import MAX_ATTEMPTS, backoff
from invoicing import jobs
from invoicing.ledger import credit_balance, credit_balances
from invoicing.models import CreditEntry, CreditNote, Invoice, Refund
from invoicing.refunds import refunds_awaiting_submission
from invoicing.services import refund_request, refund_submit, refund_totals
from invoicing.tasks import submit_refund
from tests.invoicing import stripe_watch
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.stripe_refunds import CHARGE, INTENT, StripeRefunds, paid_at_stripe
from tests.webhooks.conftest import make_event
from webhooks.models import StripeEvent
from webhooks.services import stripe_event_process

pytestmark = [pytest.mark.django_db(transaction=True)]

acme = recorded_stripe.acme
watched_stripe = stripe_watch.watched_stripe


@pytest.fixture
def stripe(watched_stripe: Any) -> StripeRefunds:
    rsps, _ = watched_stripe
    return StripeRefunds(rsps)


@pytest.fixture
def watch(watched_stripe: tuple[Any, stripe_watch.Watch]) -> stripe_watch.Watch:
    return watched_stripe[1]


def ask(invoice: Invoice, amount: str, key: str = "k1") -> Refund:
    return refund_request(
        invoice_id=invoice.pk,
        amount=Money(Decimal(amount), "USD"),
        reason="customer asked",
        actor="staff:ana",
        request_key=key,
    )


def watching(watch: stripe_watch.Watch, refund: Refund) -> None:
    watch.lock("invoicing_invoice", refund.invoice_id)
    watch.lock("invoicing_refund", refund.pk)
    watch.lock("subscriptions_tenant", refund.tenant_id)


def books(invoice: Invoice) -> tuple[object, ...]:
    """What a refund that failed must leave as it was: the invoice, the ledger, the notes."""
    invoice.refresh_from_db()
    entries = tuple(CreditEntry.objects.order_by("pk").values_list("kind", "amount"))
    notes = tuple(CreditNote.objects.order_by("pk").values_list("number", "total"))
    return invoice.status, invoice.total, invoice.paid_at, entries, notes, credit_balances(tenant=invoice.tenant)


def event(event_type: str, object_id: str) -> StripeEvent:
    payload = make_event(event_type)
    payload["data"]["object"].update(id=object_id, object="charge" if object_id.startswith("ch_") else "refund")
    return StripeEvent.objects.create(
        stripe_id=payload["id"], type=event_type, livemode=False, created=timezone.now(), payload=payload
    )


def assert_reconciled(invoice: Invoice) -> None:
    totals = refund_totals(invoice=invoice)
    assert totals.refunded == totals.credited_by_refund
    assert totals.refunded + totals.in_flight + totals.refundable <= totals.paid
    assert credit_balance(tenant=invoice.tenant, currency=invoice.currency) == totals.credited_as_credit


# ---------------------------------------------------------------- submission
def test_a_refund_goes_to_stripe_outside_any_transaction_with_a_key_from_its_record(acme, stripe, watch):
    invoice = paid_at_stripe(acme)
    refund = ask(invoice, "15.00")
    watching(watch, refund)

    submitted = refund_submit(refund_id=refund.pk)

    assert watch.problems == []
    assert watch.calls == ["GET /v1/invoice_payments", "GET /v1/refunds", "POST /v1/refunds"]
    (create,) = stripe.creates()
    assert create.request.headers["Idempotency-Key"] == f"refund-{refund.pk}"
    form = parse_qs(create.request.body)
    assert (form["amount"], form["payment_intent"], form["metadata[billing_refund_id]"]) == (
        ["1500"],
        [INTENT],
        [str(refund.pk)],
    )
    assert (submitted.status, submitted.stripe_refund_id) == ("submitted", stripe.one()["id"])
    assert submitted.submitted_at is not None
    assert submitted.submit_lease_until is None
    assert refund_submit(refund_id=refund.pk).status == "submitted"  # again: nothing sent
    assert len(stripe.creates()) == 1
    assert not CreditNote.objects.exists()  # the books wait for Stripe's confirmation


def test_a_refund_stripe_makes_at_once_corrects_the_books_without_granting_credit(acme, stripe, watch):
    stripe.status = "succeeded"
    invoice = paid_at_stripe(acme)
    refund = ask(invoice, "15.00")
    watching(watch, refund)

    done = refund_submit(refund_id=refund.pk)

    assert watch.problems == []
    assert (done.status, done.succeeded_at is not None) == ("succeeded", True)
    note = done.credit_note
    assert note is not None
    assert (note.total, note.settlement, note.actor) == (Decimal("15.00"), "refund", "staff:ana")
    assert note.reason == f"refund {refund.pk}: customer asked"
    assert [(x.invoice_line.position, x.amount) for x in note.lines.all()] == [(1, Decimal("15.00"))]
    assert credit_balance(tenant=acme, currency="USD") == 0  # the money went back in cash, not as credit
    assert not CreditEntry.objects.exists()
    assert_reconciled(invoice)


def test_a_stripe_refusal_leaves_the_refund_failed_with_the_reason_and_the_books_unchanged(acme, stripe, watch):
    invoice = paid_at_stripe(acme)
    before = books(invoice)
    refund = ask(invoice, "49.00")
    stripe.refusal = (
        400,
        {
            "error": {
                "type": "invalid_request_error",
                "code": "charge_already_refunded",
                "message": "Charge ch_3SxZ00Qa7bC3dE4f has already been refunded.",
            }
        },
    )
    watching(watch, refund)

    submit_refund(refund.pk)  # the task, as the worker runs it

    assert watch.problems == []
    refund.refresh_from_db()
    assert refund.status == "failed"
    assert "has already been refunded" in refund.failure_reason
    assert (refund.failed_at is not None, refund.credit_note_id, refund.stripe_refund_id) == (True, None, "")
    assert books(invoice) == before
    assert refund_totals(invoice=invoice).refundable == Decimal("49.00")  # nothing reserved any more
    assert not WorkItem.objects.exists()  # a refusal is the refund's outcome, not work to retry


def test_stripe_unreachable_leaves_it_requested_counted_backed_off_and_blocked_in_the_end(acme, stripe, clock):
    invoice = paid_at_stripe(acme)
    refund = ask(invoice, "15.00")
    stripe.down = True

    submit_refund(refund.pk)

    refund.refresh_from_db()
    assert (refund.status, refund.submit_lease_until) == ("requested", None)  # free for the next attempt
    item = WorkItem.objects.get(job=jobs.REFUND_SUBMIT, object_id=refund.pk)
    assert (item.state, item.attempts, item.task, item.task_args) == (
        "retrying",
        1,
        jobs.REFUND_SUBMIT_TASK,
        [refund.pk],
    )
    assert "refund_create" in item.last_error
    clock.shift(timedelta(minutes=6))
    assert refunds_awaiting_submission() == []  # backing off: the sweeper leaves it
    for attempt in range(2, MAX_ATTEMPTS + 1):
        clock.shift(backoff(attempt - 1))
        assert refunds_awaiting_submission() == [refund.pk]
        submit_refund(refund.pk)
    item.refresh_from_db()
    assert (item.state, item.attempts) == ("blocked", MAX_ATTEMPTS)
    clock.shift(timedelta(days=2))
    assert refunds_awaiting_submission() == []  # blocked: staff retry it (billing_project.work)
    assert Refund.objects.get(pk=refund.pk).status == "requested"
    assert books(invoice)[3:5] == ((), ())


def test_the_sweeper_sends_again_what_a_lost_task_or_a_dead_process_left(acme, stripe, clock):
    invoice = paid_at_stripe(acme)
    lost = ask(invoice, "10.00", key="lost")
    assert refunds_awaiting_submission() == []  # its task may still run
    clock.shift(timedelta(minutes=5))
    assert refunds_awaiting_submission() == [lost.pk]

    dead = ask(invoice, "11.00", key="dead")  # a process took the lease, called Stripe, died
    Refund.objects.filter(pk=dead.pk).update(submit_lease_until=timezone.now() + timedelta(minutes=5))
    clock.shift(timedelta(minutes=5, seconds=1))
    assert refunds_awaiting_submission() == [lost.pk, dead.pk]


def test_a_retry_after_stripe_forgot_the_key_finds_the_refund_it_made(acme, stripe, watch, clock):
    invoice = paid_at_stripe(acme)
    refund = ask(invoice, "15.00")
    made = stripe.stripe_made(amount=refund.amount, billing_refund_id=refund.pk)  # its answer was lost
    stripe.keys.clear()  # and 24 hours later Stripe no longer knows the key
    clock.shift(timedelta(days=1, minutes=1))

    submitted = refund_submit(refund_id=refund.pk)

    assert stripe.creates() == []
    assert (submitted.status, submitted.stripe_refund_id) == ("submitted", made["id"])
    assert watch.problems == []


# ---------------------------------------------------------------- Stripe's confirmation
def submitted(acme: Any, stripe: StripeRefunds, amount: str = "15.00", key: str = "k1") -> tuple[Refund, str]:
    invoice = Invoice.objects.filter(tenant=acme, status="paid").first() or paid_at_stripe(acme)
    refund = refund_submit(refund_id=ask(invoice, amount, key=key).pk)
    assert refund.status == "submitted"
    return refund, refund.stripe_refund_id


def test_a_webhook_replayed_ten_times_and_every_other_event_give_one_credit_note(acme, stripe, watch):
    refund, stripe_id = submitted(acme, stripe)
    stripe.settle(stripe_id, "succeeded")
    watching(watch, refund)

    first = event("refund.updated", stripe_id)
    assert stripe_event_process(stripe_id=first.stripe_id) is True
    for _ in range(9):  # the same event again: dj-stripe's dedup and ours
        assert stripe_event_process(stripe_id=first.stripe_id) is False
    others = [event(t, stripe_id) for t in ("refund.created", "refund.updated", "refund.updated")]
    others += [event("charge.refunded", CHARGE) for _ in range(6)]  # 10 distinct events about it in all
    for other in others:
        assert stripe_event_process(stripe_id=other.stripe_id) is True

    assert watch.problems == []
    refund.refresh_from_db()
    assert refund.status == "succeeded"
    (note,) = CreditNote.objects.all()
    assert (note.pk, note.total, note.settlement) == (refund.credit_note_id, Decimal("15.00"), "refund")
    assert not CreditEntry.objects.exists()
    assert_reconciled(refund.invoice)


def test_a_refund_that_fails_at_stripe_later_leaves_the_books_as_they_were(acme, stripe, watch):
    refund, stripe_id = submitted(acme, stripe)
    before = books(refund.invoice)
    stripe.settle(stripe_id, "failed", failure_reason="expired_or_canceled_card")
    watching(watch, refund)

    assert stripe_event_process(stripe_id=event("refund.failed", stripe_id).stripe_id) is True
    stripe.settle(stripe_id, "succeeded")  # a stale read cannot bring it back
    assert stripe_event_process(stripe_id=event("refund.updated", stripe_id).stripe_id) is True

    assert watch.problems == []
    refund.refresh_from_db()
    assert (refund.status, refund.failure_reason) == ("failed", "Stripe: expired_or_canceled_card")
    assert refund.credit_note_id is None
    assert books(refund.invoice) == before
    assert refund_totals(invoice=refund.invoice).refundable == Decimal("49.00")


def test_a_partial_then_a_full_refund(acme, stripe):
    first, first_id = submitted(acme, stripe, "15.00", key="part")
    stripe.settle(first_id, "succeeded")
    stripe_event_process(stripe_id=event("refund.updated", first_id).stripe_id)
    rest, rest_id = submitted(acme, stripe, "34.00", key="rest")
    stripe.settle(rest_id, "succeeded")
    stripe_event_process(stripe_id=event("charge.refunded", CHARGE).stripe_id)

    invoice = Invoice.objects.get(pk=first.invoice_id)
    assert list(invoice.refunds.order_by("pk").values_list("status", "amount")) == [
        ("succeeded", Decimal("15.00")),
        ("succeeded", Decimal("34.00")),
    ]
    notes = list(invoice.credit_notes.order_by("pk").values_list("total", "settlement"))
    assert notes == [(Decimal("15.00"), "refund"), (Decimal("34.00"), "refund")]
    totals = refund_totals(invoice=invoice)
    assert (totals.paid, totals.refunded, totals.credited_by_refund, totals.refundable) == (
        Decimal("49.00"),
        Decimal("49.00"),
        Decimal("49.00"),
        Decimal(0),
    )
    assert credit_balance(tenant=acme, currency="USD") == 0
    from billing_project.errors import Conflict

    with pytest.raises(Conflict) as nothing_left:
        ask(invoice, "0.01", key="more")
    assert nothing_left.value.code == "refund_exceeds_paid"


def test_a_refund_made_in_stripes_dashboard_is_not_ours(acme, stripe, caplog):
    invoice = paid_at_stripe(acme)
    theirs = stripe.stripe_made(amount=Decimal("5.00"), billing_refund_id=999_999, status="succeeded")
    theirs["metadata"] = {}
    assert stripe_event_process(stripe_id=event("refund.created", theirs["id"]).stripe_id) is True
    assert not Refund.objects.exists()
    assert not CreditNote.objects.exists()
    assert any(r.message == "refunds.unknown_at_stripe" for r in caplog.records)
    assert invoice.refunds.count() == 0


def test_a_stripe_refund_of_another_amount_blocks_the_event_for_staff(acme, stripe):
    refund, stripe_id = submitted(acme, stripe)
    stripe.made[stripe_id].update(amount=1600, status="succeeded")
    from webhooks.services import stripe_event_attempt

    stored = event("refund.updated", stripe_id)
    stripe_event_attempt(stripe_id=stored.stripe_id)

    item = WorkItem.objects.get(job="webhooks.event", object_id=stored.pk)
    assert item.state == "blocked"
    assert "does not match Stripe's" in item.blocked_reason
    refund.refresh_from_db()
    assert (refund.status, refund.credit_note_id) == ("submitted", None)
