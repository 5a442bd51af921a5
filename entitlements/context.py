"""A tenant's entitlement context: subscription state, and each feature's terms (plan
version entitlements plus active grants). Built from PostgreSQL, cached in Redis.

The cached value carries the tenant's and the catalog's versions at build time
(billing_project.cache); one Lua call returns it only if both versions are still
current, so a change committed anywhere is seen by the next check. The entry also
expires at the next instant that changes the answer by itself (a grant's expiry,
the period's end, the end of a dunning grace).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.db.models import Case, When
from django.utils import timezone

from billing_project.cache import catalog_version_key, tenant_version_key, tenant_version_prefix
from billing_project.redis_client import get_redis, rkey
from plans.models import Feature, PlanEntitlement
from subscriptions.models import LIVE_STATUSES, Subscription, Tenant
from usage.counters import NOW_MS, counter_decimal, counter_key, trust_key

from .evaluation import FeatureTerms, SubscriptionState
from .models import Grant

logger = logging.getLogger(__name__)
MAX_AGE_SECONDS = 300

# The cached context if both its versions are current, and the usage counter of `feature`
# (if given) that the context names: a whole warm check in one Redis call.
READ_CONTEXT = (
    NOW_MS
    + """
local function trusted_counter(key, kind, trust_key, grace_ms)
  -- usage.counters: no lease, or a writer's mark past the grace, and the counter is not
  -- to be trusted (the view's path repairs or rebuilds it); a missing counter is false
  if redis.call('EXISTS', trust_key) == 0 then return false end
  if redis.call('ZCOUNT', key .. ':pending', '-inf', now_ms() - tonumber(grace_ms)) > 0 then return false end
  if kind == 's' then
    if redis.call('EXISTS', key) == 1 then return 's' .. redis.call('SCARD', key) end
    return false
  end
  local value = redis.call('GET', key)
  if value then return 'n' .. value end
  return false
end

local function read_context(ctx_key, catalog_key, version_prefix, feature, trust_key, grace_ms)
  local ctx = redis.call('GET', ctx_key)
  local catalog = redis.call('GET', catalog_key) or '0'
  if not ctx then return false end
  local tid, tv, cv, counters = string.match(ctx, '^(%d+)|(%d+)|(%d+)|%d+|([^|]*)|')
  if not tid then return false end
  local current = redis.call('GET', version_prefix .. tid) or '0'
  if current ~= tv or catalog ~= cv then return false end
  local counter = false
  if feature ~= '' then
    -- the stamp lists ",feature=<kind><counter key>," (kind s: a set of distinct values,
    -- n: a number), found without decoding the payload
    local _, e = string.find(counters, ',' .. feature .. '=', 1, true)
    if e then
      local kind = string.sub(counters, e + 1, e + 1)
      local key = string.sub(counters, e + 2, string.find(counters, ',', e + 1, true) - 1)
      counter = trusted_counter(key, kind, trust_key, grace_ms)
    end
  end
  return {ctx, counter}
end
"""
)
# KEYS[1] cached context, KEYS[2] catalog version; ARGV[1] prefix of tenant version keys,
# ARGV[2] a feature whose usage counter to return too, ARGV[3] the counters' trust lease,
# ARGV[4] the pending marks' grace in ms.
READ = (
    READ_CONTEXT
    + """
return read_context(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""
)
# The fast lane's one round trip (entitlements.fastpath): KEYS[1] the presented key's cached
# record, KEYS[2] its rate count this minute (counted here, as the key lookup counts it),
# KEYS[3], KEYS[4] and ARGV as READ's. Returns {KEYS[1], key record, count, context, counter}:
# the echoed key binds the reply to the request that asked.
CHECK = (
    READ_CONTEXT
    + """
local key = redis.call('GET', KEYS[1])
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], 61) end
local found = read_context(KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if not found then return {KEYS[1], key, count, false, false} end
return {KEYS[1], key, count, found[1], found[2]}
"""
)
CHECK_SHA = hashlib.sha1(CHECK.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
READ_SHA = hashlib.sha1(READ.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


@dataclass(frozen=True)
class Context:
    tenant_id: int
    external_id: str
    currency: str
    subscription: SubscriptionState | None
    features: dict[str, FeatureTerms]
    counters: dict[str, str] = field(default_factory=dict)  # feature → its period usage counter key

    def to_json(self) -> str:
        def enc(value: Any) -> Any:
            if isinstance(value, Decimal):
                return str(value)
            if isinstance(value, datetime):
                return value.isoformat()
            raise TypeError(type(value))

        return json.dumps(
            {
                "tenant_id": self.tenant_id,
                "external_id": self.external_id,
                "currency": self.currency,
                "subscription": asdict(self.subscription) if self.subscription else None,
                "features": {k: asdict(v) for k, v in self.features.items()},
                "counters": self.counters,
            },
            default=enc,
        )

    @classmethod
    def from_json(cls, raw: str) -> Context:
        data = json.loads(raw)
        sub = data["subscription"]
        state = None
        if sub is not None:
            state = SubscriptionState(
                status=sub["status"],
                period_start=datetime.fromisoformat(sub["period_start"]),
                period_end=datetime.fromisoformat(sub["period_end"]),
                past_due_since=datetime.fromisoformat(sub["past_due_since"]) if sub["past_due_since"] else None,
            )
        features = {
            code: FeatureTerms(**{**f, "limit": Decimal(f["limit"]) if f["limit"] is not None else None})
            for code, f in data["features"].items()
        }
        return cls(
            data["tenant_id"], data["external_id"], data["currency"], state, features, data.get("counters") or {}
        )


def dunning_grace() -> timedelta:
    return timedelta(days=settings.DUNNING_GRACE_DAYS)


def build_context(tenant: Tenant, *, now: datetime) -> tuple[Context, datetime]:
    """The context from PostgreSQL, and the instant it stops being true by itself."""
    # the live subscription, else the last one (canceled or ended: its own reason)
    sub = (
        Subscription.objects.filter(tenant=tenant)
        .only("status", "current_period_start", "current_period_end", "past_due_since", "plan_version_id")
        .order_by(Case(When(status__in=LIVE_STATUSES, then=0), default=1), "-started_at", "-pk")
        .first()
    )
    plan_terms: dict[int, PlanEntitlement] = {}
    valid_until = now + timedelta(seconds=MAX_AGE_SECONDS)
    state = None
    if sub is not None:
        state = SubscriptionState(sub.status, sub.current_period_start, sub.current_period_end, sub.past_due_since)
        plan_terms = {e.feature_id: e for e in PlanEntitlement.objects.filter(version_id=sub.plan_version_id)}
        if sub.status in LIVE_STATUSES:
            valid_until = min(valid_until, sub.current_period_end)
        if sub.past_due_since is not None:
            valid_until = min(valid_until, max(now, sub.past_due_since + dunning_grace()))
    grants: dict[int, list[Grant]] = {}
    for grant in Grant.objects.filter(tenant=tenant, revoked_at__isnull=True, expires_at__gt=now):
        grants.setdefault(grant.feature_id, []).append(grant)
        valid_until = min(valid_until, grant.expires_at)
    features = {}
    for feature in Feature.objects.select_related("metric"):
        features[feature.code] = _terms(feature, plan_terms.get(feature.pk), grants.get(feature.pk, []))
    counters = {}
    if sub is not None and sub.status in LIVE_STATUSES:
        counters = {
            code: counter_key(tenant.pk, t.metric_id, sub.current_period_start)
            for code, t in features.items()
            if t.metric_id is not None and t.aggregation in ("sum", "count", "max", "unique_count")
        }
    return Context(tenant.pk, tenant.external_id, tenant.currency, state, features, counters), valid_until


def _terms(feature: Feature, entitlement: PlanEntitlement | None, grants: list[Grant]) -> FeatureTerms:
    metric = feature.metric
    enabled = bool(entitlement and entitlement.enabled)
    limit = entitlement.limit if entitlement else None
    extra = sum((g.amount or Decimal(0) for g in grants if g.kind == Grant.Kind.EXTRA_LIMIT), Decimal(0))
    if any(g.kind == Grant.Kind.ENABLE for g in grants) and not enabled:
        enabled, limit = True, (extra if extra else None)  # switched on by staff: their extra, else no limit
    elif limit is not None:
        limit += extra
    return FeatureTerms(
        code=feature.code,
        on_unavailable=feature.on_unavailable,
        metric_id=metric.pk if metric else None,
        metric_code=metric.code if metric else None,
        aggregation=metric.aggregation if metric else None,
        unique_property=metric.unique_property if metric else None,
        in_plan=entitlement is not None,
        enabled=enabled,
        limit=limit,
        overage=entitlement.overage if entitlement else "block",
    )


def _cache_key(external_id: str) -> str:
    return rkey("ent-ctx", external_id)


_parsed: dict[str, Context] = {}  # per process: cached payload → parsed context (parsing is the hot path)


def _parse(payload: str) -> Context:
    context = _parsed.get(payload)
    if context is None:
        if len(_parsed) > 1024:
            _parsed.clear()
        context = _parsed[payload] = Context.from_json(payload)
    return context


NOT_PREFETCHED = object()


def queue_context_read(pipe: Any, external_id: str, feature: str = "") -> None:
    """Queue the context read into another round trip (the API key lookup's pipeline).
    Plain EVALSHA: a Script object would add a SCRIPT EXISTS round trip to every call."""
    pipe.evalsha(READ_SHA, 2, _cache_key(external_id), catalog_version_key(), *read_args(feature))


def read_args(feature: str) -> tuple[str, str, str, int]:
    """READ's and CHECK's ARGV for `feature`."""
    return tenant_version_prefix(), feature, trust_key(), settings.COUNTER_PENDING_GRACE_MS


def load_context(
    external_id: str, *, now: datetime | None = None, feature: str = "", prefetched: Any = NOT_PREFETCHED
) -> tuple[Context | None, Decimal | None]:
    """The tenant's context (None for an unknown tenant) and, when asked for a feature,
    its current-period usage counter if Redis has one: from Redis in one round trip when
    current, else rebuilt from PostgreSQL and cached. With Redis unreachable, from
    PostgreSQL alone. `prefetched` is the result of queue_context_read, if it was queued."""
    now = now or timezone.now()
    client: redis.Redis | None = get_redis()
    catalog_version: Any = b"0"
    try:
        assert client is not None  # noqa: S101
        if prefetched is NOT_PREFETCHED or isinstance(prefetched, Exception):  # not queued, or NOSCRIPT after a restart
            prefetched = _read_script(client)(
                keys=[_cache_key(external_id), catalog_version_key()], args=list(read_args(feature))
            )
        if prefetched:
            raw, counter = prefetched
            context = context_from_cache(raw, now=now)
            if context is not None:
                return context, counter_value(counter)
        catalog_version = client.get(catalog_version_key()) or b"0"
    except redis.RedisError:
        client, catalog_version = None, b"0"
    tenant = Tenant.objects.filter(external_id=external_id).only("pk", "external_id", "currency").first()
    if tenant is None:
        return None, None
    tenant_version: Any = b"0"
    if client is not None:
        try:
            tenant_version = client.get(tenant_version_key(tenant.pk)) or b"0"
        except redis.RedisError:
            client = None
    # versions read before the database: a change committed after this point bumps them
    context, valid_until = build_context(tenant, now=now)
    if client is not None:
        ttl = max(1, int((valid_until - now).total_seconds()))
        counters = "".join(
            f"{feature}={'s' if context.features[feature].aggregation == 'unique_count' else 'n'}{key},"
            for feature, key in context.counters.items()
        )
        stamp = f"{tenant.pk}|{int(tenant_version)}|{int(catalog_version)}|{_micros(valid_until)}|,{counters}|"
        try:
            client.set(_cache_key(external_id), stamp + context.to_json(), ex=ttl)
        except redis.RedisError:
            logger.warning("entitlements.context_cache_unreachable")
    return context, None


def context_from_cache(raw: bytes, *, now: datetime) -> Context | None:
    """The context a current cache entry holds, or None once an instant that changes the
    answer by itself (a grant's expiry, the period's end, a dunning grace) has passed."""
    valid_until, _, payload = raw.decode().split("|", 5)[3:]
    return _parse(payload) if _micros(now) < int(valid_until) else None


def cached_until(raw: bytes) -> int:
    """Until when (epoch microseconds) a cache entry holds by itself."""
    return int(raw.split(b"|", 4)[3])


def _micros(at: datetime) -> int:
    """An instant as integer microseconds since the epoch (exact, unlike a float)."""
    delta = at - datetime(1970, 1, 1, tzinfo=at.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def counter_value(raw: bytes | None) -> Decimal | None:
    return counter_decimal(raw) if raw else None


_scripts: dict[tuple[int, str], Any] = {}


def registered(client: redis.Redis, source: str) -> Any:
    """A script registered once per connection pool (EVALSHA: the source is not resent;
    after a Redis restart the first call loads it again)."""
    script = _scripts.get((id(client), source))
    if script is None:
        script = _scripts[(id(client), source)] = client.register_script(source)
    return script


def _read_script(client: redis.Redis) -> Any:
    return registered(client, READ)
