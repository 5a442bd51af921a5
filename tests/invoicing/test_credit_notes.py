"""Credit notes correct finalized invoices without editing them: numbered in their own
gapless series, append-only, never crediting a line beyond its amount (even raced), and
the amount lands on the tenant's credit balance for the next invoices."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from billing_project.errors import Conflict, InvalidRequest
from invoicing.ledger import credit_balance
from invoicing.models import CreditNote
from invoicing.services import credit_note_issue, invoice_finalize, invoice_mark_paid
from tests.clock import NOW
from tests.invoicing.test_invariants import acme as acme  # noqa: PLC0414 - the fixture
from tests.invoicing.test_invariants import draft
from tests.subscriptions.test_races import race


def paid(draft_invoice):
    return invoice_mark_paid(invoice_id=invoice_finalize(invoice_id=draft_invoice.pk).pk)


@pytest.mark.django_db
def test_a_partial_then_a_full_correction(acme, api, make_key):
    invoice = paid(draft(acme, "49.00"))
    note = credit_note_issue(invoice_id=invoice.pk, lines={1: Decimal("9.00")}, reason="outage", actor="staff:ann")
    assert (note.number, note.total) == (f"CN-{NOW.year}-000001", Decimal("9.00"))  # acme's clock: NOW
    assert credit_balance(tenant=acme, currency="USD") == Decimal("9.00")
    rest = credit_note_issue(invoice_id=invoice.pk, reason="contract ended", actor="staff:ann")
    assert (rest.number, rest.total) == (f"CN-{NOW.year}-000002", Decimal("40.00"))  # what was left
    with pytest.raises(Conflict):
        credit_note_issue(invoice_id=invoice.pk, reason="again", actor="staff:ann")
    invoice.refresh_from_db()
    assert invoice.total == Decimal("49.00")  # the invoice itself never changes
    key = make_key("service", scopes=["billing:read"])
    body = api.get(f"/api/v1/invoices/{invoice.number}", **key.header).json()
    assert [n["number"] for n in body["credit_notes"]] == [f"CN-{NOW.year}-000001", f"CN-{NOW.year}-000002"]


@pytest.mark.django_db
def test_bad_corrections_are_refused(acme):
    invoice = paid(draft(acme, "49.00"))
    for lines in ({1: Decimal("49.01")}, {1: Decimal("0")}, {1: Decimal("1.001")}, {7: Decimal("1")}):
        with pytest.raises(InvalidRequest):
            credit_note_issue(invoice_id=invoice.pk, lines=lines, reason="x", actor="a")
    with pytest.raises(InvalidRequest):
        credit_note_issue(invoice_id=invoice.pk, reason=" ", actor="a")
    with pytest.raises(Conflict):
        credit_note_issue(invoice_id=draft(acme).pk, reason="a draft is edited, not corrected", actor="a")
    unpaid = invoice_finalize(invoice_id=draft(acme).pk)
    with pytest.raises(Conflict):
        credit_note_issue(invoice_id=unpaid.pk, reason="an unpaid invoice is voided instead", actor="a")
    assert not CreditNote.objects.exists()


@pytest.mark.django_db
def test_credit_notes_are_append_only(acme):
    invoice = paid(draft(acme, "49.00"))
    note = credit_note_issue(invoice_id=invoice.pk, reason="outage", actor="a")
    for sql in (
        "UPDATE invoicing_creditnote SET total = 1 WHERE id = %s",
        "DELETE FROM invoicing_creditnote WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(sql, [note.pk])


@pytest.mark.django_db(transaction=True)
def test_racing_full_corrections_credit_once(acme):
    invoice = paid(draft(acme, "49.00"))
    issued, refused = race(lambda: credit_note_issue(invoice_id=invoice.pk, reason="double click", actor="a"), 6)
    assert len(issued) == 1
    assert [type(e) for e in refused] == [Conflict] * 5  # nothing left
    assert credit_balance(tenant=acme, currency="USD") == Decimal("49.00")
