"""Grants in the admin: staff create them (with a reason and an expiry) and revoke them;
both go through the services, which invalidate the tenant's cached entitlements."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from billing_project.admin_base import ReadOnlyAdmin, quantity_column
from billing_project.errors import BillingError

from .models import Grant, ReconciliationRun
from .services import grant_create, grant_revoke


class GrantForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Grant
        fields = ["tenant", "feature", "kind", "amount", "reason", "expires_at"]


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = GrantForm
    list_display = ["tenant", "feature", "kind", "extra", "expires_at", "revoked_at", "created_by"]
    list_filter = ["kind", "feature"]
    search_fields = ["tenant__external_id", "reason"]
    actions = ["revoke"]

    extra = quantity_column("amount", description="extra units")

    def get_readonly_fields(self, request: HttpRequest, obj: Grant | None = None) -> Any:
        return (
            []
            if obj is None
            else [
                "tenant",
                "feature",
                "kind",
                "amount",
                "extra",
                "reason",
                "expires_at",
                "created_by",
                "created_at",
                "revoked_at",
            ]
        )

    def get_fields(self, request: HttpRequest, obj: Grant | None = None) -> Any:
        # a grant is read once made: its units thousands separated, not at the column's scale
        fields = super().get_fields(request, obj)
        return fields if obj is None else list(dict.fromkeys("extra" if f == "amount" else f for f in fields))

    def has_delete_permission(self, request: HttpRequest, obj: Grant | None = None) -> bool:
        return False  # revoke instead: the history stays

    def save_model(self, request: HttpRequest, obj: Grant, form: Any, change: bool) -> None:
        if change:
            return  # grants are not edited: revoke and grant anew
        d = form.cleaned_data
        try:
            created = grant_create(
                tenant=d["tenant"],
                feature=d["feature"],
                kind=d["kind"],
                amount=d.get("amount"),
                reason=d["reason"],
                expires_at=d["expires_at"],
                created_by=request.user,
            )
        except BillingError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk = created.pk

    @admin.action(description="Revoke selected grants", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Grant]) -> None:
        for grant in queryset:
            grant_revoke(grant=grant)
        self.message_user(request, f"Revoked {queryset.count()} grant(s).", messages.SUCCESS)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "checked", "corrected"]
