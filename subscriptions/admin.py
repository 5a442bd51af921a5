"""Tenants and subscriptions for staff: readable; suspend, resume and cancel as
actions that ask for a reason and call the same services as the API."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from billing_project.admin_base import ReadOnlyAdmin, ShownAs, instant_display, money_column, period_display
from billing_project.errors import BillingError
from billing_project.money import normalize_currency

from .models import BillingPeriod, ProrationItem, Subscription, SubscriptionEvent, Tenant
from .selectors import live_subscription
from .services import subscription_apply, tenant_country, tenant_upsert
from .taxids import tax_id_clean
from .tenant_ids import TENANT_ID_RULE, tenant_id_problem


class TenantForm(forms.ModelForm):  # type: ignore[type-arg]
    """The service's rules as form errors; the service (tenant_upsert) still writes and decides."""

    class Meta:
        model = Tenant
        fields = ["external_id", "name", "billing_email", "address", "tax_id", "country", "currency"]

    def clean_external_id(self) -> str:
        value: str = self.cleaned_data["external_id"]
        if (problem := tenant_id_problem(value)) is not None:
            raise forms.ValidationError(f"{problem} ({TENANT_ID_RULE}).")
        return value

    def clean_country(self) -> str:
        try:
            return tenant_country(self.cleaned_data.get("country") or "")
        except BillingError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean_currency(self) -> str:
        try:
            return normalize_currency(self.cleaned_data.get("currency") or "")
        except BillingError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        tenant = self.instance
        try:
            data["tax_id"] = tax_id_clean(data.get("tax_id") or "", data.get("country") or "")
        except BillingError as exc:
            self.add_error("tax_id", exc.message)
        if tenant.pk is not None and data.get("currency", tenant.currency) != tenant.currency:
            stored = Tenant.objects.get(pk=tenant.pk)
            if live_subscription(stored) is not None:
                self.add_error("currency", f"{stored.external_id} has a live subscription in {stored.currency}.")
        return data


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Finance corrects a tenant's details here (superusers may add one; tenants normally
    come from the platform through the API). Every save goes through tenant_upsert and is
    audited with the staff member; tenants are never deleted."""

    form = TenantForm
    list_display = ["external_id", "name", "currency", "country", "created_at", "whole_picture"]
    search_fields = ["external_id"]
    search_help_text = "Find a tenant by its external id (names are encrypted at rest)."
    sortable_by = ["external_id", "currency", "country", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> list[str]:
        return ["whole_picture", "external_id", "created_at"] if obj is not None else []

    @admin.display(description="Finance console")
    def whole_picture(self, obj: Tenant) -> str:
        # the page with everything about the tenant and the money actions (console/)
        return format_html('<a href="{}">Whole picture and actions</a>', reverse("console-tenant:page", args=[obj.pk]))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        # an erased tenant's details stay erased: read-only here, as the service refuses them
        if obj is not None and obj.erased_at is not None:
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        d = form.cleaned_data
        saved, _ = tenant_upsert(
            external_id=obj.external_id,
            name=d["name"],
            billing_email=d.get("billing_email") or "",
            country=d.get("country") or "",
            currency=d["currency"],
            address=d.get("address") or "",
            tax_id=d.get("tax_id") or "",
        )
        obj.pk, obj.created_at = saved.pk, saved.created_at


class SubscriptionEventInline(admin.TabularInline):  # type: ignore[type-arg]
    model = SubscriptionEvent
    extra = 0
    can_delete = False
    fields = ("when", "action", "change", "actor", "reason", "data")
    readonly_fields = fields
    classes = ("no-original",)  # the row's label repeats its columns (admin.css)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="at", ordering="at")
    def when(self, obj: SubscriptionEvent) -> str:
        return instant_display(obj.at)

    @admin.display(description="status")
    def change(self, obj: SubscriptionEvent) -> str:
        return f"{obj.from_status or '—'} → {obj.to_status}"


class BillingPeriodInline(admin.TabularInline):  # type: ignore[type-arg]
    """The subscription's billing periods: what each plan version priced, and whether it is closed."""

    model = BillingPeriod
    fk_name = "subscription"
    extra = 0
    can_delete = False
    fields = ("period", "planned_end_at", "kind", "plan_version", "currency", "fee_in_advance", "closed")
    readonly_fields = fields
    classes = ("no-original",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="period [start, end)")
    def period(self, obj: BillingPeriod) -> str:
        return period_display(obj.start, obj.end)

    @admin.display(description="planned end")
    def planned_end_at(self, obj: BillingPeriod) -> str:
        return instant_display(obj.planned_end)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea, help_text="Why (kept in the subscription's history).")


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """A subscription as finance asks about it: its status and current period first (what
    it is billed for now, when the trial ends, what happens at the period's end), then its
    billing periods and its history."""

    list_display = ["tenant", "plan_version", "status", "period", "trial", "at_period_end", "since"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "tenant",
                    "plan_version",
                    "status",
                    "current_period",
                    "trial_ends",
                    "at_period_end",
                    "started",
                    "ended",
                    "past_due",
                ],
                "classes": ["summary"],
            },
        ),
    ]
    readonly_fields = [
        "tenant",
        "plan_version",
        "status",
        "current_period",
        "trial_ends",
        "at_period_end",
        "started",
        "ended",
        "past_due",
    ]
    list_filter = ["status", "plan_version__plan"]
    list_select_related = ["tenant", "plan_version__plan", "scheduled_plan_version__plan"]
    search_fields = ["tenant__external_id"]
    inlines = [BillingPeriodInline, SubscriptionEventInline]
    actions = ["suspend", "resume", "cancel_now"]

    @admin.display(description="current period [start, end)", ordering="current_period_end")
    def current_period(self, obj: Subscription) -> str:
        return period_display(obj.current_period_start, obj.current_period_end)

    # the list's columns: days (the page shows the minutes)
    @admin.display(description="current period", ordering="current_period_end")
    def period(self, obj: Subscription) -> str:
        return period_display(obj.current_period_start, obj.current_period_end, days=True)

    @admin.display(description="trial ends", ordering="trial_end")
    def trial(self, obj: Subscription) -> str:
        return instant_display(obj.trial_end, day=True)

    @admin.display(description="started", ordering="started_at")
    def since(self, obj: Subscription) -> str:
        return instant_display(obj.started_at, day=True)

    @admin.display(description="trial ends", ordering="trial_end")
    def trial_ends(self, obj: Subscription) -> str:
        return instant_display(obj.trial_end)

    @admin.display(description="at period end")
    def at_period_end(self, obj: Subscription) -> str:
        """What the end of the current period brings: a cancellation, a plan change, or a renewal."""
        if not obj.is_live:
            return "—"
        if obj.cancel_at_period_end:
            return format_html("<strong>cancels</strong> on {}", instant_display(obj.current_period_end, day=True))
        if obj.scheduled_plan_version is not None:
            return format_html(
                "changes to <strong>{}</strong> on {}",
                obj.scheduled_plan_version,
                instant_display(obj.current_period_end, day=True),
            )
        return "renews"

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: Subscription) -> str:
        return instant_display(obj.started_at)

    @admin.display(description="ended", ordering="ended_at")
    def ended(self, obj: Subscription) -> str:
        return instant_display(obj.ended_at)

    @admin.display(description="past due since")
    def past_due(self, obj: Subscription) -> str:
        return instant_display(obj.past_due_since)

    def _act(
        self, request: HttpRequest, queryset: QuerySet[Subscription], action: str, title: str
    ) -> HttpResponse | None:
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            staff = f"staff:{request.user.get_username()}"
            for sub in queryset:
                try:
                    subscription_apply(subscription=sub, action=action, actor=staff, reason=form.cleaned_data["reason"])
                except BillingError as exc:
                    self.message_user(request, f"{sub}: {exc.message}", messages.ERROR)
                else:
                    self.message_user(request, f"{sub.tenant.external_id}: {action} done.", messages.SUCCESS)
            return None
        return TemplateResponse(
            request,
            "admin/action_with_reason.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "objects": queryset,
                "title": title,
                "opts": self.model._meta,
                "action": request.POST.get("action"),
                "submit": title,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(description="Suspend (asks for a reason)", permissions=["suspend"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> HttpResponse | None:
        return self._act(request, queryset, "suspend", "Suspend subscriptions")

    @admin.action(description="Resume (asks for a reason)", permissions=["suspend"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> HttpResponse | None:
        return self._act(request, queryset, "resume", "Resume subscriptions")

    @admin.action(description="Cancel now (asks for a reason)", permissions=["suspend"])
    def cancel_now(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> HttpResponse | None:
        return self._act(request, queryset, "cancel", "Cancel subscriptions now")

    def has_suspend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("subscriptions.suspend_subscription")


@admin.register(ProrationItem)
class ProrationItemAdmin(ShownAs, ReadOnlyAdmin):
    list_display = ["subscription", "kind", "description", "item_amount", "created_at", "invoiced_at"]
    list_filter = ["kind", ("invoiced_at", admin.EmptyFieldListFilter)]
    list_select_related = ["subscription__tenant", "subscription__plan_version__plan"]
    shown_as = {"amount": "item_amount", "currency": "item_amount"}

    # rounded as the invoice line that bills it will be (the item keeps every digit)
    item_amount = money_column("amount", description="amount")
