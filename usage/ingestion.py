"""Usage ingestion: validate each event on its own, then write the whole batch with
one set-based INSERT … ON CONFLICT DO NOTHING in one transaction.

Idempotency lives in the unique index of usage_usageeventkey on (tenant, origin, key,
use), across every month's partition of the events (an entitlements/consume records its
uses apart, usage_record_consumed): a concurrent
insert of the same key waits for the first to commit and then finds its row, so
exactly one row exists whatever the race, and the payload hash tells a retried
duplicate (200) from a conflicting reuse of the key (409).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing_project.api_keys import ApiPrincipal
from billing_project.cache import catalog_version_key, tenant_version_key
from billing_project.errors import BillingError, Conflict, Forbidden, InvalidRequest, invalid_field
from billing_project.money import CONTEXT, parse_decimal
from billing_project.redis_client import get_redis
from plans.models import BillableMetric
from subscriptions.models import LIVE_STATUSES, BillingPeriod, Subscription, Tenant

from .counters import (
    CounterDelta,
    MeteredMetric,
    counter_key,
    counters_mark,
    counters_record,
    counters_settle,
    delta_for,
)
from .models import DetachedUsagePartition
from .pseudonyms import pseudonym

MAX_BATCH = 1000
FUTURE_TOLERANCE = timedelta(minutes=5)
# One event's quantity, at most: far past any real use, and small enough that a period's sum
# stays within Redis's 64-bit counters for a long while and within the invoice's columns.
MAX_QUANTITY = Decimal("1e15")
MAX_KEY = 255


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # stored now
    DUPLICATE = "duplicate"  # the same event was stored before (its id is the first one's)
    REJECTED = "rejected"  # refused: `error` says why


@dataclass
class EventResult:
    """What became of one event. A refused event carries the domain error that refused it
    (its kind: InvalidRequest, Forbidden, Conflict); the API maps outcomes to statuses."""

    index: int
    outcome: Outcome
    id: int | None = None
    error: BillingError | None = None
    late: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.outcome.value, "id": self.id}
        if self.error is not None:
            out["error"] = {"code": self.error.code, "message": self.error.message, "details": self.error.details}
        if self.late:
            out["late"] = True
        return out


@dataclass
class _Row:
    index: int
    tenant_id: int
    metric_id: int
    quantity: Decimal
    properties: dict[str, Any]
    occurred_at: datetime | None
    key: str
    payload_hash: str
    correlation_id: str
    late: bool
    counter: CounterDelta | None = None
    duplicates_of: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Metric:
    id: int
    properties: frozenset[str]
    counter: MeteredMetric
    personal: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Tenant:
    id: int
    erased: bool = False
    period_start: datetime | None = None
    period_end: datetime | None = None
    # [start, end) of the tenant's billing periods within reach of the close; end None: a
    # live subscription's open period, which runs on into the next one at its roll
    covered: tuple[tuple[datetime, datetime | None], ...] = ()

    def covers(self, at: datetime) -> bool:
        return any(start <= at and (end is None or at < end) for start, end in self.covered)


def oldest_accepted(now: datetime) -> datetime:
    """The oldest `occurred_at` accepted at `now`: the edge of the period close's
    re-pricing window (it re-prices usage periods with `period_end >= now -
    LATE_USAGE_WINDOW_DAYS`). Inclusive, as that comparison is: an event at the edge lies
    in a period that ends after it, so inside the window at the instant it is accepted;
    anything older lies in a period the close may already have stopped looking at."""
    return now - timedelta(days=settings.LATE_USAGE_WINDOW_DAYS)


def month_start(at: datetime) -> datetime:
    """The first instant of `at`'s UTC month: where a usage partition begins."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def month_after(first: datetime) -> datetime:
    return datetime(first.year + first.month // 12, first.month % 12 + 1, 1, tzinfo=UTC)


def detached_until(now: datetime) -> datetime | None:
    """The end of the latest month of usage detached from usage_usageevent (None: none
    was). Only events older than this month ask, so a request of recent usage pays nothing."""
    last = DetachedUsagePartition.objects.aggregate(month=Max("month"))["month"]
    return month_after(month_start(last)) if last is not None else None


def _text(event: Mapping[str, Any], name: str, *, required: bool, limit: int = MAX_KEY) -> str:
    value = event.get(name)
    if value is None or value == "":
        if required:
            raise invalid_field(name, f"`{name}` is required.")
        return ""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise invalid_field(name, f"`{name}` must be a string of at most {limit} characters.")
    return value


def _payload_hash(metric: str, quantity: Decimal, occurred_at: datetime | None, properties: Mapping[str, Any]) -> str:
    # What the event *says*; the correlation id is tracing metadata and may differ on a retry.
    canonical = json.dumps(
        [metric, format(quantity.normalize(), "f"), occurred_at.isoformat() if occurred_at else None, properties],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _validate(
    index: int,
    event: Any,
    *,
    principal: ApiPrincipal,
    tenants: Mapping[str, _Tenant],
    metrics: Mapping[str, _Metric],
    now: datetime,
) -> _Row:
    if not isinstance(event, Mapping):
        raise InvalidRequest("An event is a JSON object.", code="validation_error")
    tenant_name = _text(event, "tenant", required=True)
    metric_code = _text(event, "metric", required=True)
    key = _text(event, "idempotency_key", required=True)
    if tenant_name not in tenants:
        raise InvalidRequest(f"No tenant {tenant_name!r}.", code="unknown_tenant", details={"tenant": tenant_name})
    metric = metrics.get(metric_code)
    if metric is None:
        raise InvalidRequest(f"No metric {metric_code!r}.", code="unknown_metric", details={"metric": metric_code})
    if metric_code not in principal.metrics:
        raise Forbidden(
            f"This key may not report {metric_code!r}.",
            code="metric_not_allowed",
            details={"metric": metric_code, "allowed": sorted(principal.metrics)},
        )
    counted = metric.counter.aggregation == "count"
    raw_quantity = event.get("quantity")
    try:
        # an event of a counted metric is one occurrence: its quantity may be left out
        quantity = Decimal(1) if counted and raw_quantity is None else parse_decimal(raw_quantity)
    except ValueError:
        quantity = Decimal(-1)
    exponent = quantity.normalize(CONTEXT).as_tuple().exponent
    if quantity < 0 or quantity >= MAX_QUANTITY or (isinstance(exponent, int) and exponent < -6):
        raise InvalidRequest(
            "`quantity` must be a number ≥ 0 with at most 6 decimals.",
            code="invalid_quantity",
            details={"quantity": str(raw_quantity)},
        )
    if counted and quantity != 1:
        # it would count as one all the same: refused rather than silently read as 1
        raise InvalidRequest(
            f"{metric_code!r} counts events: each event is one, so its `quantity` is 1 or left out. "
            "Send one event per occurrence.",
            code="invalid_quantity",
            details={"quantity": str(raw_quantity), "metric": metric_code, "aggregation": "count"},
        )
    properties = event.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise invalid_field("properties", "`properties` is an object.")
    undeclared = sorted(set(properties) - metric.properties)
    if undeclared:
        raise InvalidRequest(
            f"{metric_code!r} does not declare: {', '.join(undeclared)}.",
            code="undeclared_property",
            details={"properties": undeclared, "declared": sorted(metric.properties)},
        )
    if any(
        not isinstance(v, (str, int, bool, Decimal)) or len(str(v)) > MAX_KEY or "\x00" in str(v) or "\x00" in k
        for k, v in properties.items()
    ):
        raise invalid_field("properties", "Property values are strings, numbers or booleans of at most 255 characters.")
    occurred_at = None
    raw_time = event.get("occurred_at")
    if raw_time is not None:
        try:
            occurred_at = parse_datetime(raw_time) if isinstance(raw_time, str) else None
            occurred_at = occurred_at.astimezone(UTC) if occurred_at and occurred_at.tzinfo else None
        except (ValueError, OverflowError):  # 30 February, year 0001 minus an offset…
            occurred_at = None
        if occurred_at is None:
            raise invalid_field("occurred_at", "`occurred_at` is ISO 8601 with an offset.")
        if occurred_at > now + FUTURE_TOLERANCE:
            raise InvalidRequest(
                "`occurred_at` is more than 5 minutes in the future.",
                code="occurred_at_in_future",
                details={"occurred_at": occurred_at.isoformat()},
            )
        oldest = oldest_accepted(now)
        if occurred_at < oldest:
            days = settings.LATE_USAGE_WINDOW_DAYS
            raise InvalidRequest(
                f"`occurred_at` is more than {days} days ago (LATE_USAGE_WINDOW_DAYS): usage that old is past "
                f"re-pricing and could never be billed. The oldest instant accepted now is {oldest.isoformat()}.",
                code="occurred_at_too_old",
                details={
                    "occurred_at": occurred_at.isoformat(),
                    "oldest_accepted": oldest.isoformat(),
                    "window_days": days,
                },
            )
        # months detached from the table (usage/partitions.py) lie before the window they
        # were detached under; should the window have grown since, their usage is refused
        # all the same: its period's events are archived, so it could never be billed
        detached = detached_until(now) if occurred_at < month_start(now) else None
        if detached is not None and occurred_at < detached:
            raise InvalidRequest(
                f"`occurred_at` lies in a month whose usage was detached and archived (up to "
                f"{detached.isoformat()}): it could never be billed.",
                code="occurred_at_too_old",
                details={"occurred_at": occurred_at.isoformat(), "oldest_accepted": detached.isoformat()},
            )
    tenant = tenants[tenant_name]
    if tenant.erased:
        # its periods are closed and invoiced for good: late usage would bill a person no
        # invoice may name any more
        raise InvalidRequest(
            f"{tenant_name!r} was erased: its usage is no longer accepted.",
            code="tenant_erased",
            details={"tenant": tenant_name},
        )
    if not tenant.covers(occurred_at or now):
        # no period would ever bill it: refused, never accepted and dropped
        instant = (occurred_at or now).isoformat()
        raise InvalidRequest(
            f"No subscription of {tenant_name!r} covers {instant}: usage outside every billing period "
            "could never be billed. Subscribe the tenant first, or send the time it happened.",
            code="no_billing_period",
            details={"tenant": tenant_name, "occurred_at": instant},
        )
    tenant_id, period_start = tenant.id, tenant.period_start
    clean_properties = {
        k: pseudonym(tenant_id=tenant_id, key=k, value=v)
        if k in metric.personal
        else str(v)
        if isinstance(v, Decimal)
        else v
        for k, v in sorted(properties.items())
    }
    counter = None
    when = occurred_at or now
    if tenant.period_start and tenant.period_end and tenant.period_start <= when < tenant.period_end:
        # counts towards the current period's entitlement counter once committed
        counter = delta_for(
            metric.counter, counter_key(tenant_id, metric.id, tenant.period_start), quantity, clean_properties
        )
    return _Row(
        index=index,
        tenant_id=tenant_id,
        metric_id=metric.id,
        quantity=quantity,
        properties=clean_properties,
        occurred_at=occurred_at,
        key=key,
        payload_hash=_payload_hash(metric_code, quantity, occurred_at, clean_properties),
        correlation_id=_text(event, "correlation_id", required=False),
        # before the current period: that period has closed (and is invoiced at close)
        late=bool(occurred_at and period_start and occurred_at < period_start),
        counter=counter,
    )


def _tenants_from_db(names: set[str], now: datetime) -> dict[str, _Tenant]:
    tenants = {
        external_id: _Tenant(pk, erased is not None)
        for pk, external_id, erased in Tenant.objects.filter(external_id__in=names).values_list(
            "pk", "external_id", "erased_at"
        )
    }
    if not tenants:
        return tenants
    current: dict[str, tuple[datetime, datetime]] = {
        external_id: (start, end)
        for external_id, start, end in Subscription.objects.filter(
            tenant__external_id__in=names, status__in=LIVE_STATUSES
        ).values_list("tenant__external_id", "current_period_start", "current_period_end")
    }
    covered: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for external_id, start, end, closed, status, ending in BillingPeriod.objects.filter(
        Q(end__gt=oldest_accepted(now)) | Q(closed=False), subscription__tenant__external_id__in=names
    ).values_list(
        "subscription__tenant__external_id",
        "start",
        "end",
        "closed",
        "subscription__status",
        "subscription__cancel_at_period_end",
    ):
        runs_on = not closed and status in LIVE_STATUSES and not ending
        covered.setdefault(external_id, []).append((start, None if runs_on else end))
    for external_id, tenant in tenants.items():
        period: tuple[datetime | None, datetime | None] = current.get(external_id) or (None, None)
        tenants[external_id] = _Tenant(tenant.id, tenant.erased, *period, tuple(covered.get(external_id, ())))
    return tenants


def _metrics_from_db() -> dict[str, _Metric]:
    return {
        code: _Metric(pk, frozenset(props), MeteredMetric(pk, aggregation, unique), frozenset(personal))
        for pk, code, props, aggregation, unique, personal in BillableMetric.objects.values_list(
            "pk", "code", "properties", "aggregation", "unique_property", "personal_properties"
        )
    }


# What ingestion looks up per event (a tenant's id, erasure, current and covered periods;
# the catalog's metrics), kept in this process under the version stamps the entitlement
# cache already uses (billing_project/cache.py): a subscription operation bumps its
# tenant's version, a catalog change the catalog's, after commit. The versions are read
# from Redis before anything is read from PostgreSQL, so state read before a change is
# kept under the old version, which no later request matches. LOOKUP_SECONDS bounds how
# long an entry lives should a bump be lost (Redis down at that commit: logged).
LOOKUP_SECONDS = 30.0
_tenant_memo: dict[str, tuple[bytes | None, float, _Tenant]] = {}
_metric_memo: list[tuple[bytes | None, float, dict[str, _Metric]]] = []


def _versions(keys: list[str]) -> list[bytes]:
    """The version stamps of `keys`. One never set (or lost with a Redis restart) starts at
    a random number, never at a value an entry kept from before could carry."""
    r = get_redis()
    found: list[Any] = r.mget(keys)
    if any(v is None for v in found):
        with r.pipeline(transaction=False) as pipe:
            for key, version in zip(keys, found, strict=True):
                if version is None:
                    pipe.set(key, secrets.randbelow(2**52), nx=True)
            pipe.execute()
        found = r.mget(keys)
    return [bytes(v) if isinstance(v, bytes) else str(v or "").encode() for v in found]


def _lookups(events: Sequence[Any], now: datetime) -> tuple[dict[str, _Tenant], dict[str, _Metric]]:
    names: set[str] = {e["tenant"] for e in events if isinstance(e, Mapping) and isinstance(e.get("tenant"), str)}
    if connection.in_atomic_block:
        # inside a caller's transaction what is read may be its own uncommitted writes, which
        # no version stamps: read, and keep, nothing but committed state
        return _tenants_from_db(names, now), _metrics_from_db()
    known = {name: _tenant_memo[name] for name in names if name in _tenant_memo}
    try:
        versions = _versions([catalog_version_key(), *(tenant_version_key(memo[2].id) for memo in known.values())])
    except redis.RedisError:  # no stamps to trust: read everything from PostgreSQL
        return _tenants_from_db(names, now), _metrics_from_db()
    catalog, tenant_versions = versions[0], versions[1:]
    clock = time.monotonic()
    tenants: dict[str, _Tenant] = {}
    for (name, (stamp, stored_at, tenant)), version in zip(known.items(), tenant_versions, strict=True):
        if stamp == catalog + b":" + version and clock - stored_at < LOOKUP_SECONDS:
            tenants[name] = tenant
    unread = names - set(tenants)
    if unread:
        stamps = {name: catalog + b":" + v for name, v in zip(known, tenant_versions, strict=True)}
        for name, tenant in _tenants_from_db(unread, now).items():
            tenants[name] = tenant
            # a tenant first seen has no stamp read before its rows: kept unstamped, read again next time
            _tenant_memo[name] = (stamps.get(name), clock, tenant)
        if len(_tenant_memo) > 10_000:
            _tenant_memo.clear()
    if _metric_memo and _metric_memo[0][0] == catalog and clock - _metric_memo[0][1] < LOOKUP_SECONDS:
        metrics = _metric_memo[0][2]
    else:
        metrics = _metrics_from_db()
        _metric_memo[:] = [(catalog, clock, metrics)]
    return tenants, metrics


# One statement: the keys first, each with the id its event will have; only the keys that
# were new get their event. A key already stored (ON CONFLICT DO NOTHING) writes nothing,
# and a concurrent insert of the same key waits on the key's unique index for the first
# to commit, then finds it: one event per key whatever the race, in every partition.
INSERT = """
WITH x AS (
    SELECT nextval('usage_usageevent_id_seq') AS id, t, m, q, p, o, k, h, c, l, n
      FROM unnest(%s::bigint[], %s::bigint[], %s::numeric[], %s::text[], %s::timestamptz[],
                  %s::text[], %s::text[], %s::text[], %s::boolean[]) WITH ORDINALITY AS x(t, m, q, p, o, k, h, c, l, n)
), kept AS (
    INSERT INTO usage_usageeventkey (event_id, tenant_id, origin, idempotency_key, use, payload_hash)
    SELECT id, t, 'reported', k, 1, h FROM x ORDER BY n
    ON CONFLICT (tenant_id, origin, idempotency_key, use) DO NOTHING
    RETURNING event_id
)
INSERT INTO usage_usageevent (id, tenant_id, metric_id, quantity, properties, occurred_at, received_at,
                              reported_by_id, idempotency_key, payload_hash, correlation_id, late)
SELECT x.id, t, m, q, p::jsonb, o, now(), %s, k, h, c, l
  FROM x JOIN kept ON kept.event_id = x.id
 ORDER BY n
RETURNING id, tenant_id, idempotency_key
"""

EXISTING = """
SELECT e.event_id, e.tenant_id, e.idempotency_key, e.payload_hash
  FROM usage_usageeventkey e
  JOIN unnest(%s::bigint[], %s::text[]) AS x(t, k) ON e.tenant_id = x.t AND e.idempotency_key = x.k
 WHERE e.origin = 'reported' AND e.use = 1
"""


def _insert(cursor: Any, principal: ApiPrincipal, rows: list[_Row], now: datetime) -> dict[tuple[int, str], int]:
    cursor.execute(
        INSERT,
        [
            [r.tenant_id for r in rows],
            [r.metric_id for r in rows],
            [r.quantity for r in rows],
            [json.dumps(r.properties, default=str) for r in rows],
            # absent: the instant the request was decided at (its counter and period
            # were chosen by it), never the database's clock, which may differ
            [r.occurred_at or now for r in rows],
            [r.key for r in rows],
            [r.payload_hash for r in rows],
            [r.correlation_id for r in rows],
            [r.late for r in rows],
            principal.key_id,
        ],
    )
    return {(t, k): pk for pk, t, k in cursor.fetchall()}


def _existing(cursor: Any, rows: list[_Row], inserted: dict[tuple[int, str], int]) -> dict[tuple[int, str], Any]:
    missing = [r for r in rows if (r.tenant_id, r.key) not in inserted]
    if not missing:
        return {}
    cursor.execute(EXISTING, [[r.tenant_id for r in missing], [r.key for r in missing]])
    return {(t, k): (pk, h) for pk, t, k, h in cursor.fetchall()}


Written = tuple[dict[tuple[int, str], int], dict[tuple[int, str], tuple[int, str]]]


def _write_in_transaction(principal: ApiPrincipal, rows: list[_Row], now: datetime) -> Written:
    with transaction.atomic(), connection.cursor() as cursor:
        inserted = _insert(cursor, principal, rows, now) if rows else {}
        deltas = [r.counter for r in rows if r.counter is not None and (r.tenant_id, r.key) in inserted]
        counters_record(deltas)  # marked before COMMIT, incremented after it
        return inserted, _existing(cursor, rows, inserted)


def _write_autocommit(principal: ApiPrincipal, rows: list[_Row], now: datetime) -> Written | None:
    """Outside a transaction, the rows in one statement that commits by itself: one round
    trip to PostgreSQL instead of BEGIN, INSERT, COMMIT. An accepted event is committed
    when the statement returns, as before. The counters are marked before it (what the
    transactional path marks before COMMIT), and settled after; None when Redis does not
    answer the mark: the transactional path then records the repair with the events."""
    marked = [r.counter for r in rows if r.counter is not None]
    token = counters_mark(marked)
    if token is None:
        return None
    with connection.cursor() as cursor:
        try:
            inserted = _insert(cursor, principal, rows, now)
        except BaseException:
            counters_settle([], marked, token)  # nothing was written: the marks come off
            raise
        counters_settle(
            [r.counter for r in rows if r.counter is not None and (r.tenant_id, r.key) in inserted], marked, token
        )
        return inserted, _existing(cursor, rows, inserted)


def usage_record(*, principal: ApiPrincipal, events: Sequence[Any]) -> list[EventResult]:
    """Record a batch of usage events; each is decided on its own. Accepted ones are
    committed when this returns."""
    now = timezone.now()
    tenants, metrics = _lookups(events, now)
    results: list[EventResult | None] = [None] * len(events)
    first: dict[tuple[int, str], _Row] = {}
    for i, event in enumerate(events):
        try:
            row = _validate(i, event, principal=principal, tenants=tenants, metrics=metrics, now=now)
        except BillingError as exc:
            results[i] = EventResult(i, Outcome.REJECTED, error=exc.with_traceback(None))  # keep no frames
            continue
        seen = first.get((row.tenant_id, row.key))
        if seen is None:
            first[(row.tenant_id, row.key)] = row
        else:  # the same key twice in one batch: decided against the first
            seen.duplicates_of.append(i)
            results[i] = _repeat(i, same=seen.payload_hash == row.payload_hash)
    # A fixed order: concurrent batches sharing keys then wait for each other instead of deadlocking.
    rows = sorted(first.values(), key=lambda r: (r.tenant_id, r.key))
    written = _write_autocommit(principal, rows, now) if rows and not connection.in_atomic_block else None
    if written is None:
        written = _write_in_transaction(principal, rows, now)
    inserted, existing = written
    for row in rows:
        pk = inserted.get((row.tenant_id, row.key))
        if pk is not None:
            results[row.index] = EventResult(row.index, Outcome.ACCEPTED, pk, late=row.late)
        else:
            pk, stored_hash = existing[(row.tenant_id, row.key)]
            results[row.index] = _repeat(row.index, same=stored_hash == row.payload_hash, pk=pk)
        decided = results[row.index]
        for j in row.duplicates_of:
            repeat = results[j]
            if decided is not None and decided.outcome is Outcome.REJECTED:
                results[j] = EventResult(j, Outcome.REJECTED, error=decided.error)
            elif repeat is not None and repeat.outcome is Outcome.DUPLICATE:
                repeat.id = pk
    return [r for r in results if r is not None]


CONSUMED = """
WITH x AS (
    SELECT nextval('usage_usageevent_id_seq') AS id, u FROM generate_series(1, %(uses)s) AS u
), kept AS (
    INSERT INTO usage_usageeventkey (event_id, tenant_id, origin, idempotency_key, use, payload_hash)
    SELECT id, %(tenant)s, 'consume', %(key)s, u, %(hash)s FROM x ORDER BY u
    RETURNING event_id
)
INSERT INTO usage_usageevent (id, tenant_id, metric_id, quantity, properties, occurred_at, received_at,
                              reported_by_id, idempotency_key, origin, use, payload_hash, correlation_id, late)
SELECT x.id, %(tenant)s, %(metric)s, %(each)s, '{}'::jsonb, %(now)s, now(), %(reporter)s, %(key)s, 'consume', u,
       %(hash)s, %(correlation)s, false
  FROM x JOIN kept ON kept.event_id = x.id
 ORDER BY u
RETURNING id
"""


def usage_record_consumed(
    *,
    principal: ApiPrincipal,
    tenant_id: int,
    metric: MeteredMetric,
    quantity: Decimal,
    consume_key: str,
    period_start: datetime,
    now: datetime,
) -> int:
    """Record what an entitlements/consume admitted, in the caller's transaction: one event
    of `quantity` for a summed metric, `quantity` events of one for a counted metric (it
    counts events). They live in the consume's own idempotency space (tenant, consume key,
    use 1…N), which no reported event can occupy: every unit admitted is a unit recorded,
    whatever keys clients send. The first event's id is returned.

    The caller has decided the consume under its lock and holds the consume record's key;
    a second consume of the same key racing it (for another feature, under another lock)
    waits here for the first to commit and is then an idempotency_conflict."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("usage_record_consumed runs inside the consume's transaction")
    counted = metric.aggregation == "count"
    uses = int(quantity) if counted else 1
    each = Decimal(1) if counted else quantity
    payload_hash = _payload_hash(f"consume:{metric.id}", quantity, now, {})
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                CONSUMED,
                {
                    "uses": uses,
                    "tenant": tenant_id,
                    "key": consume_key,
                    "hash": payload_hash,
                    "metric": metric.id,
                    "each": each,
                    "now": now,
                    "reporter": principal.key_id,
                    "correlation": f"consume:{consume_key}"[:255],
                },
            )
            ids: list[int] = sorted(int(row[0]) for row in cursor.fetchall())
    except IntegrityError as exc:
        raise Conflict("This idempotency key is being used by another consume.", code="idempotency_conflict") from exc
    key = counter_key(tenant_id, metric.id, period_start)
    deltas = [d for d in (delta_for(metric, key, each, {}) for _ in range(uses)) if d is not None]
    counters_record(deltas)
    return ids[0]


def _repeat(index: int, *, same: bool, pk: int | None = None) -> EventResult:
    if same:
        return EventResult(index, Outcome.DUPLICATE, pk)
    return EventResult(
        index,
        Outcome.REJECTED,
        error=Conflict(
            "This idempotency key was used before with a different event.",
            code="idempotency_conflict",
            details={"id": pk} if pk else {},
        ),
    )
