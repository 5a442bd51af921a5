"""The invoice status transition table (invoicing.collection.TRANSITIONS) is the database
guard's: every move the table allows the trigger allows, and every move it refuses the
trigger refuses, checked pair by pair below the ORM."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from invoicing.collection import TRANSITIONS, can_move
from invoicing.models import Invoice
from invoicing.services import invoice_finalize, invoice_mark_paid, invoice_mark_uncollectible, invoice_void
from tests.invoicing.test_invariants import acme as acme  # noqa: PLC0414 - the fixture
from tests.invoicing.test_invariants import draft

pytestmark = [pytest.mark.django_db]
STATUSES = [s.value for s in Invoice.Status]


def in_state(tenant, status: str) -> Invoice:
    invoice: Invoice = draft(tenant)
    if status == "draft":
        return invoice
    invoice = invoice_finalize(invoice_id=invoice.pk)
    if status == "paid":
        return invoice_mark_paid(invoice_id=invoice.pk)
    if status == "void":
        return invoice_void(invoice_id=invoice.pk, reason="test", actor="t")
    if status == "uncollectible":
        return invoice_mark_uncollectible(invoice_id=invoice.pk, actor="t")
    return invoice


def guard_allows(invoice: Invoice, to: str) -> bool:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE invoicing_invoice SET status = %s WHERE id = %s", [to, invoice.pk])
    except DatabaseError:
        return False
    return True


def test_the_table_names_every_status():
    assert set(TRANSITIONS) == set(STATUSES)
    assert all(targets <= set(STATUSES) for targets in TRANSITIONS.values())


@pytest.mark.parametrize("start", ["open", "paid", "void", "uncollectible"])
def test_collection_moves_are_the_guards(acme, start):
    for to in STATUSES:
        if to == start:
            continue
        invoice = in_state(acme, start)
        assert invoice.status == start
        assert guard_allows(invoice, to) == can_move(start, to), f"{start} → {to}"


def test_a_draft_becomes_final_only_as_open_or_paid(acme):
    """The guard lets a draft go only to open or paid (with the number its sequence just
    handed out, which finalization alone has), as the table says."""
    assert TRANSITIONS["draft"] == {"open", "paid"}
    for to in ("void", "uncollectible", "open"):  # open without its number: refused too
        assert not guard_allows(in_state(acme, "draft"), to)
    assert invoice_finalize(invoice_id=in_state(acme, "draft").pk).status == "open"
