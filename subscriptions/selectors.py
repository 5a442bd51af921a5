"""Reads of tenants and subscriptions."""

from __future__ import annotations

from typing import Any

from billing_project.money import exponent, format_decimal

from .models import LIVE_STATUSES, Subscription, Tenant


def live_subscription(tenant: Tenant) -> Subscription | None:
    return (
        Subscription.objects.select_related("plan_version__plan", "scheduled_plan_version__plan")
        .filter(tenant=tenant, status__in=LIVE_STATUSES)
        .first()
    )


def latest_subscription(tenant: Tenant) -> Subscription | None:
    """The live subscription, else the most recent one (canceled or ended)."""
    return live_subscription(tenant) or (
        Subscription.objects.select_related("plan_version__plan", "scheduled_plan_version__plan")
        .filter(tenant=tenant)
        .order_by("-started_at", "-pk")
        .first()
    )


def subscription_document(sub: Subscription) -> dict[str, Any]:
    version = sub.plan_version
    pending = None
    if sub.scheduled_plan_version is not None:
        pending = {
            "plan": sub.scheduled_plan_version.plan.code,
            "version": sub.scheduled_plan_version.version,
            "effective_at": sub.current_period_end,
        }
    elif sub.cancel_at_period_end:
        pending = {"cancel": True, "effective_at": sub.current_period_end}
    return {
        "id": sub.pk,
        "plan": version.plan.code,
        "plan_name": version.plan.name,
        "plan_version": version.version,
        "status": sub.status,
        "currency": version.currency,
        "base_fee": format_decimal(version.base_fee, exponent(version.currency)),
        "interval": version.interval,
        "started_at": sub.started_at,
        "current_period": {"start": sub.current_period_start, "end": sub.current_period_end},
        "trial_end": sub.trial_end,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "pending_change": pending,
        "ended_at": sub.ended_at,
    }


def billing_state(tenant: Tenant) -> dict[str, Any]:
    """API.md's billing view. Usage, credits and invoices join as their apps land."""
    sub = latest_subscription(tenant)
    return {
        "tenant": tenant.external_id,
        "currency": tenant.currency,
        "subscription": subscription_document(sub) if sub is not None else None,
        "usage": [],
        "credit_balance": None,
        "invoices": [],
    }
