"""Start-up checks of the four-eyes settings (tag `billing`; see billing_project/checks.py):
a threshold that cannot be read would let money through unapproved, or hold all of it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from billing_project.checks import TAG, whole_number

from .thresholds import BadThresholds, parse_thresholds


@register(TAG)
def check_approvals(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    raw = getattr(settings, "APPROVAL_THRESHOLDS", None)
    try:
        if not isinstance(raw, str):
            raise BadThresholds(f"APPROVAL_THRESHOLDS must be a string like 'USD:500,EUR:500'; it is {raw!r}.")
        parse_thresholds(raw)
    except BadThresholds as exc:
        errors.append(
            Error(
                str(exc),
                hint="Set APPROVAL_THRESHOLDS to CURRENCY:AMOUNT entries, e.g. USD:500,EUR:500,JPY:75000.",
                id="billing.E010",
            )
        )
    errors += whole_number("APPROVAL_EXPIRY_DAYS", minimum=1, check_id="billing.E011", unit="days")
    return errors
