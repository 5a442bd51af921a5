"""Start-up checks of invoicing's settings (tag `billing`; see billing_project/checks.py):
the number series, the invoicing times and the dunning schedule."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.checks import Warning as CheckWarning

from billing_project.checks import TAG, whole_number

from .models import CreditNote, Invoice, InvoiceSequence

SERIES_PATTERN = re.compile(r"[A-Z][A-Z0-9]*")
# A number is SERIES-YYYY-NNNNNN (ledger.next_invoice_number): the counter is zero-padded
# to 6 digits and may grow to the 10 of its column's largest value.
NUMBER_FIXED_PART = len("-2026-") + len(str(2**31 - 1))


def series_max_length() -> int:
    """The longest series whose numbers fit both the series and the number columns."""
    number = min(
        Invoice._meta.get_field("number").max_length or 0, CreditNote._meta.get_field("number").max_length or 0
    )
    series = InvoiceSequence._meta.get_field("series").max_length or 0
    return min(series, number - NUMBER_FIXED_PART)


@register(TAG)
def check_series(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    longest = series_max_length()
    for name in ("INVOICE_SERIES", "CREDIT_NOTE_SERIES"):
        value = getattr(settings, name, None)
        if not isinstance(value, str) or SERIES_PATTERN.fullmatch(value) is None:
            errors.append(
                Error(
                    f"{name} must be upper-case letters and digits, starting with a letter "
                    f"(it begins every number, as in INV-2026-000123); it is {value!r}.",
                    id="billing.E003",
                )
            )
        elif len(value) > longest:
            errors.append(
                Error(
                    f"{name} {value!r} has {len(value)} characters; at most {longest} leave room "
                    f"in the number column for the year and the counter.",
                    id="billing.E004",
                )
            )
    if not errors and settings.INVOICE_SERIES == settings.CREDIT_NOTE_SERIES:
        errors.append(
            Error(
                f"INVOICE_SERIES and CREDIT_NOTE_SERIES are both {settings.INVOICE_SERIES!r}: "
                "credit notes are numbered in a series of their own.",
                id="billing.E005",
            )
        )
    return errors


@register(TAG)
def check_invoicing_times(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    return [
        *whole_number("INVOICE_GRACE_MINUTES", minimum=0, check_id="billing.E006", unit="minutes"),
        *whole_number("INVOICE_DUE_DAYS", minimum=0, check_id="billing.E007", unit="days"),
        *whole_number("LATE_USAGE_WINDOW_DAYS", minimum=1, check_id="billing.E008", unit="days"),
        # the close's fan-out, the reconciliation's window, the usage partitions made ahead (a
        # chunk of 0 would close nothing)
        *whole_number("INVOICE_CLOSE_CHUNK", minimum=1, check_id="billing.E013", unit="subscriptions"),
        *whole_number("INVOICE_CLOSE_CLAIM_SECONDS", minimum=1, check_id="billing.E013", unit="seconds"),
        *whole_number("STRIPE_RECONCILIATION_DAYS", minimum=1, check_id="billing.E013", unit="days"),
        *whole_number("USAGE_PARTITIONS_AHEAD", minimum=1, check_id="billing.E013", unit="months"),
    ]


@register(TAG)
def check_dunning(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors = whole_number("DUNNING_GRACE_DAYS", minimum=1, check_id="billing.E002", unit="days")
    days = getattr(settings, "DUNNING_RETRY_DAYS", None)
    if not isinstance(days, list | tuple) or not all(isinstance(d, int) and not isinstance(d, bool) for d in days):
        return [*errors, Error(f"DUNNING_RETRY_DAYS must be a list of whole days; it is {days!r}.", id="billing.E001")]
    if any(d <= 0 for d in days) or any(b <= a for a, b in zip(days, days[1:], strict=False)):
        errors.append(
            Error(
                "DUNNING_RETRY_DAYS must be positive and strictly increasing: days after the first failed "
                f"payment, e.g. 1,3,5; it is {','.join(map(str, days))}.",
                hint="An empty list turns our own retries off.",
                id="billing.E001",
            )
        )
    elif days and not errors and days[-1] > settings.DUNNING_GRACE_DAYS:
        errors.append(
            CheckWarning(
                f"DUNNING_RETRY_DAYS retries on day {days[-1]}, after DUNNING_GRACE_DAYS "
                f"({settings.DUNNING_GRACE_DAYS}): the subscription is suspended before that retry.",
                id="billing.W001",
            )
        )
    return errors
