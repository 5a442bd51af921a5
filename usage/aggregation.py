"""Aggregation of usage events into hourly rollups, driven by a watermark on received_at.

One run is one transaction: lock the watermark row, pick an upper bound, fold every
event received in [watermark, bound) into the rollups (and the distinct values of
unique_count metrics), move the watermark to the bound, commit. A run killed at any
point (kill -9 included) rolls back whole, so the next run starts from the same
watermark: nothing is counted twice and nothing is skipped.

Why the bound is safe: an event's received_at is its inserting transaction's start
(PostgreSQL now()). The bound is the start of the oldest transaction still running
(or now), so every event with received_at below it is already committed and visible;
one in flight has received_at ≥ the bound and is taken by a later run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

WATERMARK = "usage"
DEFAULT_LIMIT = 200_000

# The bound is only safe if every other session's transaction start is visible.
VISIBILITY = """
SELECT current_setting('track_activities') = 'on',
       NOT EXISTS (SELECT 1 FROM pg_stat_activity
                    WHERE datname = current_database() AND query = '<insufficient privilege>')
"""

BOUND = """
SELECT LEAST(now(), COALESCE(
    (SELECT min(xact_start) FROM pg_stat_activity
      WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database()),
    now()))
"""

# The received_at just past the `limit`-th pending event, so a run takes whole
# timestamp groups (a batch shares one received_at) and always makes progress.
NEXT_CUT = """
SELECT min(received_at) FROM usage_usageevent
 WHERE received_at > (SELECT received_at FROM usage_usageevent WHERE received_at >= %s
                      ORDER BY received_at OFFSET %s LIMIT 1)
"""

FOLD = """
WITH batch AS (
    SELECT id, tenant_id, metric_id, date_trunc('hour', occurred_at) AS hour, quantity, occurred_at, properties
      FROM usage_usageevent
     WHERE received_at >= %(low)s AND received_at < %(high)s
), rolled AS (
    INSERT INTO usage_usagerollup AS r
           (tenant_id, metric_id, hour, count, sum, max, latest_at, latest_event_id, latest_value)
    SELECT tenant_id, metric_id, hour, count(*), sum(quantity), max(quantity),
           (array_agg(occurred_at ORDER BY occurred_at DESC, id DESC))[1],
           (array_agg(id ORDER BY occurred_at DESC, id DESC))[1],
           (array_agg(quantity ORDER BY occurred_at DESC, id DESC))[1]
      FROM batch GROUP BY tenant_id, metric_id, hour
    ON CONFLICT (tenant_id, metric_id, hour) DO UPDATE SET
           count = r.count + EXCLUDED.count,
           sum = r.sum + EXCLUDED.sum,
           max = GREATEST(r.max, EXCLUDED.max),
           latest_at = CASE WHEN (EXCLUDED.latest_at, EXCLUDED.latest_event_id) > (r.latest_at, r.latest_event_id)
                            THEN EXCLUDED.latest_at ELSE r.latest_at END,
           latest_value = CASE WHEN (EXCLUDED.latest_at, EXCLUDED.latest_event_id) > (r.latest_at, r.latest_event_id)
                               THEN EXCLUDED.latest_value ELSE r.latest_value END,
           latest_event_id = CASE WHEN (EXCLUDED.latest_at, EXCLUDED.latest_event_id)
                                       > (r.latest_at, r.latest_event_id)
                                  THEN EXCLUDED.latest_event_id ELSE r.latest_event_id END
    RETURNING 1
), uniques AS (
    INSERT INTO usage_usageuniquevalue (tenant_id, metric_id, hour, value)
    SELECT DISTINCT b.tenant_id, b.metric_id, b.hour, b.properties ->> m.unique_property
      FROM batch b JOIN plans_billablemetric m ON m.id = b.metric_id
     WHERE m.aggregation = 'unique_count' AND b.properties ? m.unique_property
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM rolled), (SELECT count(*) FROM uniques)
"""


@dataclass(frozen=True)
class AggregationRun:
    low: datetime
    high: datetime
    events: int
    buckets: int


@transaction.atomic
def usage_aggregate(*, limit: int = DEFAULT_LIMIT, up_to: datetime | None = None) -> AggregationRun:
    """Fold the next slice of received events into the rollups (one transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO usage_aggregationwatermark (name, received_up_to, runs, events_aggregated, updated_at)"
            " VALUES (%s, '1970-01-01T00:00:00Z', 0, 0, now()) ON CONFLICT (name) DO NOTHING",
            [WATERMARK],
        )
        cursor.execute("SELECT received_up_to FROM usage_aggregationwatermark WHERE name = %s FOR UPDATE", [WATERMARK])
        (low,) = cursor.fetchone()
        cursor.execute(VISIBILITY)
        tracked, visible = cursor.fetchone()
        if not (tracked and visible):
            # Without seeing every transaction's start, an event could commit behind the
            # watermark and never be counted: refuse loudly (the task lands in TaskFailure).
            raise RuntimeError(
                "usage aggregation needs track_activities = on and a role that sees every session in "
                "pg_stat_activity (the same role, or pg_read_all_stats)"
            )
        cursor.execute(BOUND)
        (high,) = cursor.fetchone()
        if up_to is not None:
            high = min(high, up_to)
        cursor.execute(NEXT_CUT, [low, limit])
        (cut,) = cursor.fetchone()
        if cut is not None:
            high = min(high, cut)
        if high <= low:
            return AggregationRun(low, low, 0, 0)
        cursor.execute(FOLD, {"low": low, "high": high})
        events, buckets, _ = cursor.fetchone()
        cursor.execute(
            "UPDATE usage_aggregationwatermark SET received_up_to = %s, runs = runs + 1,"
            " events_aggregated = events_aggregated + %s, updated_at = now() WHERE name = %s",
            [high, events, WATERMARK],
        )
    return AggregationRun(low, high, events, buckets)


def usage_aggregate_all(*, limit: int = DEFAULT_LIMIT, max_runs: int = 50) -> int:
    """Run until caught up (bounded, so one beat tick never runs for ever)."""
    total = 0
    for _ in range(max_runs):
        run = usage_aggregate(limit=limit)
        total += run.events
        if run.events < limit:
            break
    return total
