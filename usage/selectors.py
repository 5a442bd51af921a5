"""Usage reads. `usage_over` is the one exact answer to "how much of metric M did tenant T
use over [start, end)": rollups for whole hours up to the watermark, raw events for the
rest (the partial hours at either end, and everything received after the watermark),
read in one statement so that both halves come from one snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from plans.models import BillableMetric

from .aggregation import WATERMARK

# %(…)s: tenant, metric, start, end, full_start, full_end (whole hours inside [start, end))
_RAW = """
    SELECT e.id, e.quantity, e.occurred_at, e.properties FROM usage_usageevent e, wm
     WHERE e.tenant_id = %(tenant)s AND e.metric_id = %(metric)s
       AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
       AND (e.occurred_at < %(full_start)s OR e.occurred_at >= %(full_end)s OR e.received_at >= wm.at)
"""
_WM = f"""
WITH wm AS (SELECT COALESCE((SELECT received_up_to FROM usage_aggregationwatermark WHERE name = '{WATERMARK}'),
                            '1970-01-01T00:00:00Z'::timestamptz) AS at),
raw AS ({_RAW}),
rolled AS (SELECT * FROM usage_usagerollup
            WHERE tenant_id = %(tenant)s AND metric_id = %(metric)s
              AND hour >= %(full_start)s AND hour < %(full_end)s)
"""
QUERIES = {
    "count": _WM + "SELECT (SELECT COALESCE(sum(count), 0) FROM rolled) + (SELECT count(*) FROM raw)",
    "sum": _WM + "SELECT (SELECT COALESCE(sum(sum), 0) FROM rolled) + (SELECT COALESCE(sum(quantity), 0) FROM raw)",
    "max": _WM + "SELECT GREATEST((SELECT max(max) FROM rolled), (SELECT max(quantity) FROM raw))",
    "latest": _WM
    + """
        SELECT value FROM (
            SELECT latest_at AS at, latest_event_id AS id, latest_value AS value FROM rolled
            UNION ALL SELECT occurred_at, id, quantity FROM raw
        ) candidates ORDER BY at DESC, id DESC LIMIT 1""",
    "unique_count": _WM
    + """
        SELECT count(DISTINCT value) FROM (
            SELECT value FROM usage_usageuniquevalue
             WHERE tenant_id = %(tenant)s AND metric_id = %(metric)s
               AND hour >= %(full_start)s AND hour < %(full_end)s
            UNION ALL SELECT properties ->> %(unique_property)s FROM raw
             WHERE properties ? %(unique_property)s
        ) v""",
}


@dataclass(frozen=True)
class HourRange:
    full_start: datetime
    full_end: datetime


def whole_hours(start: datetime, end: datetime) -> HourRange:
    """The whole hours inside [start, end); empty (start == end) when there are none."""
    full_start = start.replace(minute=0, second=0, microsecond=0)
    if full_start < start:
        full_start += timedelta(hours=1)
    full_end = end.replace(minute=0, second=0, microsecond=0)
    if full_end <= full_start:
        return HourRange(start, start)  # no whole hour: everything is read raw
    return HourRange(full_start, full_end)


def usage_over(*, tenant_id: int, metric: BillableMetric, start: datetime, end: datetime) -> Decimal | None:
    """The metric's aggregate over [start, end) (occurred_at), exact. `latest` and `max`
    are None when nothing was reported."""
    hours = whole_hours(start, end)
    params: dict[str, Any] = {
        "tenant": tenant_id,
        "metric": metric.pk,
        "start": start,
        "end": end,
        "full_start": hours.full_start,
        "full_end": hours.full_end,
        "unique_property": metric.unique_property or "",
    }
    with connection.cursor() as cursor:
        cursor.execute(QUERIES[metric.aggregation], params)
        row = cursor.fetchone()
    value = row[0] if row else None
    return Decimal(value) if value is not None else None


UNIQUE_VALUES = """
SELECT DISTINCT properties ->> %(prop)s FROM usage_usageevent
 WHERE tenant_id = %(tenant)s AND metric_id = %(metric)s AND occurred_at >= %(start)s AND occurred_at < %(end)s
   AND properties ? %(prop)s
"""


def unique_values_over(
    *, tenant_id: int, metric_id: int, unique_property: str, start: datetime, end: datetime
) -> set[str]:
    """The distinct values of a unique_count metric over [start, end), from the events."""
    with connection.cursor() as cursor:
        cursor.execute(
            UNIQUE_VALUES,
            {"prop": unique_property, "tenant": tenant_id, "metric": metric_id, "start": start, "end": end},
        )
        return {row[0] for row in cursor.fetchall()}
