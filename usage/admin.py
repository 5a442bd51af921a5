"""Usage in the admin: read-only (events are append-only; rollups are derived)."""

from __future__ import annotations

from django.contrib import admin

from billing_project.admin_base import ReadOnlyAdmin, ShownAs, quantity_column

from .models import AggregationWatermark, DetachedUsagePartition, UsageEvent, UsageRollup


@admin.register(UsageEvent)
class UsageEventAdmin(ShownAs, ReadOnlyAdmin):
    list_display = ["id", "tenant", "metric", "units", "occurred_at", "received_at", "late", "correlation_id"]
    shown_as = {"quantity": "units"}
    units = quantity_column("quantity")
    list_filter = ["metric", "late"]
    search_fields = ["tenant__external_id", "idempotency_key", "correlation_id"]
    list_select_related = ["tenant", "metric"]
    show_full_result_count = False  # a count over millions of rows on every page is not free


@admin.register(UsageRollup)
class UsageRollupAdmin(ShownAs, ReadOnlyAdmin):
    list_display = ["tenant", "metric", "hour", "count", "total", "largest", "latest"]
    shown_as = {"sum": "total", "max": "largest", "latest_value": "latest"}
    total = quantity_column("sum")
    largest = quantity_column("max")
    latest = quantity_column("latest_value", description="latest value")
    list_filter = ["metric"]
    list_select_related = ["tenant", "metric"]


@admin.register(AggregationWatermark)
class AggregationWatermarkAdmin(ReadOnlyAdmin):
    list_display = ["name", "received_up_to", "runs", "events_aggregated", "updated_at"]


@admin.register(DetachedUsagePartition)
class DetachedUsagePartitionAdmin(ReadOnlyAdmin):
    """Months of usage events taken out of the table (manage.py usage_partitions detach)."""

    list_display = ["table", "month", "events", "detached_at", "detached_by"]
