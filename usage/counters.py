"""Current-period usage counters in Redis, for entitlement checks that must not wait for
aggregation. Updated after each ingesting transaction commits; read in one round trip;
(re)built from PostgreSQL (usage_over: exact) when missing; corrected by a beat task.

Values are integers in millionths (quantities have at most 6 decimals), so sums are
exact. unique_count keeps the distinct values as a set; `latest` is always read from
PostgreSQL. A counter is only incremented if it exists: one being rebuilt is not
half-counted, and the reconciliation task catches what a rebuild raced past.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis
from django.utils import timezone

from billing_project.redis_client import get_redis, rkey

from .selectors import unique_values_over, usage_over

logger = logging.getLogger(__name__)
MICRO = Decimal(1_000_000)
GRACE_SECONDS = 86_400  # keep a counter a day past its period (late reads, reconciliation)

APPLY = """
for i, key in ipairs(KEYS) do
  local kind, value = ARGV[2 * i - 1], ARGV[2 * i]
  if redis.call('EXISTS', key) == 1 then
    if kind == 'add' then
      redis.call('INCRBY', key, value)
    elseif kind == 'max' then
      if tonumber(value) > tonumber(redis.call('GET', key)) then redis.call('SET', key, value, 'KEEPTTL') end
    else
      redis.call('SADD', key, value)
    end
  end
end
return 1
"""


@dataclass(frozen=True)
class MeteredMetric:
    id: int
    aggregation: str
    unique_property: str | None = None


def counter_key(tenant_id: int, metric_id: int, period_start: datetime) -> str:
    return rkey("used", tenant_id, metric_id, int(period_start.timestamp()))


@dataclass(frozen=True)
class CounterDelta:
    key: str
    kind: str  # add | max | set
    value: str


def delta_for(metric: MeteredMetric, key: str, quantity: Decimal, properties: dict[str, Any]) -> CounterDelta | None:
    if metric.aggregation == "sum":
        return CounterDelta(key, "add", str(int(quantity * MICRO)))
    if metric.aggregation == "count":
        return CounterDelta(key, "add", str(int(MICRO)))
    if metric.aggregation == "max":
        return CounterDelta(key, "max", str(int(quantity * MICRO)))
    if metric.aggregation == "unique_count" and metric.unique_property in properties:
        return CounterDelta(key, "set", str(properties[metric.unique_property]))
    return None  # latest: read from PostgreSQL


def counters_apply(deltas: Iterable[CounterDelta]) -> None:
    """After commit: fold accepted events into existing counters (one round trip)."""
    merged: dict[tuple[str, str], list[str]] = {}
    for d in deltas:
        merged.setdefault((d.key, d.kind), []).append(d.value)
    keys: list[str] = []
    args: list[str] = []
    for (key, kind), values in merged.items():
        if kind == "add":
            keys.append(key)
            args += [kind, str(sum(int(v) for v in values))]
        elif kind == "max":
            keys.append(key)
            args += [kind, str(max(int(v) for v in values))]
        else:
            for value in set(values):
                keys.append(key)
                args += [kind, value]
    if not keys:
        return
    try:
        get_redis().eval(APPLY, len(keys), *keys, *args)
    except redis.RedisError:
        logger.warning("usage.counters.unreachable", extra={"keys": len(keys)})  # PostgreSQL stays exact


def period_usage(
    *, tenant_id: int, metric: MeteredMetric, period_start: datetime, period_end: datetime, use_cache: bool = True
) -> Decimal:
    """Usage of the metric in the period so far: from the Redis counter when it exists,
    else exactly from PostgreSQL (and the counter is rebuilt)."""
    if metric.aggregation == "latest" or not use_cache:
        return _exact(tenant_id, metric, period_start, period_end)
    key = counter_key(tenant_id, metric.id, period_start)
    client = get_redis()
    try:
        if metric.aggregation == "unique_count":
            pipe = client.pipeline(transaction=False)
            pipe.exists(key)
            pipe.scard(key)
            exists, size = pipe.execute()
            if exists:
                return Decimal(size)
        else:
            raw = client.get(key)
            if raw is not None:
                return Decimal(int(raw)) / MICRO
    except redis.RedisError:
        return _exact(tenant_id, metric, period_start, period_end)
    return _rebuild(client, key, tenant_id, metric, period_start, period_end)


def _exact(tenant_id: int, metric: MeteredMetric, start: datetime, end: datetime) -> Decimal:
    from plans.models import BillableMetric

    row = BillableMetric(pk=metric.id, aggregation=metric.aggregation, unique_property=metric.unique_property)
    value = usage_over(tenant_id=tenant_id, metric=row, start=start, end=end)
    return value if value is not None else Decimal(0)


def _exact_values(tenant_id: int, metric: MeteredMetric, start: datetime, end: datetime) -> set[str]:
    return unique_values_over(
        tenant_id=tenant_id, metric_id=metric.id, unique_property=metric.unique_property or "", start=start, end=end
    )


def _ttl(period_end: datetime) -> int:
    return max(60, int((period_end - timezone.now()).total_seconds()) + GRACE_SECONDS)


def _rebuild(
    client: redis.Redis, key: str, tenant_id: int, metric: MeteredMetric, start: datetime, end: datetime
) -> Decimal:
    try:
        if metric.aggregation == "unique_count":
            values = _exact_values(tenant_id, metric, start, end)
            if values and not client.exists(key):
                pipe = client.pipeline()
                pipe.sadd(key, *values)
                pipe.expire(key, _ttl(end))
                pipe.execute()
            return Decimal(len(values))
        exact = _exact(tenant_id, metric, start, end)
        client.set(key, int(exact * MICRO), nx=True, ex=_ttl(end))
        return exact
    except redis.RedisError:
        return _exact(tenant_id, metric, start, end)


def counter_reconcile(*, tenant_id: int, metric: MeteredMetric, period_start: datetime, period_end: datetime) -> bool:
    """Compare a live counter with PostgreSQL; correct it if it drifted. True if corrected."""
    if metric.aggregation == "latest":
        return False
    key = counter_key(tenant_id, metric.id, period_start)
    client = get_redis()
    if not client.exists(key):
        return False  # nothing cached: the next read rebuilds it from PostgreSQL
    if metric.aggregation == "unique_count":
        exact_values = _exact_values(tenant_id, metric, period_start, period_end)
        if client.scard(key) == len(exact_values):
            return False
        pipe = client.pipeline()
        pipe.delete(key)
        if exact_values:
            pipe.sadd(key, *exact_values)
            pipe.expire(key, _ttl(period_end))
        pipe.execute()
        return True
    raw = client.get(key)
    if raw is None:
        return False
    exact = int(_exact(tenant_id, metric, period_start, period_end) * MICRO)
    if int(raw) == exact:
        return False
    client.set(key, exact, ex=_ttl(period_end))
    return True
