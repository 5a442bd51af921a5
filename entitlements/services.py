"""Entitlement services: check, list, the atomic consume, grants, and reconciliation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from prometheus_client import Counter

from billing_project.api_keys import ApiPrincipal, Prefetch
from billing_project.cache import tenant_changed
from billing_project.errors import Conflict, Forbidden, InvalidRequest, invalid_field
from billing_project.money import CONTEXT, format_decimal
from plans.models import Feature
from subscriptions.models import LIVE_STATUSES, Subscription, Tenant
from usage.counters import MeteredMetric, counter_reconcile, counters_suspect, period_usage
from usage.ingestion import MAX_QUANTITY, usage_record_consumed

from .context import NOT_PREFETCHED, Context, build_context, dunning_grace, load_context, queue_context_read
from .evaluation import Decision, FeatureTerms, evaluate
from .models import ConsumeRecord, Grant, ReconciliationRun

logger = logging.getLogger(__name__)
CORRECTIONS = Counter("billing_entitlement_counter_corrections_total", "Usage counters corrected from PostgreSQL")


def _qty(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def _time(at: datetime) -> str:
    # as the API renders UTC times, so that a stored consume answer is byte-identical
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def answer(ctx: Context, terms: FeatureTerms, decision: Decision) -> dict[str, Any]:
    sub = ctx.subscription
    return {
        "tenant": ctx.external_id,
        "feature": terms.code,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "limit": _qty(decision.limit),
        "used": _qty(decision.used) if terms.metered else None,
        "remaining": _qty(decision.remaining),
        "period_start": _time(sub.period_start) if sub else None,
        "period_end": _time(sub.period_end) if sub else None,
        "on_unavailable": terms.on_unavailable,
    }


def _decide(
    ctx: Context,
    terms: FeatureTerms,
    quantity: Decimal,
    now: datetime,
    *,
    cached: bool,
    counter: Decimal | None = None,
) -> Decision:
    # a counter read with the context is used only if this process missed no counter update
    used = counter if cached and not counters_suspect() else None
    sub = ctx.subscription
    if used is None and _counts_usage(ctx, terms) and sub is not None and terms.metric_id is not None:
        used = period_usage(
            tenant_id=ctx.tenant_id,
            metric=MeteredMetric(terms.metric_id, terms.aggregation or "sum", terms.unique_property),
            period_start=sub.period_start,
            period_end=sub.period_end,
            use_cache=cached,
        )
    return evaluate(terms, state=sub, used=used, quantity=quantity, now=now, dunning_grace=dunning_grace())


def _counts_usage(ctx: Context, terms: FeatureTerms) -> bool:
    """Whether the answer needs the period's usage of the feature."""
    return terms.metered and terms.enabled and ctx.subscription is not None and terms.metric_id is not None


def entitlement_answer_cached(
    *, ctx: Context, feature: str, quantity: Decimal, counter: Decimal | None, now: datetime
) -> dict[str, Any] | None:
    """The check's answer from a cached context and usage counter alone, or None when they
    do not settle it (an unknown feature, a usage counter not in Redis): the caller then
    asks entitlement_check, which has the errors and PostgreSQL."""
    terms = ctx.features.get(feature)
    if terms is None or (counter is None and _counts_usage(ctx, terms)):
        return None
    return answer(ctx, terms, _decide(ctx, terms, quantity, now, cached=True, counter=counter))


def _context(
    tenant: str, now: datetime, feature: str = "", prefetched: Any = NOT_PREFETCHED
) -> tuple[Context, Decimal | None]:
    ctx, counter = load_context(tenant, now=now, feature=feature, prefetched=prefetched)
    if ctx is None:
        raise InvalidRequest(f"No tenant {tenant!r}.", code="unknown_tenant", details={"tenant": tenant})
    return ctx, counter


def _feature(ctx: Context, feature: str) -> FeatureTerms:
    terms = ctx.features.get(feature)
    if terms is None:
        raise InvalidRequest(f"No feature {feature!r}.", code="unknown_feature", details={"feature": feature})
    return terms


def entitlement_check_prefetch(*, tenant: str, feature: str) -> Prefetch:
    """The check's Redis read, to ride in the API key lookup's round trip."""
    return lambda pipe: queue_context_read(pipe, tenant, feature)


def entitlement_check(
    *, tenant: str, feature: str, quantity: Decimal, prefetched: Any = NOT_PREFETCHED
) -> dict[str, Any]:
    """May this tenant do `quantity` more of `feature` now? (A read: nothing is recorded.)
    `prefetched`: the result of entitlement_check_prefetch's read, when it was made."""
    now = timezone.now()
    ctx, counter = _context(tenant, now, feature, prefetched)
    terms = _feature(ctx, feature)
    return answer(ctx, terms, _decide(ctx, terms, quantity, now, cached=True, counter=counter))


def entitlements_list(*, tenant: str) -> dict[str, Any]:
    now = timezone.now()
    ctx, _ = _context(tenant, now)
    return {
        "tenant": ctx.external_id,
        "entitlements": [
            answer(ctx, terms, _decide(ctx, terms, Decimal(1), now, cached=True)) for terms in ctx.features.values()
        ],
    }


@dataclass(frozen=True)
class Consumed:
    """A consume's result: the answer, and whether the usage was recorded (allowed) or
    not (denied). The API maps it to a status."""

    recorded: bool
    answer: dict[str, Any]


@transaction.atomic
def entitlement_consume(
    *, principal: ApiPrincipal, tenant: str, feature: str, quantity: Decimal, idempotency_key: str
) -> Consumed:
    """Check and record in one step, for hard limits: recorded (the answer carries the
    usage event's id) when allowed, not recorded when denied. Consumes of one tenant's
    metric are serialised by a transaction-level advisory lock and decided on PostgreSQL's
    exact usage, so a limit of L admits at most L units whatever the concurrency. A
    repeated key answers as the first time did; reused for another feature or quantity it
    is an idempotency_conflict."""
    exponent = quantity.normalize(CONTEXT).as_tuple().exponent
    if quantity >= MAX_QUANTITY:  # recorded as usage: usage's own bound
        raise InvalidRequest(
            f"`quantity` is at most {MAX_QUANTITY:f} (exclusive), as a usage event's is.",
            code="invalid_quantity",
            details={"quantity": str(quantity)},
        )
    if isinstance(exponent, int) and exponent < -6:
        raise InvalidRequest(
            "`quantity` has at most 6 decimals, as usage does.",
            code="invalid_quantity",
            details={"quantity": str(quantity)},
        )
    now = timezone.now()
    tenant_row = Tenant.objects.filter(external_id=tenant).first()
    if tenant_row is None:
        raise InvalidRequest(f"No tenant {tenant!r}.", code="unknown_tenant", details={"tenant": tenant})
    previous = ConsumeRecord.objects.filter(tenant=tenant_row, idempotency_key=idempotency_key).first()
    if previous is not None:
        return _repeated(previous, feature=feature, quantity=quantity)
    ctx, _ = build_context(tenant_row, now=now)  # PostgreSQL, not the cache: this decision records usage
    terms = _feature(ctx, feature)
    if terms.aggregation not in ("sum", "count"):
        # max, unique_count and latest do not add up: a "consume" of them has no meaning
        raise invalid_field("feature", f"{feature!r} is not counted or summed: use entitlements/check.")
    if terms.aggregation == "count" and (quantity != quantity.to_integral_value() or not 1 <= quantity <= 1000):
        raise InvalidRequest(
            "A counted feature consumes a whole number of uses, 1 to 1000.",
            code="invalid_quantity",
            details={"quantity": str(quantity)},
        )
    if terms.metric_code not in principal.metrics:  # the usage API's rule, answered the same way (403)
        raise Forbidden(
            f"This key may not report {terms.metric_code!r}.",
            code="metric_not_allowed",
            details={"metric": terms.metric_code, "allowed": sorted(principal.metrics)},
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [tenant_row.pk, terms.metric_id])
    previous = ConsumeRecord.objects.filter(tenant=tenant_row, idempotency_key=idempotency_key).first()
    if previous is not None:  # the same key, decided while we waited for the lock
        return _repeated(previous, feature=feature, quantity=quantity)
    decision = _decide(ctx, terms, quantity, now, cached=False)
    body = answer(ctx, terms, decision)
    if decision.allowed:
        # allowed: so the tenant has a live subscription and the feature a metric
        assert ctx.subscription is not None  # noqa: S101
        assert terms.metric_id is not None  # noqa: S101
        body["id"] = usage_record_consumed(
            principal=principal,
            tenant_id=tenant_row.pk,
            metric=MeteredMetric(terms.metric_id, terms.aggregation, terms.unique_property),
            quantity=quantity,
            consume_key=idempotency_key,
            period_start=ctx.subscription.period_start,
            now=now,
        )
        body["used"] = _qty((decision.used or Decimal(0)) + quantity)
        if decision.remaining is not None:
            body["remaining"] = _qty(max(decision.remaining - quantity, Decimal(0)))
    try:
        with transaction.atomic():
            ConsumeRecord.objects.create(
                tenant=tenant_row,
                idempotency_key=idempotency_key,
                feature=feature,
                quantity=quantity,
                recorded=decision.allowed,
                response=body,
            )
    except IntegrityError as exc:  # the same key used for another feature at the same moment
        raise Conflict("This idempotency key is being used by another consume.", code="idempotency_conflict") from exc
    return Consumed(recorded=decision.allowed, answer=body)


def _repeated(previous: ConsumeRecord, *, feature: str, quantity: Decimal) -> Consumed:
    """A key used before: the first answer for the same request, a conflict for another."""
    if previous.feature != feature or (previous.quantity is not None and previous.quantity != quantity):
        details = {"idempotency_key": previous.idempotency_key, "feature": previous.feature}
        if previous.quantity is not None:
            details["quantity"] = format_decimal(previous.quantity)
        raise Conflict(
            "This idempotency key was used before with another feature or quantity.",
            code="idempotency_conflict",
            details=details,
        )
    return Consumed(recorded=previous.recorded, answer=previous.response)


# ------------------------------------------------------------------ grants
@transaction.atomic
def grant_create(
    *,
    tenant: Tenant,
    feature: Feature,
    kind: str,
    amount: Decimal | None,
    reason: str,
    expires_at: datetime,
    created_by: Any,
) -> Grant:
    if not reason.strip():
        raise invalid_field("reason", "A grant needs a reason.")
    if expires_at <= timezone.now():
        raise invalid_field("expires_at", "A grant must expire in the future.")
    if kind == Grant.Kind.EXTRA_LIMIT and (feature.metric_id is None or not amount or amount <= 0):
        raise invalid_field("amount", "An extra limit is a positive amount of a metered feature.")
    if kind != Grant.Kind.EXTRA_LIMIT and amount is not None:
        raise invalid_field("amount", "Switching a feature on takes no amount.")
    grant = Grant.objects.create(
        tenant=tenant,
        feature=feature,
        kind=kind,
        amount=amount,
        reason=reason.strip(),
        expires_at=expires_at,
        created_by=created_by,
    )
    tenant_changed(tenant.pk)
    return grant


@transaction.atomic
def grant_revoke(*, grant: Grant) -> Grant:
    grant = Grant.objects.select_for_update().get(pk=grant.pk)
    if grant.revoked_at is None:
        grant.revoked_at = timezone.now()
        grant.save(update_fields=["revoked_at"])
        tenant_changed(grant.tenant_id)
    return grant


# ------------------------------------------------------------------ reconciliation
def counters_reconcile() -> ReconciliationRun:
    """Compare every live subscription's metered counters with PostgreSQL; correct drift."""
    run = ReconciliationRun.objects.create()
    metered = list(Feature.objects.filter(metric__isnull=False).select_related("metric"))
    for sub in Subscription.objects.filter(status__in=LIVE_STATUSES).only(
        "tenant_id", "current_period_start", "current_period_end"
    ):
        for feature in metered:
            metric = feature.metric
            assert metric is not None  # noqa: S101  (filtered above)
            run.checked += 1
            if counter_reconcile(
                tenant_id=sub.tenant_id,
                metric=MeteredMetric(metric.pk, metric.aggregation, metric.unique_property),
                period_start=sub.current_period_start,
                period_end=sub.current_period_end,
            ):
                run.corrected += 1
                CORRECTIONS.inc()
    run.save(update_fields=["checked", "corrected"])
    if run.corrected:
        logger.warning("entitlements.counters_corrected", extra={"corrected": run.corrected, "checked": run.checked})
    return run
