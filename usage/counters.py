"""Current-period usage counters in Redis, for entitlement checks that must not wait for
aggregation. Updated after each ingesting transaction commits; read in one round trip;
(re)built from PostgreSQL (usage_over: exact) when missing; corrected by a beat task.

Values are integers in millionths (quantities have at most 6 decimals), so sums are
exact. unique_count keeps the distinct values as a set; `latest` is always read from
PostgreSQL. A counter is only incremented if it exists: one being rebuilt is not
half-counted, and the reconciliation task catches what a rebuild raced past.

A counter that may have missed an increment is never trusted (an unsafe allow otherwise:
a check answering `used: 0` at 1,200 of 1,000 after a Redis partition):
- *Pending marks.* Inside the ingesting transaction, before COMMIT, each counter it will
  increment gets a mark (a member of `<counter>:pending`, scored with Redis's clock).
  The increment after commit removes it. A mark older than COUNTER_PENDING_GRACE_MS
  means a writer died between commit and increment (or before commit: either way the
  counter is unknown): readers then drop the counter and rebuild it from PostgreSQL.
- *Repairs.* A writer that cannot reach Redis, to mark or to increment, records the
  counters in PostgreSQL (CounterRepair, in its own transaction when it is after commit)
  and stops trusting counters in this process. The next read here drops them (once
  Redis answers) before trusting anything.
- *Trust lease.* Every other process trusts counters only while the key
  `counters-trusted` exists; it lives COUNTER_TRUST_MS and is renewed by the first read
  that finds it gone, after applying every recorded repair. So a repair recorded anywhere
  is applied within COUNTER_TRUST_MS everywhere, and at once in the process that missed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing_project.redis_client import get_redis, rkey

from .models import CounterRepair
from .selectors import unique_values_over, usage_over

logger = logging.getLogger(__name__)
MICRO = Decimal(1_000_000)
MAX_COUNTER = 2**63 - 1  # Redis's integers: a counter past it (9.2e12 units) is not kept
GRACE_SECONDS = 86_400  # keep a counter a day past its period (late reads, reconciliation)

# Redis's clock in milliseconds: every mark is scored, and every age measured, by it.
NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: the counters a transaction will increment; ARGV[1]: its token. Before COMMIT.
MARK = (
    NOW_MS
    + """
local now = now_ms()
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key .. ':pending', now, ARGV[1])
  redis.call('PEXPIRE', key .. ':pending', 86400000)
end
return 1
"""
)

# After COMMIT. ARGV[1] the token, then (kind, value) per KEYS entry (a key may repeat,
# for a set's values). A counter whose mark is gone was declared dead by a reader (the
# mark outlived the grace): whether its rebuild saw this transaction is unknown, so it
# is dropped and rebuilt again.
APPLY = """
local token = ARGV[1]
local mine = {}
for _, key in ipairs(KEYS) do
  if mine[key] == nil then
    mine[key] = redis.call('ZREM', key .. ':pending', token) == 1
    if not mine[key] then redis.call('DEL', key) end
  end
end
for i, key in ipairs(KEYS) do
  local kind, value = ARGV[2 * i], ARGV[2 * i + 1]
  if mine[key] and redis.call('EXISTS', key) == 1 then
    if kind == 'add' then
      -- past 64 bits Redis refuses: the counter goes, and reads answer from PostgreSQL
      if not pcall(redis.call, 'INCRBY', key, value) then redis.call('DEL', key) end
    elseif kind == 'max' then
      if tonumber(value) > tonumber(redis.call('GET', key)) then redis.call('SET', key, value, 'KEEPTTL') end
    elseif kind == 'set' then
      redis.call('SADD', key, value)
    end  -- 'unmark': the mark only (an event that turned out to be a duplicate)
  end
end
return 1
"""

# A counter's value if it may be trusted. KEYS[1] the counter; ARGV[1] the trust lease's
# key, ARGV[2] the grace in ms, ARGV[3] 's' for a set. Returns 'untrusted' without the
# lease; drops a counter with a mark past the grace (and the stale marks) and returns
# false, as for a missing one; else the value.
READ_COUNTER = (
    NOW_MS
    + """
if redis.call('EXISTS', ARGV[1]) == 0 then return 'untrusted' end
local pending = KEYS[1] .. ':pending'
local stale = now_ms() - tonumber(ARGV[2])
if redis.call('ZCOUNT', pending, '-inf', stale) > 0 then
  redis.call('ZREMRANGEBYSCORE', pending, '-inf', stale)
  redis.call('DEL', KEYS[1])
  return false
end
if ARGV[3] == 's' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 's' .. redis.call('SCARD', KEYS[1]) end
  return false
end
local value = redis.call('GET', KEYS[1])
if value then return 'n' .. value end
return false
"""
)

_suspect = False  # this process missed a mark or an increment: trust no counter until repaired


def trust_key() -> str:
    return rkey("counters-trusted")


def counters_suspect() -> bool:
    """Whether this process missed a counter update it has not repaired yet (the fast
    lane then leaves the check to the view, which repairs first)."""
    return _suspect


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
    kind: str  # add | max | set (| unmark: only the mark taken off)
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


def counters_record(deltas: list[CounterDelta]) -> None:
    """Inside the ingesting transaction, once its rows are written: mark the counters it
    will increment, and increment them after it commits. A Redis that does not answer
    leaves a repair in this same transaction instead, so no counter that missed the
    increment is trusted again before it is rebuilt."""
    if not deltas:
        return
    keys = sorted({d.key for d in deltas})
    token = secrets.token_hex(8)
    try:
        get_redis().eval(MARK, len(keys), *keys, token)
    except redis.RedisError:
        _missed(keys, committed=False)
        return
    transaction.on_commit(lambda: _apply(deltas, token))


def counters_mark(deltas: list[CounterDelta]) -> str | None:
    """Before an ingesting statement that commits by itself (usage/ingestion.py outside a
    transaction): mark the counters it may increment. The token to settle them with, ""
    when there is nothing to mark, None when Redis does not answer (the caller then takes
    the transactional path, which records the repair with the events)."""
    keys = sorted({d.key for d in deltas})
    if not keys:
        return ""
    token = secrets.token_hex(8)
    try:
        get_redis().eval(MARK, len(keys), *keys, token)
    except redis.RedisError:
        return None
    return token


def counters_settle(applied: list[CounterDelta], marked: list[CounterDelta], token: str) -> None:
    """After that statement committed: increment by what it inserted, and take the mark
    off the counters of events it did not insert (duplicates), in one round trip."""
    if not token:
        return
    applied_keys = {d.key for d in applied}
    unmarked = sorted({d.key for d in marked} - applied_keys)
    _apply([*applied, *(CounterDelta(key, "unmark", "") for key in unmarked)], token)


def _apply(deltas: Iterable[CounterDelta], token: str) -> None:
    """After commit: fold accepted events into existing counters (one round trip)."""
    merged: dict[tuple[str, str], list[str]] = {}
    for d in deltas:
        merged.setdefault((d.key, d.kind), []).append(d.value)
    keys: list[str] = []
    args: list[str] = [token]
    for (key, kind), values in merged.items():
        if kind == "add":
            keys.append(key)
            args += [kind, str(sum(int(v) for v in values))]
        elif kind == "max":
            keys.append(key)
            args += [kind, str(max(int(v) for v in values))]
        elif kind == "unmark":
            keys.append(key)
            args += [kind, ""]
        else:
            for value in set(values):
                keys.append(key)
                args += [kind, value]
    try:
        get_redis().eval(APPLY, len(keys), *keys, *args)
    except redis.RedisError:
        _missed(sorted(set(keys)), committed=True)


def _missed(keys: list[str], *, committed: bool) -> None:
    """Record counters that missed an update, so that they are dropped before anyone
    trusts them again; PostgreSQL stays exact meanwhile."""
    global _suspect
    _suspect = True
    logger.warning("usage.counters.unreachable", extra={"keys": len(keys)})
    rows = [CounterRepair(key=key) for key in keys]
    if committed:  # after the ingesting transaction: a transaction of its own
        with transaction.atomic():
            CounterRepair.objects.bulk_create(rows)
    else:
        CounterRepair.objects.bulk_create(rows)


def counters_repair() -> int:
    """Drop every counter recorded as having missed an update, then (re)new the trust
    lease: the counters left are complete. Raises RedisError if Redis does not answer
    (nothing is trusted then). Returns how many counters were dropped."""
    global _suspect
    client = get_redis()
    repairs = list(CounterRepair.objects.values_list("pk", "key"))
    keys = sorted({key for _, key in repairs})
    pipe = client.pipeline()
    for key in keys:
        pipe.delete(key, f"{key}:pending")
    pipe.set(trust_key(), "1", px=settings.COUNTER_TRUST_MS)
    pipe.execute()
    if repairs:
        CounterRepair.objects.filter(pk__in=[pk for pk, _ in repairs]).delete()
        logger.warning("usage.counters.repaired", extra={"counters": len(keys)})
    _suspect = False
    return len(keys)


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
        raw = _read_trusted(client, key, metric)
        if raw:
            return counter_decimal(raw)
    except redis.RedisError:
        return _exact(tenant_id, metric, period_start, period_end)
    return _rebuild(client, key, tenant_id, metric, period_start, period_end)


def _read_trusted(client: redis.Redis, key: str, metric: MeteredMetric) -> bytes | None:
    """The counter's raw value if it may be trusted, else None (missing, dropped as
    stale): repairs first when this process missed an update or the lease is gone."""
    kind = "s" if metric.aggregation == "unique_count" else "n"
    args = (trust_key(), settings.COUNTER_PENDING_GRACE_MS, kind)
    if _suspect:
        counters_repair()
    raw = client.eval(READ_COUNTER, 1, key, *args)
    if raw == b"untrusted":
        counters_repair()
        raw = client.eval(READ_COUNTER, 1, key, *args)
    return None if raw in (None, b"untrusted") else bytes(raw)


def counter_decimal(raw: bytes) -> Decimal:
    """A counter read by a script (`n<millionths>` or `s<set size>`) as a Decimal."""
    text = raw.decode()
    return Decimal(text[1:]) if text[0] == "s" else Decimal(int(text[1:])) / MICRO


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
        if int(exact * MICRO) <= MAX_COUNTER:  # else not cached: Redis counts in 64 bits
            client.set(key, int(exact * MICRO), nx=True, ex=_ttl(end))
        return exact
    except redis.RedisError:
        return _exact(tenant_id, metric, start, end)


# Correct a counter only if nothing touched it since it was read, and no writer is between
# its COMMIT and its increment (a pending mark): KEYS[1] the counter, ARGV[1] the value read
# before PostgreSQL was asked ('s<n>' for a set's size), ARGV[2] the exact value, ARGV[3]
# its TTL. A set is corrected by the caller (its members are many); this says if it may be.
RECONCILE = (
    NOW_MS
    + """
-- a mark past the grace is a writer that died: it holds nothing back (ARGV[4] the grace in ms)
if redis.call('ZCOUNT', KEYS[1] .. ':pending', now_ms() - tonumber(ARGV[4]), '+inf') > 0 then return 0 end
local now
if string.sub(ARGV[1], 1, 1) == 's' then
  now = 's' .. redis.call('SCARD', KEYS[1])
else
  now = redis.call('GET', KEYS[1]) or ''
end
if now ~= ARGV[1] then return 0 end
if string.sub(ARGV[1], 1, 1) ~= 's' then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""
)


def counter_reconcile(*, tenant_id: int, metric: MeteredMetric, period_start: datetime, period_end: datetime) -> bool:
    """Compare a live counter with PostgreSQL; correct it if it drifted. True if corrected.

    Race-free: the counter is read before PostgreSQL, and corrected only if it is still
    that value and no writer is between its COMMIT and its increment. An increment applied
    meanwhile (which a plain SET overwrote: a low counter trusted until the next run) or
    one still pending (which the exact count already holds: counted twice) leaves the
    counter to the next run."""
    if metric.aggregation == "latest":
        return False
    key = counter_key(tenant_id, metric.id, period_start)
    client = get_redis()
    if metric.aggregation == "unique_count":
        if not client.exists(key):
            return False  # nothing cached: the next read rebuilds it from PostgreSQL
        before = f"s{client.scard(key)}"
        exact_values = _exact_values(tenant_id, metric, period_start, period_end)
        grace = settings.COUNTER_PENDING_GRACE_MS
        if before == f"s{len(exact_values)}" or not client.eval(RECONCILE, 1, key, before, "", 0, grace):
            return False
        pipe = client.pipeline()  # MULTI: the set is swapped whole
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
    if exact > MAX_COUNTER:
        client.delete(key)  # past what Redis counts: answered from PostgreSQL from now on
        return True
    grace = settings.COUNTER_PENDING_GRACE_MS
    read = raw.decode() if isinstance(raw, bytes) else str(raw)
    return bool(client.eval(RECONCILE, 1, key, read, exact, _ttl(period_end), grace))
