"""Invoices and the credit ledger for finance staff: read-only here (invoices change only
through services), with the printable document and each line's explanation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from billing_project.admin_base import ReadOnlyAdmin
from billing_project.models import WorkItem
from billing_project.money import exponent, format_decimal

from . import jobs
from .documents import invoice_html
from .models import CreditEntry, CreditNote, CreditNoteLine, Invoice, InvoiceLine, Refund


class InvoiceLineInline(admin.TabularInline):  # type: ignore[type-arg]
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = ("position", "kind", "description", "quantity", "line_amount", "why")
    readonly_fields = fields

    @admin.display(description="amount")
    def line_amount(self, obj: InvoiceLine) -> str:
        return money(obj.amount, obj.invoice.currency)

    @admin.display(description="explanation")
    def why(self, obj: InvoiceLine) -> str:
        """The explanation, with its link to the events behind a usage line."""
        events = (obj.explanation or {}).get("events") or {}
        link = (
            format_html(' <a href="{}">list the {} events</a>', events["list_url"], events["count"]) if events else ""
        )
        tiers = "; ".join(
            f"{t['from']}–{t['to'] or '∞'}: {t['quantity']} × {t['unit_price']} = {t['amount']}"
            for t in (obj.explanation or {}).get("tiers", [])
        )
        return format_html("{}{}", tiers or "—", link)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def money(value: Decimal, currency: str) -> str:
    """An amount as the invoice prints it: the currency's minor unit, not the column's scale."""
    return f"{format_decimal(value, exponent(currency))} {currency}"


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "tenant", "status", "amount", "period_start", "finalized_at", "document"]
    readonly_fields = ["document", "amount", "background_work"]
    list_filter = ["status", "currency", "tax_status"]
    search_fields = ["number", "tenant__external_id", "stripe_invoice_id"]
    list_select_related = ["tenant"]
    inlines = [InvoiceLineInline]

    @admin.display(description="total")
    def amount(self, obj: Invoice) -> str:
        return money(obj.total, obj.currency)

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
class CreditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "kind", "entry_amount", "invoice", "actor", "reason"]

    @admin.display(description="amount")
    def entry_amount(self, obj: CreditEntry) -> str:
        return money(obj.amount, obj.currency)

    list_filter = ["kind", "currency"]
    search_fields = ["tenant__external_id", "reason", "actor"]
    list_select_related = ["tenant", "invoice"]


class CreditNoteLineInline(admin.TabularInline):  # type: ignore[type-arg]
    model = CreditNoteLine
    extra = 0
    can_delete = False
    fields = ("invoice_line", "description", "amount")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    list_display = ["number", "invoice", "tenant", "total", "currency", "settlement", "reason", "actor", "created_at"]
    search_fields = ["number", "invoice__number", "tenant__external_id"]
    list_select_related = ["invoice", "tenant"]
    inlines = [CreditNoteLineInline]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    """Refunds as they go: requested, awaiting approval, submitted to Stripe, succeeded (with
    the credit note that corrected the books) or failed (with the reason)."""

    list_display = ["pk", "invoice", "tenant", "refund_amount", "status", "requested_by", "created_at"]
    list_filter = ["status", "currency"]
    search_fields = ["invoice__number", "tenant__external_id", "stripe_refund_id", "requested_by"]
    list_select_related = ["invoice", "tenant"]
    exclude = ["submit_lease_until"]

    @admin.display(description="amount")
    def refund_amount(self, obj: Refund) -> str:
        return money(obj.amount, obj.currency)
