"""Erasures, read-only: who asked, who approved, when, what was done (counts) and what is
left (the Stripe customer, invoices keeping their buyer until retention ends)."""

from __future__ import annotations

from django.contrib import admin

from billing_project.admin_base import ReadOnlyAdmin

from .models import Erasure

FIELDS = (
    "tenant_ref",
    "status",
    "reason",
    "requested_by",
    "approved_by",
    "approval_request",
    "erased_at",
    "done",
    "stripe_customers",
    "stripe_done_at",
    "stripe_attempts",
    "stripe_last_error",
    "retention_until",
    "buyers_erased_at",
)


@admin.register(Erasure)
class ErasureAdmin(ReadOnlyAdmin):
    list_display = ["tenant_ref", "erased_at", "status", "requested_by", "approved_by", "retention_until"]
    list_filter = ["erased_at"]
    search_fields = ["tenant__external_id"]
    fields = FIELDS
    readonly_fields = FIELDS

    @admin.display(description="tenant")
    def tenant_ref(self, obj: Erasure) -> str:
        return obj.tenant.external_id
