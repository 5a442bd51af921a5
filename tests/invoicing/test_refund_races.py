"""Nothing twice, nothing beyond, raced for real: each test holds the lock the guard takes
(the invoice's, or the refund's) in a session of its own until every racer is queued behind
it (PostgreSQL's lock manager says so), then lets them go at once. Without the guard they
would all read the same state."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections

from billing_project.errors import Conflict
from billing_project.money import Money
from invoicing.models import Refund
from invoicing.services import refund_request, refund_submit, refund_totals
from tests.invoicing import stripe_watch
from tests.invoicing import test_stripe_adapter as recorded_stripe
from tests.invoicing.stripe_refunds import StripeRefunds, paid_at_stripe
from tests.locks import backend_pid, raw_connection, waiting_behind
from tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

acme = recorded_stripe.acme
watched_stripe = stripe_watch.watched_stripe
RACERS = 10


def released_together(table: str, pk: int, action: Callable[[int], Any]) -> list[Any]:
    """Run `action(i)` in RACERS threads that all wait behind a lock on `table` row `pk`,
    held here until every one of them is queued; what each returned or raised."""

    def run(i: int) -> Any:
        try:
            return action(i)
        except Exception as exc:  # collected for the assertions
            return exc
        finally:
            connections.close_all()

    holder = raw_connection()
    try:
        holder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [pk])  # noqa: S608
        with ThreadPoolExecutor(RACERS) as pool:
            futures = [pool.submit(run, i) for i in range(RACERS)]
            assert wait_for(lambda: waiting_behind(backend_pid(holder)) == RACERS), "the racers never met"
            holder.rollback()
            return [f.result(timeout=60) for f in futures]
    finally:
        holder.close()


def ask(invoice_id: int, amount: str, key: str) -> Refund:
    return refund_request(
        invoice_id=invoice_id,
        amount=Money(Decimal(amount), "USD"),
        reason="double click",
        actor="staff:ana",
        request_key=key,
    )


def test_ten_concurrent_submissions_of_one_request_make_one_refund_and_one_stripe_call(acme, watched_stripe, worker):
    rsps, watch = watched_stripe
    stripe = StripeRefunds(rsps)
    invoice = paid_at_stripe(acme)

    results = released_together("invoicing_invoice", invoice.pk, lambda _: ask(invoice.pk, "15.00", "form-1"))

    assert all(isinstance(r, Refund) for r in results), results
    assert {r.pk for r in results} == {Refund.objects.get().pk}
    # the one that made it queued its submission once committed; the worker sends it
    assert wait_for(lambda: Refund.objects.get().status == "submitted"), Refund.objects.get().status
    assert len(stripe.creates()) == 1
    assert watch.problems == []


def test_ten_concurrent_sends_of_one_refund_to_stripe_call_stripe_once(acme, watched_stripe):
    rsps, watch = watched_stripe
    stripe = StripeRefunds(rsps)
    refund = ask(paid_at_stripe(acme).pk, "15.00", "form-1")

    results = released_together("invoicing_refund", refund.pk, lambda _: refund_submit(refund_id=refund.pk))

    assert all(isinstance(r, Refund) for r in results), results
    assert len(stripe.creates()) == 1  # the lease: one of them sends, the others leave it to it
    refund.refresh_from_db()
    assert (refund.status, refund.stripe_refund_id) == ("submitted", stripe.one()["id"])
    assert watch.problems == []


def test_refunds_racing_over_one_invoice_never_exceed_what_was_paid(acme):
    invoice = paid_at_stripe(acme)  # 49.00

    results = released_together("invoicing_invoice", invoice.pk, lambda i: ask(invoice.pk, "10.00", f"racer-{i}"))

    made = [r for r in results if isinstance(r, Refund)]
    refused = [r for r in results if not isinstance(r, Refund)]
    assert len(made) == 4
    assert [(type(e), e.code) for e in refused] == [(Conflict, "refund_exceeds_paid")] * 6, refused
    totals = refund_totals(invoice=invoice)
    assert (totals.in_flight, totals.refundable) == (Decimal("40.00"), Decimal("9.00"))
