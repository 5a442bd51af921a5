"""An invoice as the API and the printed document show it, and as staff read it: parties
as postal addresses, amounts at the currency's precision, explanations that add up."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale
from django.template.loader import render_to_string

from billing_project.money import (
    exponent,
    format_decimal,
    money_display,
    price_display,
    quantity_display,
    round_line,
)

from .models import REVERSE_CHARGE, Invoice, InvoiceLine


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
        # .all(): the models' orderings (lines by position, notes by date, their lines by id),
        # so a caller's prefetch serves them (the privacy export reads thousands)
        "lines": [line_document(line, currency) for line in invoice.lines.all()],
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
                    for x in note.lines.all()
                ],
            }
            for note in invoice.credit_notes.all()
        ],
    }


# ------------------------------------------------------------------ as people read it
def _country(code: str) -> str:
    return str(Locale("en").territories.get(code.upper(), code)) if code else ""


def party_lines(party: Mapping[str, Any] | None) -> list[str]:
    """A seller or buyer frozen on an invoice, as a postal address: name, address lines (the
    address's own lines, or its comma-free parts as given), country, tax id, email, and our
    account reference for a buyer. Keys it does not know are left out, empty ones too."""
    party = party or {}
    address = party.get("address") or ""
    lines = party.get("lines") or [x.strip() for x in str(address).replace("\\n", "\n").splitlines()]
    out = [str(party.get("name") or ""), *map(str, lines), _country(str(party.get("country") or ""))]
    if party.get("tax_id"):
        out.append(f"Tax ID {party['tax_id']}")
    out.append(str(party.get("email") or ""))
    if party.get("reference"):
        out.append(f"Account {party['reference']}")
    return [line for line in out if line.strip()]


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None and str(value) != "" else None
    except InvalidOperation:
        return None


def _amount(value: Any, currency: str) -> str:
    """An unrounded part of a line: every digit it has, at least the currency's decimals."""
    number = _decimal(value)
    return "—" if number is None else price_display(number, currency, code=False)


def _quantity(value: Any) -> str:
    number = _decimal(value)
    return "—" if number is None else quantity_display(number)


def explanation_rows(explanation: Mapping[str, Any] | None, amount: Decimal, currency: str) -> list[str]:
    """How a line's amount was reached, in rows that add up to it: each tier as
    `quantity × unit price + flat fee = amount`, then their sum; a per-unit or package price;
    what late usage had billed already; the one rounding. Empty when the line has nothing
    to explain (a base fee, a credit)."""
    e = explanation or {}
    rows: list[str] = []
    parts: list[str] = []
    tiers = e.get("tiers") or []
    for t in tiers:
        flat = _decimal(t.get("flat_fee")) or Decimal(0)
        fee = f" + {_amount(flat, currency)}" if flat else ""
        upper = _quantity(t["to"]) if t.get("to") is not None else "∞"
        rows.append(
            f"{_quantity(t.get('from'))} – {upper}: {_quantity(t.get('quantity'))} × "
            f"{_amount(t.get('unit_price'), currency)}{fee} = {_amount(t.get('amount'), currency)}"
        )
        parts.append(_amount(t.get("amount"), currency))
    raw = _decimal(e.get("unrounded_amount"))
    if len(tiers) > 1:
        rows.append(f"sum of the tiers: {' + '.join(parts)} = {_amount(raw, currency)}")
    elif not tiers and e.get("packages") is not None:
        price = f" × {_amount(e['package_price'], currency)}" if e.get("package_price") is not None else ""
        size = (
            f"{_quantity(e.get('quantity'))} − {_quantity(e.get('free_units'))} free, "
            f"in packages of {_quantity(e['package_size'])}: "
            if e.get("package_size") is not None
            else ""
        )
        rows.append(f"{size}{_quantity(e['packages'])} packages{price} = {_amount(raw, currency)}")
    elif not tiers and e.get("unit_price") is not None and e.get("quantity") is not None:
        rows.append(f"{_quantity(e['quantity'])} × {_amount(e['unit_price'], currency)} = {_amount(raw, currency)}")
    if not rows:
        return []
    priced = raw if raw is not None else amount
    if round_line(priced, currency) != priced:
        rows.append(f"rounded to {money_display(priced, currency)}")
    billed = e.get("already_billed")
    if billed:
        on = ", ".join(x for x in billed.get("invoices") or [] if x)
        already = _decimal(billed.get("amount")) or Decimal(0)
        rows.append(
            f"less {money_display(already, currency)} already billed{f' on {on}' if on else ''}"
            f" = {money_display(amount, currency)}"
        )
    return rows


def invoice_view(invoice: Invoice) -> dict[str, Any]:
    """The invoice as its document prints it: charges, then one block of totals (subtotal,
    each tax, credit applied, and one total, due or paid), every amount at the currency's
    precision with thousands separators."""
    currency = invoice.currency
    lines = list(invoice.lines.order_by("position"))

    def show(value: Decimal) -> str:
        return money_display(value, currency, code=False)

    # Credit applied is the negative credit line; a balance carried to the ledger (a
    # positive credit line) is part of the subtotal, so it stays among the charges.
    applied_lines = [x for x in lines if x.kind == InvoiceLine.Kind.CREDIT and x.amount < 0]
    tax_lines = [x for x in lines if x.kind == InvoiceLine.Kind.TAX]
    charges = [x for x in lines if x not in applied_lines and x not in tax_lines]
    return {
        "seller": party_lines(invoice.seller),
        "buyer": party_lines(invoice.buyer),
        "lines": [
            {
                "description": x.description,
                "quantity": quantity_display(x.quantity) if x.quantity is not None else "",
                "amount": show(x.amount),
                "explanation": explanation_rows(x.explanation, x.amount, currency),
            }
            for x in charges
        ],
        "subtotal": show(invoice.subtotal),
        "taxes": [(x.description, show(x.amount)) for x in tax_lines],
        "tax": show(invoice.tax),
        "credit_applied": show(-invoice.credit_applied) if invoice.credit_applied else "",
        "total": money_display(invoice.total, currency),
        "credit_notes": [(note, money_display(note.total, currency)) for note in invoice.credit_notes.all()],
        "reverse_charge": any(x.description.startswith(REVERSE_CHARGE) for x in tax_lines),
    }


def invoice_html(invoice: Invoice) -> str:
    """The printable invoice, or the receipt once it is paid."""
    return render_to_string(
        "invoicing/invoice.html",
        {
            "invoice": invoice,
            "doc": invoice_document(invoice),
            "view": invoice_view(invoice),
            "receipt": invoice.status == Invoice.Status.PAID,
        },
    )
