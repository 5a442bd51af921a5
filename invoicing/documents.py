"""An invoice as the API and the printed document show it."""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string

from billing_project.money import exponent, format_decimal

from .models import Invoice, InvoiceLine


def _money(value: Any, currency: str) -> str:
    return format_decimal(value, exponent(currency))


def line_document(line: InvoiceLine, currency: str) -> dict[str, Any]:
    return {
        "position": line.position,
        "kind": line.kind,
        "description": line.description,
        "metric": line.metric or None,
        "quantity": format_decimal(line.quantity) if line.quantity is not None else None,
        "amount": _money(line.amount, currency),
        "period_start": line.period_start,
        "period_end": line.period_end,
        "explanation": line.explanation or None,
    }


def invoice_summary(invoice: Invoice) -> dict[str, Any]:
    return {
        "number": invoice.number,
        "status": invoice.status,
        "currency": invoice.currency,
        "total": _money(invoice.total, invoice.currency),
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "finalized_at": invoice.finalized_at,
        "due_at": invoice.due_at,
        "paid_at": invoice.paid_at,
    }


def invoice_document(invoice: Invoice) -> dict[str, Any]:
    currency = invoice.currency
    return {
        **invoice_summary(invoice),
        "tenant": invoice.tenant.external_id,
        "seller": invoice.seller,
        "buyer": invoice.buyer,
        "subtotal": _money(invoice.subtotal, currency),
        "tax": _money(invoice.tax, currency),
        "tax_status": invoice.tax_status,
        "credit_applied": _money(invoice.credit_applied, currency),
        "voided_at": invoice.voided_at,
        "stripe_reference": invoice.stripe_number or invoice.stripe_invoice_id or None,
        "lines": [line_document(line, currency) for line in invoice.lines.order_by("position")],
        "credit_notes": [
            {
                "number": note.number,
                "total": _money(note.total, currency),
                "reason": note.reason,
                "created_at": note.created_at,
                "lines": [
                    {
                        "position": x.invoice_line.position,
                        "description": x.description,
                        "amount": _money(x.amount, currency),
                    }
                    for x in note.lines.select_related("invoice_line")
                ],
            }
            for note in invoice.credit_notes.all()
        ],
    }


def invoice_html(invoice: Invoice) -> str:
    """The printable invoice, or the receipt once it is paid."""
    return render_to_string(
        "invoicing/invoice.html",
        {"invoice": invoice, "doc": invoice_document(invoice), "receipt": invoice.status == Invoice.Status.PAID},
    )
