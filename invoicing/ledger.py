"""Gapless invoice numbers and the credit ledger: the two running totals of invoicing.

Both serialise on a locked row inside the caller's transaction, so a rollback gives
back what it took: a number, or an application of credit.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import Sum

from billing_project.errors import InvalidRequest
from billing_project.money import CurrencyMismatch, Money, normalize_currency, round_line
from subscriptions.locks import tenant_select_for_update
from subscriptions.models import Tenant

from .models import CreditEntry, Invoice, InvoiceSequence


def next_invoice_number(*, series: str, year: int) -> str:
    """The next number of a series and year, e.g. INV-2026-000123. Call it inside the
    finalizing transaction: the sequence row stays locked until that transaction ends,
    so numbers are handed out in commit order and a rollback leaves no hole."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("invoice numbers are assigned inside the finalizing transaction")
    InvoiceSequence.objects.get_or_create(series=series, year=year)  # a concurrent create hits the unique key
    sequence = InvoiceSequence.objects.select_for_update().get(series=series, year=year)
    sequence.last_number += 1
    sequence.save(update_fields=["last_number"])
    return f"{series}-{year}-{sequence.last_number:06d}"


def _in_invoice_currency(invoice: Invoice, amount: Money) -> Decimal:
    if amount.currency != invoice.currency:
        raise CurrencyMismatch(f"{amount} against invoice {invoice.pk} in {invoice.currency}")
    return amount.amount


def _entry(invoice: Invoice, kind: str, amount: Money, reason: str, actor: str) -> CreditEntry:
    return CreditEntry.objects.create(
        tenant_id=invoice.tenant_id,
        currency=invoice.currency,
        kind=kind,
        amount=_in_invoice_currency(invoice, amount),
        invoice=invoice,
        reason=reason,
        actor=actor,
    )


def credit_from_invoice(*, invoice: Invoice, amount: Money, reason: str, actor: str) -> CreditEntry:
    """Credit an invoice gives the tenant: proration beyond its charges, or a credit note.
    Inside the caller's transaction, which holds the tenant row lock."""
    return _entry(invoice, CreditEntry.Kind.GRANT, amount, reason, actor)


def credit_balance(*, tenant: Tenant, currency: str) -> Decimal:
    """The sum of the tenant's ledger entries in `currency`."""
    total = CreditEntry.objects.filter(tenant=tenant, currency=currency).aggregate(s=Sum("amount"))["s"]
    return total or Decimal(0)


def credit_balances(*, tenant: Tenant) -> dict[str, Decimal]:
    rows = CreditEntry.objects.filter(tenant=tenant).values("currency").annotate(s=Sum("amount"))
    return {row["currency"]: row["s"] for row in rows}


@transaction.atomic
def credit_grant(*, tenant: Tenant, amount: Money, reason: str, actor: str) -> CreditEntry:
    """Give a tenant credit, used by its next invoices in that currency."""
    currency = normalize_currency(amount.currency)
    if amount.amount <= 0 or round_line(amount.amount, currency) != amount.amount:
        raise InvalidRequest(
            "Credit is a positive amount in whole minor units.", code="invalid_amount", details={"amount": str(amount)}
        )
    if not reason.strip():
        raise InvalidRequest("Say why the credit is granted.", code="validation_error")
    tenant_select_for_update(tenant_id=tenant.pk)  # serialises with applications
    return CreditEntry.objects.create(
        tenant=tenant, currency=currency, kind=CreditEntry.Kind.GRANT, amount=amount.amount, reason=reason, actor=actor
    )


def credit_apply(*, invoice: Invoice, up_to: Money, actor: str) -> Money:
    """Apply the tenant's credit in the invoice's currency to an invoice being finalized,
    at most `up_to` (in that currency, or CurrencyMismatch); returns what was applied.
    The tenant row lock makes concurrent applications see each other, so the balance
    never goes negative."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("credit is applied inside the finalizing transaction")
    limit = _in_invoice_currency(invoice, up_to)
    tenant_select_for_update(tenant_id=invoice.tenant_id)
    available = credit_balance(tenant=invoice.tenant, currency=invoice.currency)
    applied = Money(min(available, limit), invoice.currency)
    if applied.amount <= 0:
        return Money(Decimal(0), invoice.currency)
    _entry(invoice, CreditEntry.Kind.APPLICATION, -applied, f"applied to invoice {invoice.pk}", actor)
    return applied


def credit_restore(*, invoice: Invoice, actor: str) -> Decimal:
    """Give back the credit a voided invoice used (a reversal entry, never an edit)."""
    kinds = (CreditEntry.Kind.APPLICATION, CreditEntry.Kind.REVERSAL)
    used = -(CreditEntry.objects.filter(invoice=invoice, kind__in=kinds).aggregate(s=Sum("amount"))["s"] or Decimal(0))
    if used <= 0:
        return Decimal(0)
    tenant_select_for_update(tenant_id=invoice.tenant_id)
    _entry(invoice, CreditEntry.Kind.REVERSAL, Money(used, invoice.currency), f"invoice {invoice.number} voided", actor)
    return used
