"""Gapless invoice numbers and the credit ledger: the two running totals of invoicing.

Both serialise on a locked row inside the caller's transaction, so a rollback gives
back what it took: a number, or an application of credit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

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


_NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass
class CreditLot:
    """What is left of one grant (or of credit given back by a voided invoice)."""

    entry_id: int
    expires_at: datetime | None
    remaining: Decimal

    def use_order(self) -> tuple[bool, datetime, int]:
        # The credit that expires first is used first; credit that never expires, last.
        return (self.expires_at is None, self.expires_at or _NEVER, self.entry_id)


@dataclass
class _Use:
    lot: CreditLot
    amount: Decimal


def credit_lots(*, tenant_id: int, currency: str) -> list[CreditLot]:
    """The tenant's credit in `currency`, lot by lot, replayed from the ledger in the order it
    was written (under the tenant lock, so ids are that order): an application takes from the
    lots by use_order, a reversal gives back to the lots its invoice took from, an expiry
    empties its grant. The ledger holds amounts only; which lot paid for what is this replay,
    the same every time."""
    lots: dict[int, CreditLot] = {}
    taken: dict[int, list[_Use]] = defaultdict(list)  # what each invoice used, lot by lot
    entries = (
        CreditEntry.objects.filter(tenant_id=tenant_id, currency=currency)
        .order_by("id")
        .values_list("id", "kind", "amount", "invoice_id", "expires_at", "expired_grant_id")
    )
    K = CreditEntry.Kind
    for entry_id, kind, amount, invoice_id, expires_at, expired_grant_id in entries.iterator():
        if kind == K.GRANT:
            lots[entry_id] = CreditLot(entry_id, expires_at, amount)
        elif kind == K.APPLICATION:
            need = -amount
            for lot in sorted((lot for lot in lots.values() if lot.remaining > 0), key=CreditLot.use_order):
                if need <= 0:
                    break
                part = min(lot.remaining, need)
                lot.remaining -= part
                need -= part
                taken[invoice_id].append(_Use(lot, part))
        elif kind == K.REVERSAL:
            back = amount
            for use in reversed(taken[invoice_id]):
                given = min(use.amount, back)
                use.lot.remaining += given
                use.amount -= given
                back -= given
            if back > 0:  # more given back than the replay saw taken: credit that never expires
                lots[entry_id] = CreditLot(entry_id, None, back)
        elif kind == K.EXPIRY and expired_grant_id in lots:
            lots[expired_grant_id].remaining += amount
    return sorted((lot for lot in lots.values() if lot.remaining > 0), key=CreditLot.use_order)


def _expired_unwritten(tenant_id: int, currency: str, at: datetime) -> Decimal:
    """Credit past its expiry that the beat job has not written off yet."""
    if not CreditEntry.objects.filter(
        tenant_id=tenant_id, currency=currency, kind=CreditEntry.Kind.GRANT, expires_at__lte=at
    ).exists():
        return Decimal(0)
    lots = credit_lots(tenant_id=tenant_id, currency=currency)
    return sum((lot.remaining for lot in lots if lot.expires_at is not None and lot.expires_at <= at), Decimal(0))


def credit_balance(*, tenant: Tenant, currency: str, at: datetime | None = None) -> Decimal:
    """The tenant's credit in `currency` that can be used at `at` (now): the ledger's sum,
    less what has expired and not been written off yet."""
    total = CreditEntry.objects.filter(tenant=tenant, currency=currency).aggregate(s=Sum("amount"))["s"]
    return (total or Decimal(0)) - _expired_unwritten(tenant.pk, currency, at or timezone.now())


def credit_balances(*, tenant: Tenant, at: datetime | None = None) -> dict[str, Decimal]:
    rows = CreditEntry.objects.filter(tenant=tenant).values("currency").annotate(s=Sum("amount"))
    at = at or timezone.now()
    return {row["currency"]: row["s"] - _expired_unwritten(tenant.pk, row["currency"], at) for row in rows}


@transaction.atomic
def credit_grant(
    *, tenant: Tenant, amount: Money, reason: str, actor: str, expires_at: datetime | None = None
) -> CreditEntry:
    """Give a tenant credit, used by its next invoices in that currency; with `expires_at`,
    what is unused then expires (and this credit is used before credit that expires later)."""
    currency = normalize_currency(amount.currency)
    if amount.amount <= 0 or round_line(amount.amount, currency) != amount.amount:
        raise InvalidRequest(
            "Credit is a positive amount in whole minor units.", code="invalid_amount", details={"amount": str(amount)}
        )
    if not reason.strip():
        raise InvalidRequest("Say why the credit is granted.", code="validation_error")
    if expires_at is not None and (timezone.is_naive(expires_at) or expires_at <= timezone.now()):
        raise InvalidRequest(
            "A credit's expiry is an instant with its time zone, in the future.",
            code="validation_error",
            details={"expires_at": expires_at.isoformat()},
        )
    tenant_select_for_update(tenant_id=tenant.pk)  # serialises with applications
    return CreditEntry.objects.create(
        tenant=tenant,
        currency=currency,
        kind=CreditEntry.Kind.GRANT,
        amount=amount.amount,
        reason=reason,
        actor=actor,
        expires_at=expires_at,
    )


def credit_expire(*, tenant_id: int, currency: str, now: datetime, actor: str) -> list[CreditEntry]:
    """Write off what is left of the tenant's grants in `currency` past their expiry, an
    expiry entry each, and return them. Inside the caller's transaction, under the tenant
    lock: an application in flight either used the credit first or finds it gone."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("credit is expired inside a transaction that holds the tenant lock")
    tenant_select_for_update(tenant_id=tenant_id)
    return [
        CreditEntry.objects.create(
            tenant_id=tenant_id,
            currency=currency,
            kind=CreditEntry.Kind.EXPIRY,
            amount=-lot.remaining,
            expired_grant_id=lot.entry_id,
            reason=f"unused credit of grant {lot.entry_id} expired at {lot.expires_at.isoformat()}",
            actor=actor,
        )
        for lot in credit_lots(tenant_id=tenant_id, currency=currency)
        if lot.expires_at is not None and lot.expires_at <= now
    ]


# How far back the beat job looks for grants that expired. Once a run has written a grant
# off, nothing revives it but a voided invoice, and credit_restore writes that off itself;
# the window only has to outlast a beat outage (and balances never count expired credit).
EXPIRY_LOOKBACK = timedelta(days=30)


def credits_expire_due(*, now: datetime) -> int:
    """The beat job: every tenant and currency with a grant that expired in the lookback
    window, written off each in its own transaction. Returns how many entries were written."""
    candidates = list(
        CreditEntry.objects.filter(
            kind=CreditEntry.Kind.GRANT, expires_at__lte=now, expires_at__gt=now - EXPIRY_LOOKBACK
        )
        .values_list("tenant_id", "currency")
        .distinct()
        .order_by("tenant_id", "currency")
    )
    written = 0
    for tenant_id, currency in candidates:
        with transaction.atomic():
            written += len(credit_expire(tenant_id=tenant_id, currency=currency, now=now, actor="system:credit-expiry"))
    return written


def credit_apply(*, invoice: Invoice, up_to: Money, actor: str) -> Money:
    """Apply the tenant's credit in the invoice's currency to an invoice being finalized,
    at most `up_to` (in that currency, or CurrencyMismatch); returns what was applied.
    The tenant row lock makes concurrent applications see each other, so the balance
    never goes negative."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("credit is applied inside the finalizing transaction")
    limit = _in_invoice_currency(invoice, up_to)
    tenant_select_for_update(tenant_id=invoice.tenant_id)
    # Expired credit is written off first, so it is neither used nor counted.
    credit_expire(tenant_id=invoice.tenant_id, currency=invoice.currency, now=timezone.now(), actor=actor)
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
    # Given back to the grants it came from: what of it is past its expiry expires again.
    credit_expire(tenant_id=invoice.tenant_id, currency=invoice.currency, now=timezone.now(), actor=actor)
    return used
