"""The catalog: what can be sold and at what price.

Plans are configuration, versioned: a published PlanVersion is immutable (a
PostgreSQL trigger refuses edits to it and to its charges, tiers and
entitlements), subscriptions point at the version they bought, and a price
change is a new version.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper

from billing_project.money import format_decimal, quantity_display

# Prices: max_digits=24, decimal_places=10 (sub-cent unit prices such as 0.00002).
# Quantities: max_digits=30, decimal_places=6.


class BillableMetric(models.Model):
    """Something measured from usage events and aggregated per billing period."""

    class Aggregation(models.TextChoices):
        COUNT = "count"
        SUM = "sum"
        MAX = "max"
        UNIQUE_COUNT = "unique_count"
        LATEST = "latest"

    code = models.SlugField(max_length=100, unique=True, help_text="What services send as `metric`.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    aggregation = models.CharField(max_length=20, choices=Aggregation.choices)
    properties = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="The only property keys usage events may carry (no personal data in billing).",
    )
    unique_property = models.CharField(
        max_length=100, null=True, blank=True, help_text="Counted distinct per period (unique_count)."
    )
    personal_properties = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="Properties whose values identify a person: stored as keyed pseudonyms (usage/pseudonyms.py).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                name="metric_aggregation_valid",
                condition=Q(aggregation__in=["count", "sum", "max", "unique_count", "latest"]),
            ),
            models.CheckConstraint(
                name="metric_unique_count_has_property",
                condition=~Q(aggregation="unique_count") | Q(unique_property__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.code


class Feature(models.Model):
    """A capability services ask about: boolean (on/off) or metered by a metric."""

    class OnUnavailable(models.TextChoices):
        ALLOW = "allow"
        DENY = "deny"

    code = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    metric = models.ForeignKey(
        BillableMetric,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="features",
        help_text="Empty for an on/off feature; its usage is this metric's aggregate otherwise.",
    )
    on_unavailable = models.CharField(
        max_length=5,
        choices=OnUnavailable.choices,
        default=OnUnavailable.DENY,
        help_text="What services should do when billing cannot be reached.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                name="feature_on_unavailable_valid", condition=Q(on_unavailable__in=["allow", "deny"])
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def is_metered(self) -> bool:
        return self.metric_id is not None


class Plan(models.Model):
    """A product on the price list. What it costs lives in its versions."""

    code = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class PlanVersion(models.Model):
    """One priced edition of a plan. Draft → published (immutable) → archived."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        PUBLISHED = "published"
        ARCHIVED = "archived"

    class Interval(models.TextChoices):
        MONTH = "month"
        YEAR = "year"

    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField(
        null=True, blank=True, editable=False, help_text="Numbered when published: 1, 2, 3…"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, editable=False)
    interval = models.CharField(max_length=5, choices=Interval.choices, default=Interval.MONTH)
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217")
    base_fee = models.DecimalField(
        max_digits=24, decimal_places=10, default=0, help_text="Billed in advance each period."
    )
    trial_days = models.PositiveIntegerField(default=0)
    content_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["plan__code", "-version"]
        permissions = [("publish_planversion", "Can publish and archive plan versions")]
        constraints = [
            models.UniqueConstraint(fields=["plan", "version"], name="planversion_number_unique"),
            models.UniqueConstraint(
                fields=["plan"], condition=Q(status="draft"), name="planversion_one_draft_per_plan"
            ),
            # One live price-list entry per plan: publishing archives the previous version.
            models.UniqueConstraint(
                fields=["plan"], condition=Q(status="published"), name="planversion_one_published_per_plan"
            ),
            models.CheckConstraint(
                name="planversion_status_valid", condition=Q(status__in=["draft", "published", "archived"])
            ),
            models.CheckConstraint(name="planversion_interval_valid", condition=Q(interval__in=["month", "year"])),
            models.CheckConstraint(name="planversion_base_fee_not_negative", condition=Q(base_fee__gte=0)),
            models.CheckConstraint(name="planversion_currency_upper", condition=Q(currency=Upper("currency"))),
            models.CheckConstraint(
                name="planversion_published_is_numbered",
                condition=Q(status="draft") | (Q(version__isnull=False) & Q(published_at__isnull=False)),
            ),
        ]

    def __str__(self) -> str:
        label = f"v{self.version}" if self.version else "draft"
        return f"{self.plan.code} {label}"

    def clean(self) -> None:
        self.currency = (self.currency or "").strip().upper()

    @property
    def is_draft(self) -> bool:
        return self.status == self.Status.DRAFT


class Charge(models.Model):
    """A usage-based price on a plan version, billed in arrears on the period's aggregate."""

    class Model(models.TextChoices):
        PER_UNIT = "per_unit", "per unit"
        PACKAGE = "package"
        GRADUATED = "graduated"
        VOLUME = "volume"

    version = models.ForeignKey(PlanVersion, on_delete=models.CASCADE, related_name="charges")
    metric = models.ForeignKey(BillableMetric, on_delete=models.PROTECT, related_name="charges")
    model = models.CharField(max_length=10, choices=Model.choices)
    position = models.PositiveIntegerField(default=0)
    unit_price = models.DecimalField(max_digits=24, decimal_places=10, null=True, blank=True, help_text="per_unit")
    package_size = models.DecimalField(max_digits=30, decimal_places=6, null=True, blank=True, help_text="package")
    package_price = models.DecimalField(max_digits=24, decimal_places=10, null=True, blank=True, help_text="package")
    free_units = models.DecimalField(max_digits=30, decimal_places=6, default=0, help_text="package")

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "metric"], name="charge_one_per_metric"),
            models.CheckConstraint(
                name="charge_model_valid",
                condition=Q(model__in=["per_unit", "package", "graduated", "volume"]),
            ),
            models.CheckConstraint(
                name="charge_per_unit_priced",
                condition=~Q(model="per_unit") | Q(unit_price__isnull=False, unit_price__gte=0),
            ),
            models.CheckConstraint(
                name="charge_package_priced",
                condition=~Q(model="package")
                | Q(package_size__gt=0, package_price__isnull=False, package_price__gte=0),
            ),
            models.CheckConstraint(name="charge_free_units_not_negative", condition=Q(free_units__gte=0)),
        ]

    def __str__(self) -> str:
        return f"{self.metric.code} ({self.model})"


class ChargeTier(models.Model):
    """A tier of a graduated or volume charge; `up_to` is inclusive, empty on the last tier."""

    charge = models.ForeignKey(Charge, on_delete=models.CASCADE, related_name="tiers")
    position = models.PositiveIntegerField()
    up_to = models.DecimalField(max_digits=30, decimal_places=6, null=True, blank=True)
    unit_price = models.DecimalField(max_digits=24, decimal_places=10, default=0)
    flat_fee = models.DecimalField(max_digits=24, decimal_places=10, default=0)

    class Meta:
        ordering = ["charge", "position"]
        constraints = [
            models.UniqueConstraint(fields=["charge", "position"], name="chargetier_position_unique"),
            models.CheckConstraint(name="chargetier_up_to_positive", condition=Q(up_to__isnull=True) | Q(up_to__gt=0)),
            models.CheckConstraint(
                name="chargetier_prices_not_negative", condition=Q(unit_price__gte=0, flat_fee__gte=0)
            ),
        ]

    def __str__(self) -> str:
        bound = quantity_display(self.up_to) if self.up_to is not None else "∞"
        fee = f" + {format_decimal(self.flat_fee)}" if self.flat_fee else ""
        return f"up to {bound} @ {format_decimal(self.unit_price)}{fee}"


class PlanEntitlement(models.Model):
    """What a plan version lets a tenant do with a feature."""

    class Overage(models.TextChoices):
        BLOCK = "block"
        BILL = "bill"

    version = models.ForeignKey(PlanVersion, on_delete=models.CASCADE, related_name="entitlements")
    feature = models.ForeignKey(Feature, on_delete=models.PROTECT, related_name="plan_entitlements")
    enabled = models.BooleanField(default=True)
    limit = models.DecimalField(
        max_digits=30,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Per period, metered features only; empty = unlimited.",
    )
    overage = models.CharField(
        max_length=5,
        choices=Overage.choices,
        default=Overage.BLOCK,
        help_text="Past the limit: refuse (block) or allow and bill the usage.",
    )

    class Meta:
        ordering = ["version", "feature__code"]
        constraints = [
            models.UniqueConstraint(fields=["version", "feature"], name="planentitlement_one_per_feature"),
            models.CheckConstraint(
                name="planentitlement_limit_not_negative", condition=Q(limit__isnull=True) | Q(limit__gte=0)
            ),
            models.CheckConstraint(name="planentitlement_overage_valid", condition=Q(overage__in=["block", "bill"])),
        ]

    def __str__(self) -> str:
        return f"{self.feature.code}: {'on' if self.enabled else 'off'}"
