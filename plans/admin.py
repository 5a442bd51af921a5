"""Catalog admin for finance staff: metrics and features editable; plan versions
drafted, published and archived through the services; published versions read-only
(and immutable in the database whatever the admin does)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from billing_project.cache import catalog_changed
from billing_project.errors import BillingError

from .catalog import CatalogError
from .models import BillableMetric, Charge, ChargeTier, Feature, Plan, PlanEntitlement, PlanVersion
from .services import plan_version_archive, plan_version_copy_to_draft, plan_version_publish


class CatalogAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        catalog_changed()  # cached entitlement contexts carry features' terms
        super().save_model(request, obj, form, change)


@admin.register(BillableMetric)
class BillableMetricAdmin(CatalogAdmin):
    list_display = ["code", "name", "aggregation", "properties", "unique_property"]
    search_fields = ["code", "name"]

    def get_readonly_fields(self, request: HttpRequest, obj: BillableMetric | None = None) -> Any:
        # What a metric measures cannot change under the plans that charge it.
        if obj is not None and obj.charges.exclude(version__status=PlanVersion.Status.DRAFT).exists():
            return ["code", "aggregation", "unique_property"]
        return ["code"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: BillableMetric | None = None) -> bool:
        return False


@admin.register(Feature)
class FeatureAdmin(CatalogAdmin):
    list_display = ["code", "name", "metric", "on_unavailable"]
    search_fields = ["code", "name"]

    def get_readonly_fields(self, request: HttpRequest, obj: Feature | None = None) -> Any:
        return ["code", "metric"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Feature | None = None) -> bool:
        return False


class _DraftOnlyInline:
    """Parts of a plan version (charges, entitlements, tiers): editable while the
    version is a draft, read-only after."""

    def _editable(self, obj: PlanVersion | Charge | None) -> bool:
        version = obj.version if isinstance(obj, Charge) else obj
        return version is None or version.is_draft

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)  # type: ignore[misc]


class ChargeInline(_DraftOnlyInline, admin.TabularInline):  # type: ignore[type-arg]
    model = Charge
    extra = 0
    fields = ["position", "metric", "model", "unit_price", "package_size", "package_price", "free_units"]
    show_change_link = True  # tiers are edited on the charge's own page


class PlanEntitlementInline(_DraftOnlyInline, admin.TabularInline):  # type: ignore[type-arg]
    model = PlanEntitlement
    extra = 0
    fields = ["feature", "enabled", "limit", "overage"]


@admin.register(PlanVersion)
class PlanVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["plan", "version", "status", "interval", "currency", "base_fee", "published_at"]
    list_filter = ["status", "plan"]
    inlines = [ChargeInline, PlanEntitlementInline]
    actions = ["publish", "archive", "copy_to_draft"]
    readonly_fields = ["version", "status", "published_at", "archived_at", "content_hash"]

    def get_readonly_fields(self, request: HttpRequest, obj: PlanVersion | None = None) -> Any:
        if obj is not None and not obj.is_draft:
            return ["plan", "interval", "currency", "base_fee", "trial_days", *self.readonly_fields]
        return ["plan", *self.readonly_fields] if obj is not None else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: PlanVersion | None = None) -> bool:
        return (obj is None or obj.is_draft) and super().has_delete_permission(request, obj)

    def _each(self, request: HttpRequest, queryset: QuerySet[PlanVersion], action: Any, verb: str) -> None:
        for version in queryset:
            try:
                done = action(version=version)
            except CatalogError as exc:
                self.message_user(
                    request, f"{version}: not {verb}: " + "; ".join(map(str, exc.problems)), messages.ERROR
                )
            except BillingError as exc:
                self.message_user(request, f"{version}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{done}: {verb}.", messages.SUCCESS)

    @admin.action(description="Publish selected drafts", permissions=["publish"])
    def publish(self, request: HttpRequest, queryset: QuerySet[PlanVersion]) -> None:
        self._each(request, queryset, plan_version_publish, "published")

    @admin.action(description="Archive (retire from the price list)", permissions=["publish"])
    def archive(self, request: HttpRequest, queryset: QuerySet[PlanVersion]) -> None:
        self._each(request, queryset, plan_version_archive, "archived")

    @admin.action(description="Copy to a new draft", permissions=["add"])
    def copy_to_draft(self, request: HttpRequest, queryset: QuerySet[PlanVersion]) -> None:
        self._each(request, queryset, plan_version_copy_to_draft, "copied to a draft")

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("plans.publish_planversion")


class ChargeTierInline(_DraftOnlyInline, admin.TabularInline):  # type: ignore[type-arg]
    model = ChargeTier
    extra = 0
    fields = ["position", "up_to", "unit_price", "flat_fee"]


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["version", "metric", "model"]
    inlines = [ChargeTierInline]

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        return {}  # reached from its plan version, not the index

    def has_change_permission(self, request: HttpRequest, obj: Charge | None = None) -> bool:
        return (obj is None or obj.version.is_draft) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Charge | None = None) -> bool:
        return (obj is None or obj.version.is_draft) and super().has_delete_permission(request, obj)


class PlanVersionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = PlanVersion
    extra = 0
    fields = ["link", "status", "interval", "currency", "base_fee", "published_at"]
    readonly_fields = ["link", "status", "interval", "currency", "base_fee", "published_at"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="version")
    def link(self, obj: PlanVersion) -> str:
        return format_html('<a href="../../planversion/{}/change/">{}</a>', obj.pk, obj)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["code", "name", "live_version"]
    search_fields = ["code", "name"]
    inlines = [PlanVersionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Plan | None = None) -> Any:
        return ["code"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Plan | None = None) -> bool:
        return False

    @admin.display(description="live version")
    def live_version(self, obj: Plan) -> str:
        live = obj.versions.filter(status=PlanVersion.Status.PUBLISHED).first()
        return str(live.version) if live else "—"
