"""Invoices and the credit ledger for finance staff: read-only here (invoices change only
through services), with the printable document and each line's explanation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from billing_project.admin_base import (
    ReadOnlyAdmin,
    ShownAs,
    instant_display,
    money_column,
    money_display,
    period_display,
    quantity_column,
)
from billing_project.models import WorkItem

from . import jobs
from .documents import explanation_rows, invoice_html, party_lines
from .models import CreditEntry, CreditNote, CreditNoteLine, Invoice, InvoiceLine, Refund


class _ReadOnlyInline(admin.TabularInline):  # type: ignore[type-arg]
    extra = 0
    can_delete = False
    classes = ("no-original",)  # the row's label repeats its columns (admin.css)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class InvoiceLineInline(_ReadOnlyInline):
    model = InvoiceLine
    fields = ("position", "kind", "description", "line_quantity", "line_amount", "why")
    readonly_fields = fields

    line_quantity = quantity_column("quantity")
    line_amount = money_column("amount", currency="invoice__currency")

    @admin.display(description="how the amount was reached")
    def why(self, obj: InvoiceLine) -> str:
        """Each tier, the sum, the rounding, with the link to the events behind a usage line."""
        rows = explanation_rows(obj.explanation, obj.amount, obj.invoice.currency)
        events = (obj.explanation or {}).get("events") or {}
        link = format_html('<a href="{}">{}</a>', events["list_url"], _events(events["count"])) if events else ""
        listed = format_html_join("", '<span class="explanation-row">{}</span>', ((row,) for row in rows))
        return format_html("{}{}", listed, link) if rows or link else "—"


def _link(obj: Any, text: str) -> str:
    opts = obj._meta
    return format_html(
        '<a href="{}">{}</a>', reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]), text
    )


class CreditNoteInline(_ReadOnlyInline):
    model = CreditNote
    fields = ("note", "created_at", "note_total", "settlement", "reason", "actor")
    readonly_fields = fields
    verbose_name_plural = "credit notes (corrections)"

    note_total = money_column("total")

    @admin.display(description="credit note")
    def note(self, obj: CreditNote) -> str:
        return _link(obj, obj.number)


class RefundInline(_ReadOnlyInline):
    model = Refund
    fields = ("refund", "created_at", "refund_amount", "status", "requested_by", "reason")
    readonly_fields = fields

    refund_amount = money_column("amount", description="amount")

    @admin.display(description="refund")
    def refund(self, obj: Refund) -> str:
        return _link(obj, f"refund {obj.pk}")


class CreditEntryInline(_ReadOnlyInline):
    model = CreditEntry
    fields = ("created_at", "kind", "entry_amount", "actor", "reason")
    readonly_fields = fields
    verbose_name_plural = "credit ledger entries"

    entry_amount = money_column("amount", description="amount")


def _events(count: int) -> str:
    return "the event behind it" if count == 1 else f"the {count:,} events behind it"


def _address(party: dict[str, Any]) -> str:
    lines = party_lines(party)
    return format_html("<address>{}</address>", format_html_join("", "{}<br>", ((x,) for x in lines))) if lines else "—"


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    """An invoice as finance reads it: who, when and its status at the top, then one block of
    amounts (subtotal, tax, credit applied, total due), the parties as addresses, collection,
    its lines with how each was reached, and what corrected it since."""

    list_display = ["__str__", "tenant", "status", "total_due", "billed_days", "due_day", "document"]
    fieldsets = [
        (None, {"fields": ["number", "tenant", "subscription", "status", "document"]}),
        ("Dates", {"fields": ["billed_period", "finalized_at", "due_at", "paid_at", "voided_at", "uncollectible_at"]}),
        ("Amounts", {"fields": ["subtotal_amount", "tax_amount", "credit_amount", "total_due", "tax_status"]}),
        ("Parties", {"fields": ["seller_address", "buyer_address"]}),
        (
            "Collection",
            {
                "fields": [
                    "background_work",
                    "stripe_invoice_id",
                    "stripe_number",
                    "collection_attempts",
                    "payment_retries",
                    "next_payment_retry_at",
                    "last_payment_error",
                ]
            },
        ),
        ("Records", {"fields": ["period", "boundary", "series", "created_at"], "classes": ["collapse"]}),
    ]
    readonly_fields = [
        "document",
        "billed_period",
        "subtotal_amount",
        "tax_amount",
        "credit_amount",
        "total_due",
        "seller_address",
        "buyer_address",
        "background_work",
        "created_at",
    ]
    list_filter = ["status", "currency", "tax_status"]
    search_fields = ["number", "tenant__external_id", "stripe_invoice_id"]
    list_select_related = ["tenant"]
    inlines = [InvoiceLineInline, CreditNoteInline, RefundInline, CreditEntryInline]

    def get_inline_instances(self, request: HttpRequest, obj: Invoice | None = None) -> list[Any]:
        """Its lines always; credit notes, refunds and ledger entries only where there are some."""
        related: dict[type[Any], str] = {
            CreditNoteInline: "credit_notes",
            RefundInline: "refunds",
            CreditEntryInline: "credits",
        }
        return [
            inline
            for inline in super().get_inline_instances(request, obj)
            if type(inline) not in related or (obj is not None and getattr(obj, related[type(inline)]).exists())
        ]

    subtotal_amount = money_column("subtotal")
    tax_amount = money_column("tax")
    total_due = money_column("total", description="total due")

    @admin.display(description="credit applied")
    def credit_amount(self, obj: Invoice) -> str:
        return money_display(-obj.credit_applied if obj.credit_applied else obj.credit_applied, obj.currency)

    @admin.display(description="period billed", ordering="period_start")
    def billed_period(self, obj: Invoice) -> str:
        return period_display(obj.period_start, obj.period_end)

    @admin.display(description="period billed", ordering="period_start")
    def billed_days(self, obj: Invoice) -> str:
        return period_display(obj.period_start, obj.period_end, days=True)

    @admin.display(description="due", ordering="due_at")
    def due_day(self, obj: Invoice) -> str:
        return instant_display(obj.due_at, day=True)

    @admin.display(description="seller")
    def seller_address(self, obj: Invoice) -> str:
        return _address(obj.seller)

    @admin.display(description="buyer")
    def buyer_address(self, obj: Invoice) -> str:
        return _address(obj.buyer)

    @admin.display(description="document")
    def document(self, obj: Invoice) -> str:
        if obj.number is None:
            return "—"
        return format_html('<a href="{}">view</a>', reverse("admin:invoicing_invoice_document", args=[obj.pk]))

    @admin.display(description="collection and dunning")
    def background_work(self, obj: Invoice) -> str:
        """Whether pushing it to Stripe or a dunning retry failed: blocked (and why) or
        backing off, with a link to the item staff retry once the cause is fixed."""
        items = WorkItem.objects.filter(object_id=obj.pk, job__in=[jobs.COLLECT, jobs.PAYMENT_RETRY]).exclude(
            state=WorkItem.State.DONE
        )
        rows = [
            (
                reverse("admin:billing_project_workitem_change", args=[item.pk]),
                item.job,
                item.get_state_display(),
                item.blocked_reason or f"(next attempt {item.next_attempt_at:%Y-%m-%d %H:%M} UTC)",
            )
            for item in items
        ]
        return format_html_join("; ", '<a href="{}">{}: {}</a> {}', rows) or "—"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.document_view)
        return [path("<int:pk>/document/", view, name="invoicing_invoice_document"), *super().get_urls()]

    def document_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        # the permission before the lookup: whether an invoice exists is not for everyone to learn
        if not self.has_view_permission(request):
            raise PermissionDenied
        invoice = get_object_or_404(Invoice, pk=pk)
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        response = HttpResponse(invoice_html(invoice))
        response["Content-Security-Policy"] = settings.CSP_DOCUMENT  # the document, not the admin around it
        return response


@admin.register(CreditEntry)
class CreditEntryAdmin(ShownAs, ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "kind", "entry_amount", "invoice", "actor", "reason"]
    shown_as = {"amount": "entry_amount", "currency": "entry_amount"}
    list_filter = ["kind", "currency"]
    search_fields = ["tenant__external_id", "reason", "actor"]
    list_select_related = ["tenant", "invoice"]

    entry_amount = money_column("amount", description="amount")


class CreditNoteLineInline(_ReadOnlyInline):
    model = CreditNoteLine
    fields = ("invoice_line", "description", "line_amount")
    readonly_fields = fields

    line_amount = money_column("amount", currency="credit_note__currency", description="amount")


@admin.register(CreditNote)
class CreditNoteAdmin(ShownAs, ReadOnlyAdmin):
    list_display = ["number", "invoice", "tenant", "note_total", "settlement", "reason", "actor", "created_at"]
    shown_as = {"total": "note_total", "currency": "note_total"}
    search_fields = ["number", "invoice__number", "tenant__external_id"]
    list_select_related = ["invoice", "tenant"]
    inlines = [CreditNoteLineInline]

    note_total = money_column("total")


@admin.register(Refund)
class RefundAdmin(ShownAs, ReadOnlyAdmin):
    """Refunds as they go: requested, awaiting approval, submitted to Stripe, succeeded (with
    the credit note that corrected the books) or failed (with the reason)."""

    list_display = ["pk", "invoice", "tenant", "refund_amount", "status", "requested_by", "created_at"]
    shown_as = {"amount": "refund_amount", "currency": "refund_amount"}
    list_filter = ["status", "currency"]
    search_fields = ["invoice__number", "tenant__external_id", "stripe_refund_id", "requested_by"]
    list_select_related = ["invoice", "tenant"]
    exclude = ["submit_lease_until"]

    refund_amount = money_column("amount", description="amount")
