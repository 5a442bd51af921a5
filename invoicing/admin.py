"""Invoices and the credit ledger for finance staff: read-only here (invoices change only
through services), with the printable document and each line's explanation."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from billing_project.admin_base import ReadOnlyAdmin

from .documents import invoice_html
from .models import CreditEntry, CreditNote, CreditNoteLine, Invoice, InvoiceLine


class InvoiceLineInline(admin.TabularInline):  # type: ignore[type-arg]
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = ("position", "kind", "description", "quantity", "amount", "explanation")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "tenant", "status", "total", "currency", "period_start", "finalized_at", "document"]
    list_filter = ["status", "currency", "tax_status"]
    search_fields = ["number", "tenant__external_id", "stripe_invoice_id"]
    list_select_related = ["tenant"]
    inlines = [InvoiceLineInline]

    @admin.display(description="document")
    def document(self, obj: Invoice) -> str:
        if obj.number is None:
            return "—"
        return format_html('<a href="{}">view</a>', reverse("admin:invoicing_invoice_document", args=[obj.pk]))

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.document_view)
        return [path("<int:pk>/document/", view, name="invoicing_invoice_document"), *super().get_urls()]

    def document_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        invoice = get_object_or_404(Invoice, pk=pk)
        if not self.has_view_permission(request, invoice):
            return HttpResponse(status=403)
        return HttpResponse(invoice_html(invoice))


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "kind", "amount", "currency", "invoice", "actor", "reason"]
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
    list_display = ["number", "invoice", "tenant", "total", "currency", "reason", "actor", "created_at"]
    search_fields = ["number", "invoice__number", "tenant__external_id"]
    list_select_related = ["invoice", "tenant"]
    inlines = [CreditNoteLineInline]
