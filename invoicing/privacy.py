"""What invoicing holds about a tenant, for its data export (privacy/export.py): invoices
as the API gives them (buyer and seller as printed), credit notes, payments, refunds and
the credit ledger."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import connection, transaction

from billing_project.money import Money, money_display
from subscriptions.models import Tenant

from .documents import invoice_document
from .drafting import charges_of
from .models import CreditEntry, CreditNote, Invoice, Refund
from .pdf import documents_rerender_after_buyer_erasure
from .selectors import DOCUMENT_RELATIONS


def _money(amount: Any, currency: str) -> dict[str, str]:
    return {"amount": str(amount), "currency": currency, "display": money_display(amount, currency)}


def invoices_export(tenant: Tenant) -> Iterator[dict[str, Any]]:
    finalized = Invoice.objects.filter(tenant=tenant).exclude(status=Invoice.Status.DRAFT)
    documents = finalized.select_related("tenant").prefetch_related(*DOCUMENT_RELATIONS)
    for invoice in documents.order_by("finalized_at", "id").iterator(chunk_size=100):
        yield invoice_document(invoice)  # its lines and notes fetched per chunk, not per invoice


def credit_notes_export(tenant: Tenant) -> Iterator[dict[str, Any]]:
    notes = CreditNote.objects.filter(tenant=tenant).select_related("invoice").order_by("id")
    for note in notes.iterator(chunk_size=500):
        yield {
            "number": note.number,
            "invoice": note.invoice.number,
            "total": _money(note.total, note.currency),
            "settlement": note.settlement,
            "reason": note.reason,
            "actor": note.actor,
            "created_at": note.created_at,
        }


def payments_export(tenant: Tenant) -> Iterator[dict[str, Any]]:
    """A payment is an invoice's settlement: through Stripe (its reference) or by transfer
    marked paid by staff."""
    paid = Invoice.objects.filter(tenant=tenant, paid_at__isnull=False).order_by("paid_at", "id")
    for invoice in paid.iterator(chunk_size=500):
        yield {
            "invoice": invoice.number,
            "amount": _money(invoice.total, invoice.currency),
            "paid_at": invoice.paid_at,
            "through": "stripe" if invoice.stripe_invoice_id else "outside stripe",
            "stripe_reference": invoice.stripe_invoice_id or None,
        }


def refunds_export(tenant: Tenant) -> Iterator[dict[str, Any]]:
    for refund in (
        Refund.objects.filter(tenant=tenant).select_related("invoice").order_by("id").iterator(chunk_size=500)
    ):
        yield {
            "id": refund.pk,
            "invoice": refund.invoice.number,
            "amount": _money(refund.amount, refund.currency),
            "status": refund.status,
            "method": refund.method,
            "reason": refund.reason,
            "requested_by": refund.requested_by,
            "payout_reference": refund.payout_reference,
            "stripe_refund_id": refund.stripe_refund_id,
            "created_at": refund.created_at,
            "succeeded_at": refund.succeeded_at,
            "failed_at": refund.failed_at,
        }


def credit_ledger_export(tenant: Tenant) -> Iterator[dict[str, Any]]:
    entries = CreditEntry.objects.filter(tenant=tenant).select_related("invoice").order_by("id")
    for entry in entries.iterator(chunk_size=1000):
        yield {
            "id": entry.pk,
            "kind": entry.kind,
            "amount": _money(entry.amount, entry.currency),
            "invoice": entry.invoice.number if entry.invoice else None,
            "reason": entry.reason,
            "actor": entry.actor,
            "expires_at": entry.expires_at,
            "created_at": entry.created_at,
        }


# ---------------------------------------------------------------- erasure
def open_balance(tenant: Tenant) -> list[tuple[Invoice, Money]]:
    """What the tenant owes, invoice by invoice: finalized invoices awaiting payment (their
    total), and drafts that charge something (waiting for Stripe Tax: their charges). Paid,
    void and uncollectible (written off) owe nothing."""
    owed = Invoice.objects.filter(tenant=tenant, status=Invoice.Status.OPEN, total__gt=0).order_by("finalized_at", "id")
    drafts = [(i, charges_of(i)) for i in Invoice.objects.filter(tenant=tenant, status=Invoice.Status.DRAFT)]
    return [*((i, Money(i.total, i.currency)) for i in owed), *((i, c) for i, c in drafts if c.amount > 0)]


def erased_buyer(buyer: dict[str, Any]) -> dict[str, Any]:
    """A buyer as printed, once its retention has ended: the account reference and country
    (not a person: the platform's id, where the tax was due), marked erased. The invoice
    guard (migration 0014) allows a finalized invoice exactly this one change."""
    kept = {key: buyer[key] for key in ("reference", "country") if buyer.get(key)}
    return {**kept, "erased": True}


def buyers_erase(invoice_ids: list[int]) -> int:
    """Pseudonymise the buyer printed on these finalized invoices (their retention ended);
    how many changed. Totals, lines, numbers and dates stay as they were."""
    changed = 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL billing.buyer_erasure = 'on'")
        invoices = Invoice.objects.select_for_update().filter(pk__in=invoice_ids).exclude(status=Invoice.Status.DRAFT)
        for invoice in invoices.order_by("id"):
            if invoice.buyer.get("erased"):
                continue
            invoice.buyer = erased_buyer(invoice.buyer)
            invoice.save(update_fields=["buyer"])
            documents_rerender_after_buyer_erasure(invoice)  # the PDFs lose it too
            changed += 1
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL billing.buyer_erasure = 'off'")
    return changed
