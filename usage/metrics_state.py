"""Aggregation lag for the alert rules: how long the oldest event not yet in the rollups has
waited (0 when every event is in), on the database's clock."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from prometheus_client.core import Metric

from billing_project.observability import gauge, state_reader


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
