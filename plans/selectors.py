"""Catalog reads: the live price list, and specs built from stored versions."""

from __future__ import annotations

from typing import cast

from django.db.models import Prefetch, QuerySet

from .catalog import CatalogSpec, EntitlementSpec, FeatureSpec, MetricSpec, PlanSpec
from .models import BillableMetric, Charge, Feature, PlanEntitlement, PlanVersion
from .pricing import Charge as ChargeTerms
from .pricing import Model, Tier


def metric_specs() -> dict[str, MetricSpec]:
    return {
        m.code: MetricSpec(
            m.code,
            m.name,
            m.aggregation,
            tuple(m.properties),
            m.unique_property,
            m.description,
            tuple(sorted(m.personal_properties)),
        )
        for m in BillableMetric.objects.all()
    }


def feature_specs() -> dict[str, FeatureSpec]:
    return {
        f.code: FeatureSpec(f.code, f.name, f.metric.code if f.metric else None, f.on_unavailable, f.description)
        for f in Feature.objects.select_related("metric")
    }


def plans_in_use_by_metric(code: str) -> list[str]:
    """Plans with a published or archived version that charges this metric or limits a feature it meters."""
    charged = (
        Charge.objects.filter(metric__code=code)
        .exclude(version__status=PlanVersion.Status.DRAFT)
        .values_list("version__plan__code", flat=True)
    )
    limited = (
        PlanEntitlement.objects.filter(feature__metric__code=code)
        .exclude(version__status=PlanVersion.Status.DRAFT)
        .values_list("version__plan__code", flat=True)
    )
    return sorted(set(charged) | set(limited))


def versions_with_terms(queryset: QuerySet[PlanVersion]) -> QuerySet[PlanVersion]:
    """Everything needed to price or show a version, in a fixed number of queries."""
    return queryset.select_related("plan").prefetch_related(
        Prefetch("charges", queryset=Charge.objects.select_related("metric").prefetch_related("tiers")),
        Prefetch("entitlements", queryset=PlanEntitlement.objects.select_related("feature__metric")),
    )


def live_versions() -> QuerySet[PlanVersion]:
    """The price list: each plan's published version."""
    return versions_with_terms(PlanVersion.objects.filter(status=PlanVersion.Status.PUBLISHED)).order_by("plan__code")


def live_version(plan_code: str) -> PlanVersion | None:
    return live_versions().filter(plan__code=plan_code).first()


def plan_spec_from_version(version: PlanVersion) -> PlanSpec:
    charges = tuple(
        ChargeTerms(
            metric=c.metric.code,
            model=cast(Model, c.model),
            unit_price=c.unit_price,
            package_size=c.package_size,
            package_price=c.package_price,
            free_units=c.free_units,
            tiers=tuple(Tier(t.up_to, t.unit_price, t.flat_fee) for t in c.tiers.all()),
        )
        for c in version.charges.all()
    )
    entitlements = tuple(
        EntitlementSpec(e.feature.code, e.enabled, e.limit, e.overage) for e in version.entitlements.all()
    )
    return PlanSpec(
        code=version.plan.code,
        name=version.plan.name,
        interval=version.interval,
        currency=version.currency,
        base_fee=version.base_fee,
        trial_days=version.trial_days,
        charges=charges,
        entitlements=entitlements,
        description=version.plan.description,
    )


def catalog_spec() -> CatalogSpec:
    """The whole live catalog, as `catalog export` writes it."""
    plans = [plan_spec_from_version(v) for v in live_versions()]
    return CatalogSpec(
        currency=plans[0].currency if plans else "USD",
        metrics=list(metric_specs().values()),
        features=list(feature_specs().values()),
        plans=plans,
    )
