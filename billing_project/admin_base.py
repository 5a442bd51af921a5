"""Admin building blocks shared by the apps: read-only admins, and money, quantities and
periods as finance reads them (one formatting for every list, page and inline)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from .money import format_decimal, money_display, price_display, quantity_display

__all__ = [
    "PlainDecimalInput",
    "ReadOnlyAdmin",
    "ShownAs",
    "instant_display",
    "money_column",
    "money_display",
    "period_display",
    "price_display",
    "quantity_column",
    "quantity_display",
]


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """For records staff read but never edit here (append-only, derived, or changed only
    through services)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ShownAs:
    """For a model admin or inline: show some model fields by a display of their own, in the
    field's place ({"amount": "refund_amount"}: a money_column). The other fields stay as
    the model declares them, new ones included."""

    shown_as: dict[str, str] = {}

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_fields(request, obj)  # type: ignore[misc]
        return list(dict.fromkeys(self.shown_as.get(name, name) for name in fields))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = super().get_readonly_fields(request, obj)  # type: ignore[misc]
        return [*readonly, *(x for x in self.shown_as.values() if x not in readonly)]


def _follow(obj: Any, path: str) -> Any:
    for name in path.split("__"):
        obj = getattr(obj, name)
    return obj


def money_column(
    field: str, *, currency: str = "currency", description: str | None = None, price: bool = False
) -> Callable[[Any, Any], str]:
    """A read-only column or field of a model admin or inline: `field` of the row as money in
    the currency at `currency` (a path, "invoice__currency"). `price=True` for unit prices,
    which keep their sub-cent digits. Assign it in the class body and name it in
    list_display, fields or readonly_fields."""
    show = price_display if price else money_display

    @admin.display(description=description or field.replace("_", " "), ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return format_html('<span class="money">{}</span>', show(_follow(obj, field), _follow(obj, currency)))

    return column


def quantity_column(field: str, *, description: str | None = None) -> Callable[[Any, Any], str]:
    """A read-only column or field: a quantity, thousands separated ("100,000,000")."""

    @admin.display(description=description or field.replace("_", " "), ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return format_html('<span class="quantity">{}</span>', quantity_display(_follow(obj, field)))

    return column


def instant_display(at: datetime | None, *, day: bool = False) -> str:
    """An instant in UTC, to the minute ("2026-01-15 00:00 UTC"), or its day for a list's
    column ("2026-01-15"); "—" for none."""
    if at is None:
        return "—"
    return f"{at.astimezone(UTC):%Y-%m-%d}" if day else f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def period_display(start: datetime | None, end: datetime | None, *, days: bool = False) -> str:
    """A half-open period, as billing counts it: "[2026-01-15 00:00, 2026-02-15 00:00) UTC",
    or its days for a list's column ("[2026-01-15, 2026-02-15)")."""
    if start is None or end is None:
        return "—"
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if days:
        return f"[{start:%Y-%m-%d}, {end:%Y-%m-%d})"
    return f"[{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) UTC"


class PlainDecimalInput(forms.NumberInput):
    """A decimal as typed, not at the column's scale: "24000" or "0.000008", never
    "24000.0000000000". Narrow, so that a row of prices fits the page."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"class": "plain-decimal", **(attrs or {})})

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, Decimal) and value.is_finite():
            return format_decimal(value)
        shown: str | None = super().format_value(value)
        return shown
