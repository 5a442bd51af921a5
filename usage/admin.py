"""Usage in the admin: read-only (events are append-only; rollups are derived)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import AggregationWatermark, UsageEvent, UsageRollup


class ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnly):
    list_display = ["id", "tenant", "metric", "quantity", "occurred_at", "received_at", "late", "correlation_id"]
    list_filter = ["metric", "late"]
    search_fields = ["tenant__external_id", "idempotency_key", "correlation_id"]
    list_select_related = ["tenant", "metric"]
    show_full_result_count = False  # a count over millions of rows on every page is not free


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnly):
    list_display = ["tenant", "metric", "hour", "count", "sum", "max", "latest_value"]
    list_filter = ["metric"]
    list_select_related = ["tenant", "metric"]


@admin.register(AggregationWatermark)
class AggregationWatermarkAdmin(ReadOnly):
    list_display = ["name", "received_up_to", "runs", "events_aggregated", "updated_at"]
