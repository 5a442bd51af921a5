"""How long an invoice keeps its buyer after the tenant's erasure: the seller's country's
retention period for invoices (settings.PRIVACY_RETENTION_YEARS, README "Privacy and
compliance" has the sources), counted from the end of the calendar year the invoice was
issued in, as those laws count it. A country not configured keeps the longest period."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings


def retention_years(country: str | None = None) -> int:
    table: dict[str, int] = settings.PRIVACY_RETENTION_YEARS
    code = (country or settings.INVOICE_SELLER_COUNTRY or "").upper()
    return table.get(code, max(table.values()))


def retention_end(issued_at: datetime, country: str | None = None) -> datetime:
    """The first instant an invoice issued at `issued_at` need no longer name its buyer."""
    return datetime(issued_at.astimezone(UTC).year + retention_years(country) + 1, 1, 1, tzinfo=UTC)
