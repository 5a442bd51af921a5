"""Corrections of finalized invoices: credit notes, never edits.

A credit note has its own gapless series (CN-2026-000001), is append-only, and gives
the credited amount to the tenant's credit balance, in the invoice's currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing_project.errors import Conflict, InvalidRequest
from billing_project.money import Money, round_line
from billing_project.text import a_status
from subscriptions.locks import tenant_select_for_update

from .ledger import credit_from_invoice, next_invoice_number
from .models import CreditNote, CreditNoteLine, Invoice, InvoiceLine, Refund
from .pdf import credit_note_document_issue

CREDITABLE = (
    InvoiceLine.Kind.BASE_FEE,
    InvoiceLine.Kind.USAGE,
    InvoiceLine.Kind.PRORATION,
    InvoiceLine.Kind.LATE_USAGE,
    InvoiceLine.Kind.TAX,
)


@dataclass(frozen=True)
class CreditRoom:
    """What is left to credit on a paid invoice: in all (its subtotal and tax, negative lines
    counted, less every credit note so far) and per charge line, by position."""

    total: Decimal
    lines: dict[int, tuple[InvoiceLine, Decimal]]


def credit_room(*, invoice: Invoice) -> CreditRoom:
    """Read under the invoice's lock (the caller's): credit notes of the invoice serialise on it."""
    credited = dict(
        CreditNoteLine.objects.filter(invoice_line__invoice=invoice)
        .values("invoice_line_id")
        .annotate(s=Sum("amount"))
        .values_list("invoice_line_id", "s")
    )
    lines = {
        x.position: (x, x.amount - credited.get(x.pk, Decimal(0)))
        for x in invoice.lines.filter(kind__in=CREDITABLE, amount__gt=0).order_by("position")
    }
    return CreditRoom(total=invoice.subtotal + invoice.tax - sum(credited.values(), Decimal(0)), lines=lines)


def refunds_in_flight(*, invoice: Invoice) -> Decimal:
    """Refunds of the invoice not settled yet (requested, awaiting approval, submitted): each
    will need a credit note of its amount once Stripe confirms it."""
    pending = (Refund.Status.REQUESTED, Refund.Status.AWAITING_APPROVAL, Refund.Status.SUBMITTED)
    total = invoice.refunds.filter(status__in=pending).aggregate(s=Sum("amount"))["s"]
    return total or Decimal(0)


@transaction.atomic
def credit_note_issue(
    *,
    invoice_id: int,
    reason: str,
    actor: str,
    lines: dict[int, Decimal] | None = None,
    settlement: str = CreditNote.Settlement.CREDIT,
    now: datetime | None = None,
) -> CreditNote:
    """Correct a paid invoice with a credit note: `lines` maps a line's position to the
    amount credited on it (all that is left when omitted). Settled as credit (the default),
    the amount goes to the tenant's credit balance; settled by refund (invoicing.refunds,
    once Stripe returned the money), no credit is granted. Neither a line nor the invoice is
    ever credited beyond what it charged (its subtotal and tax: negative lines such as
    proration count), however many notes and however concurrent (the invoice row lock
    serialises them); a credit note also leaves room for the refunds still in flight, whose
    own notes come when Stripe confirms them. An unpaid invoice is voided instead, so a note
    never gives credit for money that was not paid."""
    now = now or timezone.now()
    if not reason.strip():
        raise InvalidRequest("Say why the invoice is corrected.", code="validation_error")
    if settlement not in CreditNote.Settlement.values:
        raise InvalidRequest(f"Unknown settlement {settlement!r}.", code="validation_error")
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)  # then the tenant: the order of voiding
    if invoice.status != Invoice.Status.PAID:
        raise Conflict(
            f"{a_status(invoice.status)} invoice takes no credit note (an unpaid one is voided).",
            code="invoice_not_creditable",
        )
    tenant_select_for_update(tenant_id=invoice.tenant_id)
    room = credit_room(invoice=invoice)
    charge_lines = {pos: line for pos, (line, _) in room.lines.items()}
    credited = {line.pk: line.amount - left for line, left in room.lines.values()}
    # what the invoice charged in all (negative lines included) less what notes gave back,
    # less what refunds in flight will take (a refund's own note is that reservation)
    invoice_left = room.total
    if settlement == CreditNote.Settlement.CREDIT:
        invoice_left -= refunds_in_flight(invoice=invoice)
    if lines is not None:
        wanted = lines
    else:  # everything left, line by line, until the invoice's own limit
        wanted, budget = {}, invoice_left
        for pos, x in sorted(charge_lines.items()):
            take = min(x.amount - credited.get(x.pk, Decimal(0)), budget)
            wanted[pos], budget = take, budget - max(take, Decimal(0))
    note_lines = []
    for position, amount in sorted(wanted.items()):
        line = charge_lines.get(position)
        if line is None:
            raise InvalidRequest(f"Line {position} is not a charge of {invoice.number}.", code="validation_error")
        left = line.amount - credited.get(line.pk, Decimal(0))
        if amount <= 0 and lines is None:
            continue
        if amount <= 0 or amount > left or round_line(amount, invoice.currency) != amount:
            raise InvalidRequest(
                f"Line {position} can be credited up to {left} {invoice.currency}, in whole minor units.",
                code="invalid_amount",
                details={"line": position, "amount": str(amount), "creditable": str(left)},
            )
        note_lines.append((line, amount))
    if not note_lines:
        raise Conflict(f"{invoice.number} has nothing left to credit.", code="invoice_not_creditable")
    total = sum((amount for _, amount in note_lines), Decimal(0))
    if total > invoice_left:
        raise InvalidRequest(
            f"{invoice.number} can be credited up to {invoice_left} {invoice.currency} in all.",
            code="invalid_amount",
            details={"amount": str(total), "creditable": str(invoice_left)},
        )
    note = CreditNote.objects.create(
        invoice=invoice,
        tenant_id=invoice.tenant_id,
        number=next_invoice_number(series=settings.CREDIT_NOTE_SERIES, year=now.year),
        currency=invoice.currency,
        total=total,
        settlement=settlement,
        reason=reason.strip(),
        actor=actor,
    )
    CreditNoteLine.objects.bulk_create(
        [
            CreditNoteLine(credit_note=note, invoice_line=line, description=line.description, amount=amount)
            for line, amount in note_lines
        ]
    )
    credit_note_document_issue(note)  # its PDF, once
    if settlement == CreditNote.Settlement.CREDIT:  # a refund's note: the money went back in cash
        credit_from_invoice(
            invoice=invoice,
            amount=Money(total, invoice.currency),
            reason=f"credit note {note.number}: {note.reason}",
            actor=actor,
        )
    return note
