"""Catalog services: every write to features, metrics, plans and their versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from billing_project.cache import catalog_changed
from billing_project.errors import Conflict

from .catalog import CatalogError, CatalogSpec, MetricSpec, PlanSpec, Problem, parse_catalog
from .models import BillableMetric, Charge, ChargeTier, Feature, Plan, PlanEntitlement, PlanVersion
from .selectors import feature_specs, metric_specs, plan_spec_from_version, plans_in_use_by_metric


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.published)

    def lines(self) -> list[str]:
        out = [f"created   {x}" for x in self.created]
        out += [f"updated   {x}" for x in self.updated]
        out += [f"published {x}" for x in self.published]
        out.append(f"{len(self.unchanged)} unchanged" if self.changed else "no changes")
        return out


def catalog_validate(doc: object) -> CatalogSpec:
    """Parse and check a catalog document against itself and the database; raise
    CatalogError listing every problem, or return the spec, writing nothing."""
    known_metrics, known_features = metric_specs(), feature_specs()
    spec, problems = parse_catalog(doc, known_metrics=known_metrics, known_features=known_features)
    for i, metric in enumerate(spec.metrics):
        problems += _metric_change_problems(f"metrics[{i}]", known_metrics.get(metric.code), metric)
    for i, feature in enumerate(spec.features):
        existing = known_features.get(feature.code)
        if existing is not None and existing.metric != feature.metric:
            problems.append(Problem(f"features[{i}].metric", "a feature's metric cannot change; create a new feature"))
    if problems:
        raise CatalogError(problems)
    return spec


def _metric_change_problems(path: str, old: MetricSpec | None, new: MetricSpec) -> list[Problem]:
    if old is None:
        return []
    problems = []
    in_use = plans_in_use_by_metric(new.code)
    if in_use and old.aggregation != new.aggregation:
        problems.append(
            Problem(
                f"{path}.aggregation",
                f"cannot change while plans charge it ({', '.join(in_use)}); create a new metric",
            )
        )
    if in_use and old.unique_property != new.unique_property:
        problems.append(Problem(f"{path}.unique_property", "cannot change while plans charge it"))
    removed = set(old.properties) - set(new.properties)
    if removed:
        problems.append(
            Problem(
                f"{path}.properties",
                f"keys cannot be removed ({', '.join(sorted(removed))}): stored usage events carry them",
            )
        )
    # A key is personal from its first event or never: stored values of a key already in use
    # are in clear, and pseudonyms of new ones would count apart from them.
    unmarked = set(old.personal) - set(new.personal)
    if unmarked:
        problems.append(Problem(f"{path}.personal", f"keys stay personal ({', '.join(sorted(unmarked))})"))
    marked = (set(new.personal) - set(old.personal)) & set(old.properties)
    if marked:
        problems.append(
            Problem(
                f"{path}.personal",
                f"keys already in use cannot become personal ({', '.join(sorted(marked))}): their stored values "
                "are not pseudonyms; declare a new key",
            )
        )
    return problems


@transaction.atomic
def catalog_import(*, spec: CatalogSpec) -> ImportReport:
    """Apply a validated catalog: upsert metrics and features, publish a new version
    of every plan whose terms changed. Importing the same file again changes nothing.
    Nothing is deleted: entries absent from the file are left as they are."""
    report = ImportReport()
    catalog_changed()
    for m in spec.metrics:
        _upsert(
            report,
            BillableMetric,
            f"metric {m.code}",
            code=m.code,
            values={
                "name": m.name,
                "aggregation": m.aggregation,
                "properties": list(m.properties),
                "unique_property": m.unique_property,
                "description": m.description,
                "personal_properties": list(m.personal),
            },
        )
    metrics = {m.code: m for m in BillableMetric.objects.all()}
    for f in spec.features:
        _upsert(
            report,
            Feature,
            f"feature {f.code}",
            code=f.code,
            values={
                "name": f.name,
                "metric": metrics.get(f.metric) if f.metric else None,
                "on_unavailable": f.on_unavailable,
                "description": f.description,
            },
        )
    for p in spec.plans:
        plan = cast(
            Plan,
            _upsert(report, Plan, f"plan {p.code}", code=p.code, values={"name": p.name, "description": p.description}),
        )
        current = PlanVersion.objects.filter(plan=plan, status=PlanVersion.Status.PUBLISHED).first()
        if current is not None and current.content_hash == p.content_hash():
            report.unchanged.append(f"plan {p.code} v{current.version}")
            continue
        draft = plan_version_draft_from_spec(plan=plan, spec=p, replace_draft=False)
        version = plan_version_publish(version=draft)
        report.published.append(f"plan {p.code} v{version.version}")
    return report


def _upsert(report: ImportReport, model: type, label: str, *, code: str, values: dict[str, object]) -> object:
    obj = model.objects.select_for_update().filter(code=code).first()  # type: ignore[attr-defined]
    if obj is None:
        obj = model.objects.create(code=code, **values)  # type: ignore[attr-defined]
        report.created.append(label)
        return obj
    changed = [k for k, v in values.items() if getattr(obj, k) != v]
    if changed:
        for k in changed:
            setattr(obj, k, values[k])
        obj.save(update_fields=changed)
        report.updated.append(f"{label} ({', '.join(changed)})")
    else:
        report.unchanged.append(label)
    return obj


@transaction.atomic
def plan_version_draft_from_spec(*, plan: Plan, spec: PlanSpec, replace_draft: bool = True) -> PlanVersion:
    """A draft version of `plan` holding exactly the terms of `spec`."""
    draft = PlanVersion.objects.filter(plan=plan, status=PlanVersion.Status.DRAFT).first()
    if draft is not None:
        if not replace_draft:
            raise Conflict(
                f"plan {plan.code} has an unpublished draft; publish or delete it first", code="draft_exists"
            )
        draft.delete()
    version = PlanVersion.objects.create(
        plan=plan,
        interval=spec.interval,
        currency=spec.currency,
        base_fee=spec.base_fee,
        trial_days=spec.trial_days,
    )
    metrics = {m.code: m for m in BillableMetric.objects.filter(code__in=[c.metric for c in spec.charges])}
    for position, c in enumerate(spec.charges):
        charge = Charge.objects.create(
            version=version,
            metric=metrics[c.metric],
            model=c.model,
            position=position,
            unit_price=c.unit_price,
            package_size=c.package_size,
            package_price=c.package_price,
            free_units=c.free_units,
        )
        for tier_position, t in enumerate(c.tiers):
            ChargeTier.objects.create(
                charge=charge,
                position=tier_position,
                up_to=t.up_to,
                unit_price=t.unit_price,
                flat_fee=t.flat_fee,
            )
    features = {f.code: f for f in Feature.objects.filter(code__in=[e.feature for e in spec.entitlements])}
    for e in spec.entitlements:
        PlanEntitlement.objects.create(
            version=version, feature=features[e.feature], enabled=e.enabled, limit=e.limit, overage=e.overage
        )
    return version


@transaction.atomic
def plan_version_publish(*, version: PlanVersion) -> PlanVersion:
    """Make a draft the plan's live version. The previous live version is archived
    (its subscriptions keep it); the new one is immutable from here on."""
    plan = Plan.objects.select_for_update().get(pk=version.plan_id)  # serialises publishes of one plan
    catalog_changed()
    version = PlanVersion.objects.select_for_update().get(pk=version.pk)
    if not version.is_draft:
        raise Conflict(f"{version} is already {version.status}", code="version_not_draft")
    spec = plan_spec_from_version(version)
    problems = _stray_charge_fields(version)
    _, more = parse_catalog(
        {"plans": [_spec_as_file(spec)]}, known_metrics=metric_specs(), known_features=feature_specs()
    )
    problems += more
    if problems:
        raise CatalogError(
            [Problem(f"{plan.code} draft{p.path.removeprefix('plans[0]')}", p.message) for p in problems]
        )
    now = timezone.now()
    for previous in PlanVersion.objects.select_for_update().filter(plan=plan, status=PlanVersion.Status.PUBLISHED):
        previous.status = PlanVersion.Status.ARCHIVED
        previous.archived_at = now
        previous.save(update_fields=["status", "archived_at"])
    number = (PlanVersion.objects.filter(plan=plan).aggregate(n=Max("version"))["n"] or 0) + 1
    version.version = number
    version.status = PlanVersion.Status.PUBLISHED
    version.published_at = now
    version.content_hash = spec.content_hash()
    version.save(update_fields=["version", "status", "published_at", "content_hash"])
    return version


_CHARGE_FIELDS = {
    "per_unit": {"unit_price"},
    "package": {"package_size", "package_price", "free_units"},
    "graduated": {"tiers"},
    "volume": {"tiers"},
}


def _stray_charge_fields(version: PlanVersion) -> list[Problem]:
    """Values a draft's charge carries that its model ignores: refused, never silently dropped."""
    problems = []
    for i, charge in enumerate(version.charges.order_by("position")):
        present = {f for f in ("unit_price", "package_size", "package_price") if getattr(charge, f) is not None}
        if charge.free_units:
            present.add("free_units")
        if charge.tiers.exists():
            present.add("tiers")
        for name in sorted(present - _CHARGE_FIELDS[charge.model]):
            problems.append(Problem(f"plans[0].charges[{i}].{name}", f"does not apply to the {charge.model} model"))
    return problems


def _spec_as_file(spec: PlanSpec) -> dict[str, object]:
    from .catalog import version_document

    return {"code": spec.code, "name": spec.name, **version_document(spec)}


@transaction.atomic
def plan_version_archive(*, version: PlanVersion) -> PlanVersion:
    """Retire a plan's live version: no new subscriptions; existing ones keep it."""
    version = PlanVersion.objects.select_for_update().get(pk=version.pk)
    if version.status != PlanVersion.Status.PUBLISHED:
        raise Conflict(
            f"{version} is {version.status}; only a published version can be archived",
            code="version_not_published",
        )
    version.status = PlanVersion.Status.ARCHIVED
    version.archived_at = timezone.now()
    version.save(update_fields=["status", "archived_at"])
    return version


@transaction.atomic
def plan_version_copy_to_draft(*, version: PlanVersion) -> PlanVersion:
    """Start editing: a draft holding the terms of an existing version."""
    plan = Plan.objects.select_for_update().get(pk=version.plan_id)
    return plan_version_draft_from_spec(plan=plan, spec=plan_spec_from_version(version), replace_draft=False)
