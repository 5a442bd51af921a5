"""Catalog admin for finance staff: metrics and features editable; plan versions
drafted, published and archived through the services; published versions read-only
(and immutable in the database whatever the admin does)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from billing_project.admin_base import PlainDecimalInput, money_column, quantity_column
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


def _is_draft(obj: PlanVersion | Charge | None) -> bool:
    version = obj.version if isinstance(obj, Charge) else obj
    return version is None or version.is_draft


class _PricesShown:
    """A plan version's amounts as finance reads them. While a draft is edited, its inputs
    hold the number as typed ("24000", "0.000008"), not the column's scale
    ("24000.0000000000"); once read-only (published, or to staff who may not edit), each
    amount shows as money in the version's currency and each quantity thousands separated,
    through the display named in `shown_as`."""

    shown_as: dict[str, str] = {}
    formfield_overrides: ClassVar[Mapping[type[models.Field[Any, Any]], Mapping[str, Any]]] = {
        models.DecimalField: {"widget": PlainDecimalInput}
    }

    def _shown(self, request: HttpRequest, obj: Any) -> bool:
        return not (_is_draft(obj) and self.has_change_permission(request, obj))  # type: ignore[attr-defined]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_fields(request, obj)  # type: ignore[misc]
        if not self._shown(request, obj):
            return fields
        return list(dict.fromkeys(self.shown_as.get(name, name) for name in fields))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self._with_shown(request, obj, super().get_readonly_fields(request, obj))  # type: ignore[misc]

    def _with_shown(self, request: HttpRequest, obj: Any, readonly: Any) -> list[str]:
        names = [str(x) for x in readonly]
        if not self._shown(request, obj):
            return names
        return [*names, *(x for x in self.shown_as.values() if x not in names)]


class _DraftOnlyInline(_PricesShown):
    """Parts of a plan version (charges, entitlements, tiers): editable while the
    version is a draft, read-only after."""

    def _editable(self, obj: PlanVersion | Charge | None) -> bool:
        return _is_draft(obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)  # type: ignore[misc]


_CHARGE_PRICES = {
    "unit_price": "unit_price_shown",
    "package_size": "package_size_shown",
    "package_price": "package_price_shown",
    "free_units": "free_units_shown",
}


class ChargeInline(_DraftOnlyInline, admin.TabularInline):  # type: ignore[type-arg]
    model = Charge
    extra = 0
    fields = ["position", "metric", "model", "unit_price", "package_size", "package_price", "free_units"]
    show_change_link = True  # tiers are edited on the charge's own page
    shown_as = _CHARGE_PRICES

    unit_price_shown = money_column("unit_price", currency="version__currency", description="unit price", price=True)
    package_price_shown = money_column(
        "package_price", currency="version__currency", description="package price", price=True
    )
    package_size_shown = quantity_column("package_size", description="package size")
    free_units_shown = quantity_column("free_units", description="free units")


class PlanEntitlementInline(_DraftOnlyInline, admin.TabularInline):  # type: ignore[type-arg]
    model = PlanEntitlement
    extra = 0
    fields = ["feature", "enabled", "limit", "overage"]


@admin.register(PlanVersion)
class PlanVersionAdmin(_PricesShown, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["plan", "version", "status", "interval", "base_fee_shown", "trial_days", "published_at"]
    shown_as = {"base_fee": "base_fee_shown"}
    base_fee_shown = money_column("base_fee", description="base fee")
    list_filter = ["status", "plan"]
    inlines = [ChargeInline, PlanEntitlementInline]
    actions = ["publish", "archive", "copy_to_draft"]
    readonly_fields = ["version", "status", "published_at", "archived_at", "content_hash"]

    def get_readonly_fields(self, request: HttpRequest, obj: PlanVersion | None = None) -> Any:
        if obj is not None and not obj.is_draft:
            readonly = ["plan", "interval", "currency", "base_fee", "trial_days", *self.readonly_fields]
        else:
            readonly = ["plan", *self.readonly_fields] if obj is not None else list(self.readonly_fields)
        return self._with_shown(request, obj, readonly)

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
    classes = ("no-original",)  # the row's label repeats its columns (admin.css)
    fields = ["position", "up_to", "unit_price", "flat_fee"]
    shown_as = {"up_to": "up_to_shown", "unit_price": "unit_price_shown", "flat_fee": "flat_fee_shown"}

    unit_price_shown = money_column(
        "unit_price", currency="charge__version__currency", description="unit price", price=True
    )
    flat_fee_shown = money_column("flat_fee", currency="charge__version__currency", description="flat fee", price=True)

    @admin.display(description="up to")
    def up_to_shown(self, obj: ChargeTier) -> str:
        return "∞ (the last tier)" if obj.up_to is None else str(quantity_column("up_to")(self, obj))


@admin.register(Charge)
class ChargeAdmin(_PricesShown, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["version", "metric", "model"]
    inlines = [ChargeTierInline]
    shown_as = _CHARGE_PRICES

    unit_price_shown = ChargeInline.unit_price_shown
    package_price_shown = ChargeInline.package_price_shown
    package_size_shown = ChargeInline.package_size_shown
    free_units_shown = ChargeInline.free_units_shown

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        return {}  # reached from its plan version, not the index

    def has_change_permission(self, request: HttpRequest, obj: Charge | None = None) -> bool:
        return (obj is None or obj.version.is_draft) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Charge | None = None) -> bool:
        return (obj is None or obj.version.is_draft) and super().has_delete_permission(request, obj)


class PlanVersionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = PlanVersion
    extra = 0
    fields = ("link", "status", "interval", "base_fee_shown", "published_at")
    readonly_fields = fields
    can_delete = False
    classes = ("no-original",)  # the link column names the version (admin.css)

    base_fee_shown = money_column("base_fee", description="base fee")

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
