"""For the alert rules: the aggregation lag, how long the oldest event not yet in the rollups
has waited (0 when every event is in), on the database's clock; and the usage partitions,
how many months ahead exist and how many events the default partition caught."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.utils import timezone
from prometheus_client.core import Metric

from billing_project.observability import gauge, state_reader

from .partitions import default_partition_events, months_ahead


@state_reader("usage_aggregation")
def aggregation_lag() -> Iterable[Metric]:
    with connection.cursor() as cursor:  # by the received_at index: the first event past the mark
        cursor.execute(
            "SELECT coalesce(extract(epoch FROM statement_timestamp() - ("
            "  SELECT e.received_at FROM usage_usageevent e"
            "  WHERE e.received_at > coalesce((SELECT received_up_to FROM usage_aggregationwatermark"
            "                                  WHERE name = 'usage'), '-infinity')"
            "  ORDER BY e.received_at LIMIT 1)), 0)"
        )
        row = cursor.fetchone()
    lag = float(row[0]) if row else 0.0  # seconds of time, not money: a gauge's value is a float
    yield gauge(
        "billing_usage_aggregation_lag_seconds", "Age of the oldest usage event not in the rollups yet", max(lag, 0.0)
    )


@state_reader("usage_partitions")
def usage_partitions() -> Iterable[Metric]:
    yield gauge(
        "billing_usage_partition_months_ahead",
        "Months after the current one whose usage partition exists (-1: not even this month's)",
        months_ahead(now=timezone.now()),
    )
    yield gauge(
        "billing_usage_default_partition_events",
        "Usage events in the default partition, waiting to be moved into their month's partition",
        default_partition_events(),
    )
