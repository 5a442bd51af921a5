"""What must hold whatever the code above does: finalized invoices are frozen below the
ORM, numbers are gapless under concurrency and rollback, and the credit ledger is
append-only and never goes negative."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from billing_project.money import Money
from invoicing.ledger import credit_balance, credit_grant
from invoicing.models import CreditEntry, Invoice, InvoiceLine
from invoicing.services import invoice_finalize, invoice_mark_paid
from plans.services import catalog_import, catalog_validate
from subscriptions.services import tenant_upsert
from tests.clock import NOW
from tests.locks import backend_pid, waiting_behind
from tests.plans.factories import demo
from tests.subscriptions.test_races import race
from tests.waiting import wait_for

T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def acme(db, clock):
    # numbers carry the year of finalization: every test here runs on the suite's frozen clock
    catalog_import(spec=catalog_validate(demo()))
    return tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]


def draft(tenant, amount="10.00"):
    invoice = Invoice.objects.create(tenant=tenant, currency="USD", period_start=T, period_end=T)
    InvoiceLine.objects.create(
        invoice=invoice, position=1, kind="base_fee", description="fee", amount=Decimal(amount), currency="USD"
    )
    return invoice


def drafts_taker(pks):
    """Hands each racer the next draft (None when none is left), one at a time."""
    lock, pending = threading.Lock(), list(pks)

    def take():
        with lock:
            return pending.pop() if pending else None

    return take


def refused(sql, params=()):
    with pytest.raises(DatabaseError, match="finalized"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db
def test_a_finalized_invoice_is_frozen_below_the_orm(acme):
    invoice = invoice_finalize(invoice_id=draft(acme).pk)
    assert invoice.status == "open"
    refused("UPDATE invoicing_invoice SET total = 1 WHERE id = %s", [invoice.pk])
    refused("UPDATE invoicing_invoice SET number = 'INV-2026-999999' WHERE id = %s", [invoice.pk])
    refused("UPDATE invoicing_invoice SET buyer = '{}' WHERE id = %s", [invoice.pk])
    refused("DELETE FROM invoicing_invoice WHERE id = %s", [invoice.pk])
    refused("UPDATE invoicing_invoiceline SET amount = 0 WHERE invoice_id = %s", [invoice.pk])
    refused("DELETE FROM invoicing_invoiceline WHERE invoice_id = %s", [invoice.pk])
    refused(
        "INSERT INTO invoicing_invoiceline (invoice_id, position, kind, description, metric, amount, explanation)"
        " VALUES (%s, 9, 'credit', 'sneaky', '', -5, '{}')",
        [invoice.pk],
    )
    with pytest.raises(DatabaseError, match="refused"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE invoicing_invoice SET status = 'draft' WHERE id = %s", [invoice.pk])
    # only its collection moves on
    paid = invoice_mark_paid(invoice_id=invoice.pk)
    assert paid.status == "paid"
    with pytest.raises(DatabaseError, match="refused"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE invoicing_invoice SET status = 'open' WHERE id = %s", [invoice.pk])
    invoice.refresh_from_db()
    assert (invoice.status, invoice.total) == ("paid", Decimal("10.00"))


@pytest.mark.django_db
def test_a_draft_may_still_change(acme):
    invoice = draft(acme)
    InvoiceLine.objects.filter(invoice=invoice).update(amount=Decimal("12.00"))
    assert invoice_finalize(invoice_id=invoice.pk).total == Decimal("12.00")


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_finalizations_take_fifty_consecutive_numbers(acme):
    drafts = [draft(acme).pk for _ in range(50)]
    # one more that rolls back after taking its number: it must leave no hole
    doomed = draft(acme).pk

    def finalize_then_fail() -> None:
        with transaction.atomic():
            invoice_finalize(invoice_id=doomed)
            raise RuntimeError("rolled back after numbering")

    with pytest.raises(RuntimeError):
        finalize_then_fail()
    take = drafts_taker(drafts)

    def finalize_until_none_left() -> None:
        while (pk := take()) is not None:
            invoice_finalize(invoice_id=pk)

    _, errors = race(finalize_until_none_left, 10)
    assert errors == []
    numbers = sorted(str(n) for n in Invoice.objects.exclude(number=None).values_list("number", flat=True))
    assert numbers == [f"INV-{NOW.year}-{n:06d}" for n in range(1, 51)]
    assert Invoice.objects.get(pk=doomed).status == "draft"


@pytest.mark.django_db
def test_the_credit_ledger_is_append_only(acme):
    entry = credit_grant(tenant=acme, amount=Money(Decimal("5.00"), "USD"), reason="goodwill", actor="staff:ann")
    for sql in (
        "UPDATE invoicing_creditentry SET amount = 500 WHERE id = %s",
        "DELETE FROM invoicing_creditentry WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(sql, [entry.pk])
    assert credit_balance(tenant=acme, currency="USD") == Decimal("5.00")


@pytest.mark.django_db
def test_credit_covers_an_invoice_at_most_and_never_goes_negative(acme):
    credit_grant(tenant=acme, amount=Money(Decimal("15.00"), "USD"), reason="outage", actor="staff:ann")
    first = invoice_finalize(invoice_id=draft(acme).pk)
    assert (first.credit_applied, first.total, first.status) == (Decimal("10.00"), Decimal("0.00"), "paid")
    second = invoice_finalize(invoice_id=draft(acme).pk)
    assert (second.credit_applied, second.total) == (Decimal("5.00"), Decimal("5.00"))
    third = invoice_finalize(invoice_id=draft(acme).pk)
    assert third.credit_applied == 0
    assert credit_balance(tenant=acme, currency="USD") == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_finalizations_share_the_credit_without_overdrawing(acme):
    credit_grant(tenant=acme, amount=Money(Decimal("25.00"), "USD"), reason="outage", actor="staff:ann")
    take = drafts_taker([draft(acme).pk for _ in range(6)])
    _, errors = race(lambda: invoice_finalize(invoice_id=take()), 6)  # one draft each
    assert errors == []
    assert credit_balance(tenant=acme, currency="USD") == 0
    applied = sorted(Invoice.objects.values_list("credit_applied", flat=True))
    assert sum(applied) == Decimal("25.00")
    assert applied.count(Decimal("10.00")) == 2
    assert CreditEntry.objects.filter(amount__lt=0).count() == 3  # 10 + 10 + 5


@pytest.mark.django_db
def test_credit_must_be_whole_minor_units_and_explained(acme):
    from billing_project.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        credit_grant(tenant=acme, amount=Money(Decimal("0.001"), "USD"), reason="x", actor="a")
    with pytest.raises(InvalidRequest):
        credit_grant(tenant=acme, amount=Money(Decimal("-1"), "USD"), reason="x", actor="a")
    with pytest.raises(InvalidRequest):
        credit_grant(tenant=acme, amount=Money(Decimal("1"), "USD"), reason=" ", actor="a")


@pytest.mark.django_db
def test_a_draft_cannot_be_finalized_around_the_sequence(acme):
    invoice = draft(acme)
    finalize_by_hand = "UPDATE invoicing_invoice SET status = %s, number = %s, finalized_at = %s WHERE id = %s"
    year = NOW.year
    for status, number in (("open", f"INV-{year}-000042"), ("void", f"INV-{year}-000001"), ("uncollectible", None)):
        with pytest.raises(DatabaseError, match="refused"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(finalize_by_hand, [status, number, NOW, invoice.pk])
    assert invoice_finalize(invoice_id=invoice.pk).number == f"INV-{year}-000001"


@pytest.mark.django_db
def test_collection_dates_once_set_never_move(acme):
    invoice = invoice_mark_paid(invoice_id=invoice_finalize(invoice_id=draft(acme).pk).pk)
    refused("UPDATE invoicing_invoice SET paid_at = paid_at - interval '1 day' WHERE id = %s", [invoice.pk])


@pytest.mark.django_db(transaction=True)
def test_a_line_written_during_finalization_waits_and_is_refused(acme):
    """One transaction finalizes; another adds a line to the same draft meanwhile. The line
    waits for the finalization, then finds the invoice final: the total stays the sum."""
    invoice = draft(acme, "10.00")
    finalizing = threading.Event()
    outcome: list[str] = []

    def add_line() -> None:
        finalizing.wait(10)
        try:
            InvoiceLine.objects.create(
                invoice_id=invoice.pk, position=2, kind="usage", description="x", amount=5, currency="USD"
            )
            outcome.append("written")
        except DatabaseError:
            outcome.append("refused")
        finally:
            connection.close()

    writer = threading.Thread(target=add_line)
    writer.start()
    with transaction.atomic():
        Invoice.objects.select_for_update().get(pk=invoice.pk)
        finalizing.set()
        # the writer is queued behind this transaction's lock (or, unguarded, already done)
        assert wait_for(lambda: outcome or waiting_behind(backend_pid()) == 1)
        invoice_finalize(invoice_id=invoice.pk)
    writer.join(10)
    assert outcome == ["refused"]
    invoice.refresh_from_db()
    assert invoice.total == sum(invoice.lines.values_list("amount", flat=True)) == Decimal("10.00")


@pytest.mark.django_db(transaction=True)
def test_four_period_closes_at_once_make_one_invoice_per_boundary(acme):
    """Beat's close, a retried close and two manual ones, all at once: one invoice per
    boundary, consecutive numbers, no errors (the losers find the boundary invoiced)."""
    from invoicing.services import invoices_close_due
    from subscriptions.services import subscription_create, subscription_roll

    for n in range(3):
        tenant = acme if n == 0 else tenant_upsert(external_id=f"t{n}", name=f"T{n}", currency="USD")[0]
        sub = subscription_create(tenant=tenant, plan_code="pro", actor="t", at=T)
        subscription_roll(subscription_id=sub.pk, at=datetime(2026, 3, 20, tzinfo=UTC))  # 3 boundaries each
    later = datetime(2026, 4, 1, tzinfo=UTC)
    made, errors = race(lambda: invoices_close_due(now=later), 4)
    assert errors == []
    assert sum(made) == 9
    assert Invoice.objects.count() == 9
    numbers = sorted(str(n) for n in Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 10)]
