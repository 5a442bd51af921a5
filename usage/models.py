"""Usage: what product services report, stored once per (tenant, idempotency key),
never edited, and rolled up per tenant, metric and hour for fast exact reads."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from billing_project.money import quantity_display


class UsageEvent(models.Model):
    """One reported use of a metric. Append-only: a PostgreSQL trigger refuses UPDATE,
    DELETE and TRUNCATE; a correction is a new event (an adjustment), never an edit.

    The table is range-partitioned by month of `occurred_at` (usage/partitions.py), so a
    month past invoicing and re-pricing can be detached whole. PostgreSQL can only enforce
    a unique index that holds the partition key, so idempotency lives in UsageEventKey,
    one row per event, written in the same statement.

    Two idempotency spaces that cannot meet: an event a service reported through the usage
    API is unique per (tenant, idempotency key); the events an entitlements/consume
    recorded are unique per (tenant, consume key, use), apart from every reported event,
    so no key a client sends can stand in for a consume's record or the other way round."""

    class Origin(models.TextChoices):
        REPORTED = "reported", "reported through the usage API"
        CONSUME = "consume", "recorded by entitlements/consume"

    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="usage_events")
    metric = models.ForeignKey("plans.BillableMetric", on_delete=models.PROTECT, related_name="usage_events")
    quantity = models.DecimalField(max_digits=30, decimal_places=6)
    properties = models.JSONField(default=dict, blank=True, help_text="Only keys the metric declares.")
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(
        help_text="The ingesting transaction's start (PostgreSQL now()): the aggregation watermark's clock."
    )
    reported_by = models.ForeignKey(
        "billing_project.ApiKey", on_delete=models.PROTECT, related_name="+", help_text="The service's key."
    )
    idempotency_key = models.CharField(
        max_length=255, help_text="The service's key; for a consume's events, the consume's key."
    )
    origin = models.CharField(max_length=8, choices=Origin.choices, default=Origin.REPORTED, db_default="reported")
    use = models.PositiveIntegerField(
        default=1, db_default=1, help_text="Which of a consume's uses (1…N) this event is; 1 for a reported event."
    )
    payload_hash = models.CharField(max_length=64, help_text="Tells a retried duplicate from a conflicting reuse.")
    correlation_id = models.CharField(max_length=255, blank=True, db_index=True)
    late = models.BooleanField(
        default=False, help_text="It belongs to a period already closed for invoicing: bill it as an adjustment."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(name="usageevent_origin_valid", condition=Q(origin__in=["reported", "consume"])),
            models.CheckConstraint(name="usageevent_reported_use_one", condition=~Q(origin="reported") | Q(use=1)),
            models.CheckConstraint(name="usageevent_quantity_not_negative", condition=Q(quantity__gte=0)),
        ]
        indexes = [
            models.Index(fields=["tenant", "metric", "occurred_at"], name="usageevent_period_idx"),
            models.Index(fields=["received_at"], name="usageevent_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.metric_id} {quantity_display(self.quantity)} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class UsageEventKey(models.Model):
    """The idempotency key of one usage event, unique across every month's partition: the
    (tenant, origin, key, use) an event was stored under, and what it said. Written in the
    same statement as its event; kept when the event's partition is detached, so a retry
    of an archived event is still a duplicate, never a second event."""

    event_id = models.BigIntegerField(primary_key=True)
    # no constraint or index of its own: the event row holds the tenant's foreign key, the
    # unique key below leads with tenant, and each would cost every ingested event a check
    tenant = models.ForeignKey(
        "subscriptions.Tenant", on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    origin = models.CharField(max_length=8, choices=UsageEvent.Origin.choices)
    idempotency_key = models.CharField(max_length=255)
    use = models.PositiveIntegerField(default=1)
    payload_hash = models.CharField(max_length=64, help_text="Tells a retried duplicate from a conflicting reuse.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "origin", "idempotency_key", "use"], name="usageeventkey_once"),
            models.CheckConstraint(name="usageeventkey_reported_use_one", condition=~Q(origin="reported") | Q(use=1)),
        ]

    def __str__(self) -> str:
        return f"{self.origin} {self.idempotency_key} #{self.use} → {self.event_id}"


class DetachedUsagePartition(models.Model):
    """A month of usage events taken out of `usage_usageevent` (usage/partitions.py): its
    table stays in the database, under `table`, until the operator archives and drops it.
    Its periods were invoiced and past re-pricing when it was detached."""

    table = models.CharField(max_length=63, unique=True)
    month = models.DateTimeField(help_text="The month's first instant (UTC).")
    events = models.BigIntegerField()
    detached_at = models.DateTimeField(auto_now_add=True)
    detached_by = models.CharField(max_length=150, help_text="Who ran the detach (the command's operator).")

    def __str__(self) -> str:
        return f"{self.table} ({self.events} events)"


class UsageRollup(models.Model):
    """Usage per tenant, metric and hour of `occurred_at`, for every event received up to
    the watermark. Exact for count, sum, max and latest; unique_count keeps its values
    in UsageUniqueValue."""

    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="+")
    metric = models.ForeignKey("plans.BillableMetric", on_delete=models.PROTECT, related_name="+")
    hour = models.DateTimeField()
    count = models.BigIntegerField(default=0)
    sum = models.DecimalField(max_digits=38, decimal_places=6, default=0)
    max = models.DecimalField(max_digits=30, decimal_places=6, null=True)
    latest_at = models.DateTimeField(null=True)
    latest_event_id = models.BigIntegerField(null=True)
    latest_value = models.DecimalField(max_digits=30, decimal_places=6, null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "metric", "hour"], name="usagerollup_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.metric_id} {self.hour:%Y-%m-%d %H}:00 ×{self.count}"


class UsageUniqueValue(models.Model):
    """The distinct values of a unique_count metric's property, per tenant and hour."""

    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="+")
    metric = models.ForeignKey("plans.BillableMetric", on_delete=models.PROTECT, related_name="+")
    hour = models.DateTimeField()
    value = models.CharField(max_length=255)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "metric", "hour", "value"], name="usageuniquevalue_once"),
        ]

    def __str__(self) -> str:
        return f"{self.metric_id} {self.hour:%Y-%m-%d %H}:00 {self.value}"


class AggregationWatermark(models.Model):
    """Every event with received_at ≤ `received_up_to` is in the rollups; nothing newer is.
    One row, moved in the same transaction as the rollups it describes."""

    name = models.CharField(max_length=50, unique=True, default="usage")
    received_up_to = models.DateTimeField()
    runs = models.BigIntegerField(default=0)
    events_aggregated = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.received_up_to.isoformat()}"


class CounterRepair(models.Model):
    """A Redis usage counter that missed an update (Redis did not answer the ingesting
    transaction's mark or increment). usage.counters drops it before any counter is
    trusted again, so that it is rebuilt from PostgreSQL; then this row goes."""

    key = models.CharField(max_length=200)
    recorded_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.key} (since {self.recorded_at:%Y-%m-%d %H:%M:%S})"
