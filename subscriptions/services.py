"""Subscription-domain services: every write to tenants and subscriptions.

Each operation is one transaction that locks the rows it decides on, moves the
status only through lifecycle.TRANSITIONS, and writes one SubscriptionEvent (the
audit record: who, why, from which state to which). Times are whole seconds, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from babel import Locale
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billing_project.cache import tenant_changed
from billing_project.errors import Conflict, InvalidRequest, NotFound, invalid_field
from billing_project.money import format_decimal, normalize_currency
from plans.models import PlanVersion
from plans.selectors import live_version

from . import periods, proration
from .lifecycle import CHANGEABLE, next_status
from .locks import tenant_select_for_update
from .models import LIVE_STATUSES, BillingPeriod, ProrationItem, Subscription, SubscriptionEvent, Tenant
from .taxids import tax_id_clean
from .tenant_ids import TENANT_ID_RULE, tenant_id_problem

SYSTEM = "system"


def _now(at: datetime | None) -> datetime:
    return at or timezone.now()


# ------------------------------------------------------------------ tenants
_NOT_COUNTRIES = {"ZZ", "EU", "EZ", "UN", "QO", "XA", "XB"}


def tenant_country(code: str) -> str:
    """An upper-case ISO 3166 alpha-2 code ("" for none), or InvalidRequest(`invalid_country`)."""
    upper = (code or "").strip().upper()
    if upper and (len(upper) != 2 or upper in _NOT_COUNTRIES or upper not in Locale("en").territories):
        raise InvalidRequest(f"{code!r} is not an ISO 3166 country code.", code="invalid_country")
    return upper


def tenant_upsert(
    *,
    external_id: str,
    name: str,
    billing_email: str | None = "",
    country: str | None = "",
    currency: str | None = "USD",
    address: str | None = "",
    tax_id: str | None = "",
) -> tuple[Tenant, bool]:
    """Create the tenant or update its details; returns (tenant, created). On an update,
    a detail given as None keeps its stored value (a new tenant pays in USD unless told).
    The tax ID is checked against the tenant's country (given, else stored): InvalidRequest
    `invalid_tax_id`."""
    if (problem := tenant_id_problem(external_id)) is not None:
        raise InvalidRequest(
            f"{external_id!r} is not a valid tenant id ({TENANT_ID_RULE}).",
            code="validation_error",
            details={"fields": {"tenant": problem}},
        )
    if not (name or "").strip():
        raise InvalidRequest(
            "A tenant needs a name.", code="validation_error", details={"fields": {"name": "required"}}
        )
    if billing_email:
        try:
            validate_email(billing_email)
        except ValidationError as exc:
            raise InvalidRequest(f"{billing_email!r} is not an email address.", code="invalid_email") from exc
    given: dict[str, str | None] = {
        "name": name.strip(),
        "billing_email": billing_email.strip() if billing_email is not None else None,
        "country": tenant_country(country) if country is not None else None,
        "currency": normalize_currency(currency) if currency is not None else None,
        "address": _address(address) if address is not None else None,
        "tax_id": tax_id,
    }
    defaults = {"billing_email": "", "country": "", "currency": "USD", "address": "", "tax_id": ""}
    with transaction.atomic():
        # created if new (a concurrent create waits on the unique id, then finds it), then
        # locked through the one helper, in its documented order
        if tax_id is not None:  # checked before any write, against the country it will have
            stored = Tenant.objects.filter(external_id=external_id).values_list("country", flat=True).first()
            given["tax_id"] = tax_id_clean(tax_id, given["country"] if given["country"] is not None else stored or "")
        found, created = Tenant.objects.get_or_create(
            external_id=external_id, defaults={k: v if v is not None else defaults[k] for k, v in given.items()}
        )
        tenant = found if created else tenant_select_for_update(tenant_id=found.pk)
        if not created:
            refuse_if_erased(tenant)
            values = {k: v for k, v in given.items() if v is not None}
            live = Subscription.objects.filter(tenant=tenant, status__in=LIVE_STATUSES).exists()
            if live and values.get("currency", tenant.currency) != tenant.currency:
                raise Conflict(
                    f"{external_id} has a live subscription in {tenant.currency}; its currency cannot change.",
                    code="currency_locked",
                )
            for key, value in values.items():
                setattr(tenant, key, value)
            tenant.tax_id = tax_id_clean(tenant.tax_id, tenant.country)  # the stored one against a new country too
            tenant.save()
    return tenant, created


def _address(value: str) -> str:
    """Lines as printed, trimmed, no blank ones; at most 6 lines of 100 characters."""
    lines = [line.strip() for line in str(value).replace("\r", "").split("\n") if line.strip()]
    if len(lines) > 6 or any(len(line) > 100 for line in lines):
        raise InvalidRequest(
            "An address of at most 6 lines of 100 characters.",
            code="validation_error",
            details={"fields": {"address": "at most 6 lines of 100 characters"}},
        )
    return "\n".join(lines)


def refuse_if_erased(tenant: Tenant) -> None:
    """An erased tenant's details stay erased and it starts nothing new: the platform makes
    a new tenant (another external id) for a customer who comes back."""
    if tenant.erased_at is not None:
        raise Conflict(
            f"{tenant.external_id}'s personal data was erased on {tenant.erased_at:%Y-%m-%d}.",
            code="tenant_erased",
            details={"erased_at": tenant.erased_at.isoformat()},
        )


def tenant_get(external_id: str) -> Tenant:
    tenant = Tenant.objects.filter(external_id=external_id).first()
    if tenant is None:
        raise NotFound(f"No tenant {external_id!r}.")
    return tenant


# ------------------------------------------------------------------ helpers
@dataclass(frozen=True)
class _Periods:
    """What an operation does to the billing periods: close the open one at `close_at`,
    and open the next one, `[open_start or the cycle's start, the cycle's end)` on the
    subscription's plan version as it now stands."""

    close_at: datetime | None = None
    open: str | None = None  # BillingPeriod.Kind
    fee_in_advance: bool = False
    open_start: datetime | None = None


def _record(
    sub: Subscription,
    action: str,
    from_status: str,
    *,
    actor: str,
    reason: str,
    at: datetime,
    data: dict[str, Any] | None = None,
    periods: _Periods | None = None,
) -> SubscriptionEvent:
    tenant_changed(sub.tenant_id)  # every recorded operation may change what the tenant may do
    event = SubscriptionEvent.objects.create(
        subscription=sub,
        action=action,
        from_status=from_status,
        to_status=sub.status,
        actor=actor,
        reason=reason,
        data=data or {},
        at=at,
    )
    if periods is not None:
        _move_periods(sub, event, periods)
    return event


def _move_periods(sub: Subscription, event: SubscriptionEvent, move: _Periods) -> None:
    """Close the open billing period and/or open the next, on the row the caller locked.
    A period closed at its start is empty: it bills no usage (its fee, if billed in
    advance, stays billed, like any fee of a subscription stopped early)."""
    if move.close_at is not None:
        current = BillingPeriod.objects.select_for_update().filter(subscription=sub, closed=False).first()
        if current is not None:  # a subscription older than billing periods may have none
            current.end, current.closed, current.closed_by = max(move.close_at, current.start), True, event
            current.save(update_fields=["end", "closed", "closed_by"])
    if move.open is not None:
        trial = move.open == BillingPeriod.Kind.TRIAL
        BillingPeriod.objects.create(
            subscription=sub,
            plan_version=sub.plan_version,
            currency=sub.plan_version.currency,
            kind=move.open,
            start=move.open_start or sub.current_period_start,
            end=sub.current_period_end,
            planned_end=sub.current_period_end,
            fee_in_advance=move.fee_in_advance and not trial,
            opened_by=event,
        )


def _transition(
    sub: Subscription,
    action: str,
    *,
    actor: str,
    reason: str,
    at: datetime,
    data: dict[str, Any] | None = None,
    periods: _Periods | None = None,
) -> SubscriptionEvent:
    old = sub.status
    new = next_status(old, action)  # raises InvalidTransition before anything is written
    if new in ("canceled", "ended") and old in LIVE_STATUSES and periods is None:
        # stopped: the usage so far is billed (a suspended subscription's period stayed open
        # past its end, so usage reported meanwhile lies in it too)
        periods = _Periods(close_at=at)
    sub.status = new
    if sub.status == Subscription.Status.PAST_DUE and old != sub.status:
        sub.past_due_since = at  # the dunning grace counts from here
    elif sub.status != Subscription.Status.PAST_DUE:
        sub.past_due_since = None
    if sub.status in ("canceled", "ended"):
        sub.ended_at = at
        sub.scheduled_plan_version = None
    sub.save()
    return _record(sub, action, old, actor=actor, reason=reason, at=at, data=data, periods=periods)


def _live_locked(tenant: Tenant) -> Subscription:
    # No joins in a locking read: after waiting for a concurrent writer, PostgreSQL
    # re-checks the locked row but keeps the joined rows it read before, so a row whose
    # plan_version changed would silently drop out (caught by tests/subscriptions/test_races).
    sub = Subscription.objects.select_for_update().filter(tenant=tenant, status__in=LIVE_STATUSES).first()
    if sub is None:
        raise NotFound(f"{tenant.external_id} has no live subscription.", code="no_subscription")
    return sub


def offered_version(plan_code: str, tenant: Tenant) -> PlanVersion:
    """The live version of a plan a tenant may subscribe to: published, in its currency."""
    version = live_version(plan_code)
    if version is None:
        raise InvalidRequest(f"No published plan {plan_code!r}.", code="unknown_plan", details={"plan": plan_code})
    if version.currency != tenant.currency:
        raise InvalidRequest(
            f"Plan {plan_code!r} is priced in {version.currency}; {tenant.external_id} pays in {tenant.currency}.",
            code="currency_mismatch",
        )
    return version


def _interval(version: PlanVersion) -> periods.Interval:
    return cast(periods.Interval, version.interval)


def _monthly_fee(version: PlanVersion) -> Decimal:
    return version.base_fee / 12 if version.interval == "year" else version.base_fee


def _start_paid_period(sub: Subscription, version: PlanVersion, at: datetime) -> None:
    sub.period_anchor, sub.period_index = at, 0
    sub.current_period_start, sub.current_period_end = periods.period(at, _interval(version), 0)


# ------------------------------------------------------------------ create
@transaction.atomic
def subscription_create(*, tenant: Tenant, plan_code: str, actor: str, at: datetime | None = None) -> Subscription:
    """Subscribe a tenant to a plan's live version; a trial first when the plan has one."""
    at = _now(at)
    tenant = tenant_select_for_update(tenant_id=tenant.pk)  # serialises creates; current currency
    refuse_if_erased(tenant)
    if Subscription.objects.filter(tenant=tenant, status__in=LIVE_STATUSES).exists():
        raise Conflict(f"{tenant.external_id} already has a live subscription.", code="subscription_exists")
    version = offered_version(plan_code, tenant)
    sub = Subscription(tenant=tenant, plan_version=version, started_at=at)
    if version.trial_days:
        sub.status = Subscription.Status.TRIALING
        sub.trial_end = at + timedelta(days=version.trial_days)
        sub.period_anchor, sub.period_index = at, 0
        sub.current_period_start, sub.current_period_end = at, sub.trial_end
    else:
        sub.status = Subscription.Status.ACTIVE
        _start_paid_period(sub, version, at)
    try:
        with transaction.atomic():
            sub.save()
    except IntegrityError as exc:  # the partial unique index, should a writer bypass the lock
        raise Conflict(f"{tenant.external_id} already has a live subscription.", code="subscription_exists") from exc
    trialing = sub.status == Subscription.Status.TRIALING
    _record(
        sub,
        "create",
        "",
        actor=actor,
        reason="",
        at=at,
        data={"plan": version.plan.code, "version": version.version},
        periods=_Periods(open=BillingPeriod.Kind.TRIAL if trialing else BillingPeriod.Kind.PAID, fee_in_advance=True),
    )
    return sub


# ------------------------------------------------------------------ change plan
@dataclass(frozen=True)
class PlanChange:
    subscription: Subscription
    applied: bool  # False: scheduled for the end of the period
    effective_at: datetime
    proration: list[proration.ProrationLine]


@transaction.atomic
def subscription_change_plan(
    *, tenant: Tenant, plan_code: str, when: str | None, actor: str, at: datetime | None = None
) -> PlanChange:
    """Move to another plan: now (upgrades, by default) with proration, or at the end of
    the period (downgrades, by default) without. The row lock makes concurrent changes
    apply one after the other, each against the state the previous one left."""
    at = _now(at)
    sub = _live_locked(tenant)
    _roll_locked(sub, at)
    if not sub.is_live:
        raise NotFound(f"{tenant.external_id} has no live subscription.", code="no_subscription")
    if sub.status not in CHANGEABLE:
        raise Conflict(
            f"A {sub.status} subscription cannot change plan.",
            code="subscription_not_changeable",
            details={"status": sub.status},
        )
    version = offered_version(plan_code, tenant)
    if version.pk == sub.plan_version_id:
        raise Conflict(f"{tenant.external_id} is already on {version}.", code="already_on_plan")
    old = sub.plan_version
    if when is None:
        when = "now" if _monthly_fee(version) >= _monthly_fee(old) else "period_end"
    if when not in ("now", "period_end"):
        raise InvalidRequest("`when` is now or period_end.", code="validation_error")
    if when == "period_end":
        if sub.cancel_at_period_end:
            raise Conflict(
                "The subscription is canceled at the period end; nothing to change into.", code="cancel_scheduled"
            )
        sub.scheduled_plan_version = version
        sub.save()
        _record(
            sub,
            "schedule_change",
            sub.status,
            actor=actor,
            reason="",
            at=at,
            data={"from": str(old), "to": str(version), "effective_at": sub.current_period_end.isoformat()},
        )
        return PlanChange(sub, False, sub.current_period_end, [])
    lines: list[proration.ProrationLine] = []
    # The period splits here: usage so far is priced by the old version, usage from now by
    # the new one. The new period's fee is the proration charge, not a fee in advance.
    split = _Periods(
        close_at=at,
        open=BillingPeriod.Kind.PAID if sub.status == Subscription.Status.ACTIVE else BillingPeriod.Kind.TRIAL,
        open_start=at,
    )
    # proration is in the currency of the period it splits, never guessed from the tenant
    currency = old.currency
    if version.currency != currency:
        raise InvalidRequest(
            f"{version} is priced in {version.currency}; the subscription bills in {currency}.",
            code="currency_mismatch",
        )
    if sub.status == Subscription.Status.ACTIVE:
        same = old.interval == version.interval
        new_end = None if same else periods.shift(at, _interval(version), 1)
        lines = proration.plan_change(
            old_name=old.plan.name,
            old_fee=old.base_fee,
            new_name=version.plan.name,
            new_fee=version.base_fee,
            start=sub.current_period_start,
            end=sub.current_period_end,
            at=at,
            currency=currency,
            same_interval=same,
            new_period_end=new_end,
        )
        if not same:  # a new cycle starts here
            _start_paid_period(sub, version, at)
    # (a trial is free: switching during it prorates nothing and keeps the trial's end)
    sub.plan_version = version
    sub.scheduled_plan_version = None
    sub.save()
    event = _record(
        sub,
        "change_plan",
        sub.status,
        actor=actor,
        reason="",
        at=at,
        data={
            "from": str(old),
            "to": str(version),
            "proration": [{"kind": x.kind, "amount": format_decimal(x.amount)} for x in lines],
        },
        periods=split,
    )
    ProrationItem.objects.bulk_create(
        [
            ProrationItem(
                subscription=sub,
                event=event,
                kind=x.kind,
                description=x.description,
                amount=x.amount,
                currency=currency,
                period_start=x.period_start,
                period_end=x.period_end,
            )
            for x in lines
        ]
    )
    return PlanChange(sub, True, at, lines)


# ------------------------------------------------------------------ cancel and status actions
@transaction.atomic
def subscription_cancel(
    *, tenant: Tenant, at_period_end: bool, actor: str, reason: str = "", at: datetime | None = None
) -> Subscription:
    """Cancel now (access stops) or at the end of the period (asked again: no change)."""
    at = _now(at)
    sub = _live_locked(tenant)
    _roll_locked(sub, at)
    if not sub.is_live:
        return sub  # it ended at a boundary that had already passed
    if not at_period_end:
        _transition(sub, "cancel", actor=actor, reason=reason, at=at)
        return sub
    if sub.status == Subscription.Status.SUSPENDED:
        raise Conflict(
            "A suspended subscription does not renew; cancel it now instead.",
            code="invalid_transition",
            details={"status": sub.status, "action": "cancel_at_period_end"},
        )
    if not sub.cancel_at_period_end:
        sub.cancel_at_period_end = True
        sub.scheduled_plan_version = None  # nothing to change into once it ends
        sub.save()
        _record(
            sub,
            "schedule_cancel",
            sub.status,
            actor=actor,
            reason=reason,
            at=at,
            data={"effective_at": sub.current_period_end.isoformat()},
        )
    return sub


@transaction.atomic
def subscription_apply(
    *, subscription: Subscription, action: str, actor: str, reason: str = "", at: datetime | None = None
) -> Subscription:
    """A status action by staff or another service: suspend, resume, end, cancel,
    mark_past_due (a payment failed), recover (the overdue invoice was paid)."""
    at = _now(at)
    sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
    _roll_locked(sub, at)
    if action == "resume" and sub.status == Subscription.Status.SUSPENDED:
        return _resume(sub, actor=actor, reason=reason, at=at)
    _transition(sub, action, actor=actor, reason=reason, at=at)
    return sub


def _resume(sub: Subscription, *, actor: str, reason: str, at: datetime) -> Subscription:
    """Back from suspension: into the trial if it has not ended, else into a paid period.
    No base fee is charged for time spent suspended: a period that ended meanwhile closes
    at `at` (usage reported meanwhile is billed by it) and a new one starts there, on the
    plan change scheduled for that end, if any. (A subscription canceled at its period
    end has ended by then: the roll, which runs first, ends it.)"""
    in_trial = sub.trial_end is not None and sub.current_period_end == sub.trial_end
    if in_trial and sub.trial_end is not None and sub.trial_end > at:
        _transition(sub, "resume_trial", actor=actor, reason=reason, at=at)
        return sub
    moved = None
    if in_trial or sub.current_period_end <= at:
        # The period that ended meanwhile closes now, not at its end: it stayed open while
        # suspended, so usage reported meanwhile lies in it (a paid one's is billed now;
        # no base fee is charged for the time suspended).
        moved = _Periods(close_at=at, open=BillingPeriod.Kind.PAID, fee_in_advance=True)
        if sub.scheduled_plan_version is not None:
            sub.plan_version, sub.scheduled_plan_version = sub.scheduled_plan_version, None
        _start_paid_period(sub, sub.plan_version, at)
    _transition(sub, "resume", actor=actor, reason=reason, at=at, periods=moved)
    return sub


def subscription_suspend(*, subscription: Subscription, actor: str, reason: str) -> Subscription:
    return subscription_apply(subscription=subscription, action="suspend", actor=actor, reason=reason)


def subscription_resume(*, subscription: Subscription, actor: str, reason: str) -> Subscription:
    return subscription_apply(subscription=subscription, action="resume", actor=actor, reason=reason)


TRIAL_EXTENSION_MAX_DAYS = 90


@transaction.atomic
def subscription_extend_trial(
    *, tenant: Tenant, days: int, actor: str, reason: str, at: datetime | None = None
) -> Subscription:
    """Give a tenant in its trial `days` more of it: the trial, the current period and the
    open trial billing period all end that much later (nothing is billed for a trial). Only
    a trialing subscription, whose trial has not ended by `at`, is extended."""
    at = _now(at)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= TRIAL_EXTENSION_MAX_DAYS:
        raise invalid_field("days", f"A trial is extended by 1 to {TRIAL_EXTENSION_MAX_DAYS} whole days.")
    if not reason.strip():
        raise invalid_field("reason", "Say why the trial is extended.")
    sub = _live_locked(tenant)
    _roll_locked(sub, at)  # a trial that ended before `at` has become a paid period: not extended
    if sub.status != Subscription.Status.TRIALING or sub.trial_end is None:
        raise Conflict(
            f"{tenant.external_id}'s subscription is {sub.status}, not in its trial.",
            code="subscription_not_trialing",
            details={"status": sub.status},
        )
    old_end = sub.trial_end
    sub.trial_end = old_end + timedelta(days=days)
    sub.current_period_end = sub.trial_end
    sub.save()
    # the open trial period mirrors current_period_* (the subscription's row lock covers it);
    # only its end moves: planned_end keeps where it was due to end when it opened
    BillingPeriod.objects.filter(subscription=sub, closed=False, kind=BillingPeriod.Kind.TRIAL).update(
        end=sub.trial_end
    )
    _record(
        sub,
        "extend_trial",
        sub.status,
        actor=actor,
        reason=reason.strip(),
        at=at,
        data={"days": days, "from": old_end.isoformat(), "to": sub.trial_end.isoformat()},
    )
    return sub


# ------------------------------------------------------------------ renewal
@transaction.atomic
def subscription_roll(*, subscription_id: int, at: datetime | None = None) -> int:
    """Bring one subscription's period up to `at`: end a trial, apply a scheduled
    change, end a subscription canceled at period end, or renew — one event per
    period boundary crossed. Returns how many boundaries were crossed."""
    at = _now(at)
    sub = Subscription.objects.select_for_update().get(pk=subscription_id)  # no joins: see _live_locked
    return _roll_locked(sub, at)


def _roll_locked(sub: Subscription, at: datetime) -> int:
    """The boundaries passed by `at`, crossed on a row the caller has locked. Every
    operation calls it first, so none acts on a period that is already over."""
    crossed = 0
    if sub.status == Subscription.Status.SUSPENDED and sub.cancel_at_period_end and sub.current_period_end <= at:
        # Suspended subscriptions don't renew, but one canceled at its period end still ends there.
        _transition(sub, "end", actor=SYSTEM, reason="canceled at period end", at=sub.current_period_end)
        return 1
    while sub.status in ("trialing", "active", "past_due") and sub.current_period_end <= at:
        boundary = sub.current_period_end
        crossed += 1
        if sub.cancel_at_period_end:
            _transition(sub, "end", actor=SYSTEM, reason="canceled at period end", at=boundary)
            break
        data: dict[str, Any] = {}
        scheduled = sub.scheduled_plan_version
        if scheduled is not None:
            data = {"from": str(sub.plan_version), "to": str(scheduled)}
            interval_changed = scheduled.interval != sub.plan_version.interval
            sub.plan_version, sub.scheduled_plan_version = scheduled, None
            if interval_changed:
                sub.period_anchor, sub.period_index = boundary, -1  # the next period starts here
        renewal = _Periods(close_at=boundary, open=BillingPeriod.Kind.PAID, fee_in_advance=True)
        if sub.status == Subscription.Status.TRIALING:
            _start_paid_period(sub, sub.plan_version, boundary)
            _transition(sub, "activate", actor=SYSTEM, reason="trial ended", at=boundary, data=data, periods=renewal)
            continue
        sub.period_index += 1
        sub.current_period_start, sub.current_period_end = periods.period(
            sub.period_anchor, _interval(sub.plan_version), sub.period_index
        )
        _transition(sub, "renew", actor=SYSTEM, reason="", at=boundary, data=data, periods=renewal)
    return crossed


def subscriptions_roll_due(*, at: datetime | None = None, limit: int = 1000) -> int:
    """The beat job: roll every subscription whose period has ended, each in its own transaction."""
    at = _now(at)
    rolling = Q(status__in=("trialing", "active", "past_due")) | Q(status="suspended", cancel_at_period_end=True)
    due = list(
        Subscription.objects.filter(rolling, current_period_end__lte=at)
        .order_by("current_period_end")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(subscription_roll(subscription_id=pk, at=at) for pk in due)


DUNNING_SUSPENSION = "unpaid past the dunning grace"


def subscriptions_suspend_overdue(*, at: datetime | None = None, limit: int = 1000) -> int:
    """The beat job of dunning: suspend each subscription still past due after
    DUNNING_GRACE_DAYS, each in its own transaction. Payment of the overdue invoice
    resumes it (invoicing)."""
    at = _now(at)
    cutoff = at - timedelta(days=settings.DUNNING_GRACE_DAYS)
    overdue = list(
        Subscription.objects.filter(status=Subscription.Status.PAST_DUE, past_due_since__lte=cutoff)
        .order_by("past_due_since")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(subscription_suspend_if_overdue(subscription_id=pk, at=at) for pk in overdue)


@transaction.atomic
def subscription_suspend_if_overdue(*, subscription_id: int, at: datetime) -> bool:
    """Suspend one subscription if, under its row lock, it is still past due beyond the
    grace: a payment (recovery) or the period's end may have come first."""
    sub = Subscription.objects.select_for_update().get(pk=subscription_id)
    _roll_locked(sub, at)
    cutoff = at - timedelta(days=settings.DUNNING_GRACE_DAYS)
    if sub.status != Subscription.Status.PAST_DUE or sub.past_due_since is None or sub.past_due_since > cutoff:
        return False
    _transition(sub, "suspend", actor=SYSTEM, reason=DUNNING_SUSPENSION, at=at)
    return True


@transaction.atomic
def subscription_recover_after_payment(*, subscription_id: int, actor: str, reason: str) -> Subscription:
    """The overdue invoice is paid: a past-due subscription recovers, and one suspended by
    dunning resumes; one suspended by staff stays so. Decided under the row lock."""
    at = _now(None)
    sub = Subscription.objects.select_for_update().get(pk=subscription_id)
    _roll_locked(sub, at)
    if sub.status == Subscription.Status.PAST_DUE:
        _transition(sub, "recover", actor=actor, reason=reason, at=at)
    elif sub.status == Subscription.Status.SUSPENDED:
        last = sub.events.order_by("-at", "-id").first()
        if last is not None and last.reason == DUNNING_SUSPENSION:
            _resume(sub, actor=actor, reason=reason, at=at)
    return sub
