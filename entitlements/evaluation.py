"""Entitlement evaluation: a pure function of the tenant's context and its usage.

Reasons (API.md): ok, overage_billed, not_in_plan, limit_exceeded, no_subscription,
subscription_suspended, subscription_canceled. Access comes from the plan version's
entitlements plus grants — never from a plan's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class FeatureTerms:
    code: str
    on_unavailable: str
    metric_id: int | None = None
    metric_code: str | None = None
    aggregation: str | None = None
    unique_property: str | None = None
    in_plan: bool = False
    enabled: bool = False
    limit: Decimal | None = None  # None: unlimited
    overage: str = "block"

    @property
    def metered(self) -> bool:
        return self.metric_id is not None


@dataclass(frozen=True)
class SubscriptionState:
    status: str
    period_start: datetime
    period_end: datetime
    past_due_since: datetime | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    limit: Decimal | None = None
    used: Decimal | None = None
    remaining: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "limit": self.limit,
            "used": self.used,
            "remaining": self.remaining,
        }


def subscription_denial(state: SubscriptionState | None, *, now: datetime, dunning_grace: timedelta) -> str | None:
    """The reason a subscription's status denies everything, or None if the plan applies."""
    if state is None:
        return "no_subscription"
    if state.status in ("trialing", "active"):
        return None
    if state.status == "past_due":
        # the plan keeps serving during the dunning grace; past it, as if suspended
        if state.past_due_since is None or now < state.past_due_since + dunning_grace:
            return None
        return "subscription_suspended"
    if state.status == "suspended":
        return "subscription_suspended"
    return "subscription_canceled"


def evaluate(
    terms: FeatureTerms,
    *,
    state: SubscriptionState | None,
    used: Decimal | None,
    quantity: Decimal,
    now: datetime,
    dunning_grace: timedelta,
) -> Decision:
    denial = subscription_denial(state, now=now, dunning_grace=dunning_grace)
    if denial is not None:
        return Decision(False, denial)
    if not terms.enabled:
        return Decision(False, "not_in_plan")
    if not terms.metered:
        return Decision(True, "ok")
    used = used if used is not None else Decimal(0)
    if terms.limit is None:
        return Decision(True, "ok", None, used, None)
    remaining = max(terms.limit - used, Decimal(0))
    if used + quantity <= terms.limit:
        return Decision(True, "ok", terms.limit, used, remaining)
    if terms.overage == "bill":
        return Decision(True, "overage_billed", terms.limit, used, remaining)
    return Decision(False, "limit_exceeded", terms.limit, used, remaining)
