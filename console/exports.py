"""CSV exports for accountants: invoices, credit notes, refunds and the credit ledger over
a range of days. Each lists exactly the records its overview figure adds up
(console/selectors.py), so a column's sum per currency is that figure for the range.

Rows are streamed: the query is read with a server-side cursor (`.iterator()`), a chunk
at a time, and each row is written as it comes, so an export of any size never holds
more than a chunk in memory. Amounts are plain numbers at the currency's precision
(49.00, 75000; no thousands separators: spreadsheets read them as numbers); instants are
ISO 8601 in UTC. A text field that a spreadsheet would take for a formula (=, +, -, @,
tab, carriage return first) is prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from billing_project.money import exponent, format_decimal

from . import selectors

CHUNK = 2000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: object) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


text_cell = _text  # a spreadsheet never runs what a cell holds (other CSVs of the console use it)


def _amount(value: Decimal | None, currency: str) -> str:
    return "" if value is None else format_decimal(value, exponent(currency))


def _instant(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Export:
    name: str
    label: str
    amount_column: str  # the column whose sum per currency is the figure
    header: Sequence[str]
    rows: Callable[[datetime, datetime], QuerySet[Any]]
    row: Callable[[Any], list[str]]


def _invoices(start: datetime, end: datetime) -> QuerySet[Any]:
    return (
        selectors.invoices_finalized(start=start, end=end)
        .select_related("tenant")
        .only(
            "number", "status", "currency", "subtotal", "tax", "credit_applied", "total", "period_start",
            "period_end", "finalized_at", "due_at", "paid_at", "voided_at", "uncollectible_at",
            "stripe_invoice_id", "tenant__external_id", "tenant__name",
        )
        .order_by("finalized_at", "pk")
    )  # fmt: skip


def _invoice_row(i: Any) -> list[str]:
    c = i.currency
    return [
        i.number,
        _instant(i.finalized_at),
        _text(i.tenant.external_id),
        _text(i.tenant.name),
        i.status,
        c,
        _amount(i.subtotal, c),
        _amount(i.tax, c),
        _amount(i.credit_applied, c),
        _amount(i.total, c),
        _instant(i.period_start),
        _instant(i.period_end),
        _instant(i.due_at),
        _instant(i.paid_at),
        _instant(i.voided_at),
        _instant(i.uncollectible_at),
        i.stripe_invoice_id or "",
    ]


def _credit_notes(start: datetime, end: datetime) -> QuerySet[Any]:
    return (
        selectors.credit_notes_issued(start=start, end=end)
        .select_related("tenant", "invoice")
        .only("number", "currency", "total", "settlement", "reason", "actor", "created_at",
              "invoice__number", "tenant__external_id", "tenant__name")
        .order_by("created_at", "pk")
    )  # fmt: skip


def _credit_note_row(n: Any) -> list[str]:
    return [
        n.number,
        _instant(n.created_at),
        n.invoice.number or "",
        _text(n.tenant.external_id),
        _text(n.tenant.name),
        n.currency,
        _amount(n.total, n.currency),
        n.settlement,
        _text(n.reason),
        _text(n.actor),
    ]


def _refunds(start: datetime, end: datetime) -> QuerySet[Any]:
    return (
        selectors.refunds_succeeded(start=start, end=end)
        .select_related("tenant", "invoice", "credit_note")
        .only("amount", "currency", "status", "reason", "requested_by", "stripe_refund_id", "method",
              "payout_reference", "created_at",
              "succeeded_at", "invoice__number", "credit_note__number", "tenant__external_id", "tenant__name")
        .order_by("succeeded_at", "pk")
    )  # fmt: skip


def _refund_row(r: Any) -> list[str]:
    return [
        str(r.pk),
        _instant(r.succeeded_at),
        _instant(r.created_at),
        r.invoice.number or "",
        r.credit_note.number if r.credit_note else "",
        _text(r.tenant.external_id),
        _text(r.tenant.name),
        r.currency,
        _amount(r.amount, r.currency),
        r.status,
        _text(r.reason),
        _text(r.requested_by),
        r.method,
        _text(r.payout_reference),
        r.stripe_refund_id,
    ]


def _ledger(start: datetime, end: datetime) -> QuerySet[Any]:
    return (
        selectors.ledger_entries(start=start, end=end)
        .select_related("tenant", "invoice")
        .only("kind", "currency", "amount", "reason", "actor", "created_at", "expires_at", "expired_grant_id",
              "invoice__number", "tenant__external_id", "tenant__name")
        .order_by("created_at", "pk")
    )  # fmt: skip


def _ledger_row(e: Any) -> list[str]:
    return [
        str(e.pk),
        _instant(e.created_at),
        _text(e.tenant.external_id),
        _text(e.tenant.name),
        e.kind,
        e.currency,
        _amount(e.amount, e.currency),
        (e.invoice.number or "") if e.invoice else "",
        _text(e.reason),
        _text(e.actor),
        _instant(e.expires_at),
        str(e.expired_grant_id or ""),
    ]


EXPORTS: dict[str, Export] = {
    export.name: export
    for export in (
        Export(
            "invoices",
            "Invoices finalized (totals: invoiced)",
            "total",
            ["number", "finalized_at", "tenant", "tenant_name", "status", "currency", "subtotal", "tax",
             "credit_applied", "total", "period_start", "period_end", "due_at", "paid_at", "voided_at",
             "uncollectible_at", "stripe_invoice"],
            _invoices,
            _invoice_row,
        ),
        Export(
            "credit-notes",
            "Credit notes issued",
            "total",
            ["number", "issued_at", "invoice", "tenant", "tenant_name", "currency", "total", "settlement",
             "reason", "actor"],
            _credit_notes,
            _credit_note_row,
        ),
        Export(
            "refunds",
            "Refunds succeeded (money returned)",
            "amount",
            ["refund", "succeeded_at", "requested_at", "invoice", "credit_note", "tenant", "tenant_name",
             "currency", "amount", "status", "reason", "requested_by", "method", "payout_reference", "stripe_refund"],
            _refunds,
            _refund_row,
        ),
        Export(
            "credit-ledger",
            "Credit ledger entries (grants +, applications −, reversals +, expiries −)",
            "amount",
            ["entry", "created_at", "tenant", "tenant_name", "kind", "currency", "amount", "invoice", "reason",
             "actor", "expires_at", "expired_grant"],
            _ledger,
            _ledger_row,
        ),
    )
}  # fmt: skip


class _Echo:
    """The file csv.writer writes to: hands each written line back instead of keeping it."""

    def write(self, value: str) -> str:
        return value


def export_rows(*, name: str, start: datetime, end: datetime, chunk_size: int = CHUNK) -> Iterator[str]:
    """The CSV of export `name` over [start, end), line by line: the header, then one line per
    record, read from the database `chunk_size` rows at a time."""
    export = EXPORTS[name]
    writer = csv.writer(_Echo())
    yield writer.writerow(export.header)
    for record in export.rows(start, end).iterator(chunk_size=chunk_size):
        yield writer.writerow(export.row(record))
