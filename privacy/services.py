"""Erasure of a tenant's personal data (GDPR Art. 17) that keeps the books.

`tenant_erase` is one transaction under the tenant's lock: refused while the tenant owes
money (Conflict `tenant_has_open_balance`, nothing written); else its live subscriptions
end and what they owe to now is invoiced at once (while the buyer is still known: an
invoice that would then be owed refuses the whole erasure), its keys are revoked, and each
app pseudonymises what it holds (the tenant's row, dj-stripe's mirror, old audit entries,
stored Stripe events). The Stripe customer follows outside the transaction (no Stripe call
under a lock), retried until done. Finalized invoices keep their buyer until the retention
of the seller's country ends; a daily beat job pseudonymises them then. The Erasure row
records who, why, when and how many, never what was erased.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from decimal import Decimal

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.privacy import approval_reasons_pseudonymise
from billing_project.errors import Conflict, invalid_field
from billing_project.jobs import send_after_commit
from billing_project.money import format_decimal, money_display
from billing_project.privacy import admin_log_pseudonymise, api_keys_revoke, audit_entries_pseudonymise
from invoicing.models import Invoice
from invoicing.privacy import buyers_erase, open_balance
from invoicing.providers import (
    ProviderRejected,
    ProviderUnavailable,
    customer_mirror_pseudonymise,
    customer_pseudonymise,
    customers_mirrored,
)
from invoicing.services import invoice_close_periods
from subscriptions.audit import PERSONAL_FIELDS
from subscriptions.locks import tenant_select_for_update
from subscriptions.models import LIVE_STATUSES, Subscription, Tenant
from subscriptions.privacy import tenant_pseudonymise
from subscriptions.services import subscription_cancel
from webhooks.privacy import stripe_events_pseudonymise

from .export import audit_entries_of
from .models import Erasure
from .retention import retention_end

logger = logging.getLogger(__name__)

STRIPE_TASK = "privacy.tasks.erase_at_stripe"
# characters that look like nothing: a reason of them says nothing
INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")


def pseudonym_of(tenant: Tenant) -> str:
    """What an erased tenant is called: its row's number, nothing about the person."""
    return f"erased-tenant-{tenant.pk}"


def _refuse_if_owed(tenant: Tenant, *, after_final: bool = False) -> None:
    owed = open_balance(tenant)
    if not owed:
        return
    due: dict[str, Decimal] = {}
    for _, amount in owed:
        due[amount.currency] = due.get(amount.currency, Decimal(0)) + amount.amount
    amounts = ", ".join(money_display(v, c) for c, v in sorted(due.items()))
    numbers = [i.number or f"draft #{i.pk}" for i, _ in owed]
    if after_final:
        what = (
            f"its usage and fees up to now would be invoiced at {amounts}: cancel its subscription, then, once "
            "its final invoice is issued (after the grace window for late usage), collect it or write it off"
        )
    else:
        what = f"it owes {amounts} ({', '.join(numbers)}): collect it, or write it off (void or mark uncollectible)"
    raise Conflict(
        f"{tenant.external_id} cannot be erased yet: {what}, then erase.",
        code="tenant_has_open_balance",
        details={
            "invoices": [] if after_final else numbers,
            "amount_due": [
                {"amount": format_decimal(v), "currency": c, "display": money_display(v, c)}
                for c, v in sorted(due.items())
            ],
        },
    )


def _refuse_personal_reason(tenant: Tenant, reason: str) -> None:
    """The erasure keeps its reason for ever: it must not hold what it erases."""
    if any(_holds(reason, value) for value in (tenant.name, tenant.billing_email, tenant.tax_id)):
        raise invalid_field(
            "reason", "The reason is kept for ever: leave the tenant's name, email and tax ID out of it."
        )


def _holds(text: str, value: str) -> bool:
    if not value or len(value) < 3:
        return False
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, re.IGNORECASE) is not None


def check_erasure_request(tenant: Tenant, reason: str) -> None:
    """What an erasure request is refused for at once, before its dry run: an erased
    tenant, one already waiting for approval, a reason holding the personal data."""
    if tenant.erased_at is not None:
        raise Conflict(f"{tenant.external_id} is already erased.", code="tenant_erased")
    pending = ApprovalRequest.objects.filter(tenant=tenant, kind="erasure", status=ApprovalRequest.Status.PENDING)
    if pending.exists():
        raise Conflict(
            f"An erasure of {tenant.external_id} is already waiting for approval (request #{pending.first().pk}).",  # type: ignore[union-attr]
            code="erasure_pending",
        )
    _refuse_personal_reason(tenant, reason)


def _end_and_invoice(tenant: Tenant, *, actor: str, now: datetime) -> tuple[int, int]:
    """End the live subscriptions and invoice every period up to now, grace or not; how many
    subscriptions ended and invoices were made."""
    ended = 0
    while Subscription.objects.filter(tenant=tenant, status__in=LIVE_STATUSES).exists():
        subscription_cancel(tenant=tenant, at_period_end=False, actor=actor, reason="personal data erased", at=now)
        ended += 1
    made = 0
    for sub_id in Subscription.objects.filter(tenant=tenant).order_by("id").values_list("id", flat=True):
        made += len(invoice_close_periods(subscription_id=sub_id, now=now, final=True))
    return ended, made


# What each record's audit entries may hold of a person, by field (entries written before
# those fields were masked): the tenant's details, an invoice's buyer as printed.
def _personal_fields() -> dict[int, frozenset[str]]:
    return {
        ContentType.objects.get_for_model(Tenant).pk: frozenset(PERSONAL_FIELDS),
        ContentType.objects.get_for_model(Invoice).pk: frozenset({"buyer"}),
    }


@transaction.atomic
def tenant_erase(
    *,
    tenant: Tenant,
    reason: str,
    requested_by: str,
    approved_by: str = "",
    approval_request_id: int | None = None,
    now: datetime | None = None,
) -> tuple[Erasure, bool]:
    """Erase the tenant's personal data (see the module docstring); the erasure, and whether
    this call made it (False: the tenant was erased already, that erasure unchanged)."""
    now = now or timezone.now()
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or not any(ch.isprintable() and not ch.isspace() and ch not in INVISIBLE for ch in reason):
        raise invalid_field("reason", "Say why (an erasure is recorded with its reason).")
    tenant = tenant_select_for_update(tenant_id=tenant.pk)
    existing = Erasure.objects.filter(tenant=tenant).first()
    if existing is not None:
        return existing, False
    _refuse_personal_reason(tenant, reason)
    _refuse_if_owed(tenant)
    actor = approved_by or requested_by
    ended, final_invoices = _end_and_invoice(tenant, actor=actor, now=now)
    _refuse_if_owed(tenant, after_final=True)  # rolls all of it back

    pseudonym = pseudonym_of(tenant)
    customers = customers_mirrored(tenant)
    done = {
        "subscriptions_ended": ended,
        "final_invoices": final_invoices,
        "api_keys_revoked": api_keys_revoke(tenant.external_id, reason="tenant erased"),
        "audit_entries_pseudonymised": audit_entries_pseudonymise(audit_entries_of(tenant), _personal_fields()),
        "approval_reasons_pseudonymised": approval_reasons_pseudonymise(
            tenant, [tenant.name, tenant.billing_email, tenant.tax_id]
        ),
        "stripe_events_pseudonymised": stripe_events_pseudonymise(customers),
        "stripe_mirror_pseudonymised": customer_mirror_pseudonymise(tenant, pseudonym=pseudonym),
        "admin_log_pseudonymised": admin_log_pseudonymise(tenant.name, pseudonym),
    }
    tenant_pseudonymise(tenant, pseudonym=pseudonym, at=now)
    finalized = Invoice.objects.filter(tenant=tenant).exclude(status=Invoice.Status.DRAFT)
    done["invoices_retained"] = finalized.count()
    retained = [retention_end(i.finalized_at, i.seller.get("country")) for i in finalized if i.finalized_at]
    erasure = Erasure.objects.create(
        tenant=tenant,
        reason=reason,
        requested_by=requested_by,
        approved_by=approved_by,
        approval_request_id=approval_request_id,
        erased_at=now,
        done=done,
        stripe_customers=customers,
        retention_until=max(retained) if retained else None,
        buyers_erased_at=None if retained else now,
    )
    if customers:
        send_after_commit(STRIPE_TASK, erasure.pk, failure_event="privacy.stripe_enqueue_failed", erasure=erasure.pk)
    log = {"tenant": tenant.external_id, "erasure": erasure.pk, **done}
    transaction.on_commit(lambda: logger.info("privacy.tenant_erased", extra=log))  # not for a dry run
    return erasure, True


def erasure_at_stripe(*, erasure_id: int, now: datetime | None = None) -> Erasure:
    """Pseudonymise the erased tenant's Stripe customers (outside any transaction); done
    once every one has been. Stripe unreachable: ProviderUnavailable for the task to retry
    (and the beat job after it); a customer Stripe no longer has is done with."""
    erasure = Erasure.objects.get(pk=erasure_id)
    if erasure.stripe_done_at is not None:
        return erasure
    pseudonym = pseudonym_of(erasure.tenant)
    try:
        for customer in erasure.stripe_customers:
            try:
                customer_pseudonymise(customer, pseudonym=pseudonym)
            except ProviderRejected as exc:
                if exc.status != 404:
                    raise
                logger.warning("privacy.stripe_customer_gone", extra={"erasure": erasure.pk, "customer": customer})
    except (ProviderUnavailable, ProviderRejected) as exc:
        Erasure.objects.filter(pk=erasure.pk, stripe_done_at=None).update(stripe_last_error=str(exc)[:2000])
        _count_attempt(erasure)
        logger.error("privacy.stripe_erasure_failed", extra={"erasure": erasure.pk, "error": str(exc)[:500]})
        raise
    _count_attempt(erasure)
    Erasure.objects.filter(pk=erasure.pk, stripe_done_at=None).update(
        stripe_done_at=now or timezone.now(), stripe_last_error=""
    )
    erasure.refresh_from_db()
    return erasure


def _count_attempt(erasure: Erasure) -> None:
    Erasure.objects.filter(pk=erasure.pk).update(stripe_attempts=F("stripe_attempts") + 1)


def erasures_at_stripe_pending() -> list[int]:
    return list(
        Erasure.objects.filter(stripe_done_at=None)
        .exclude(stripe_customers=[])
        .order_by("id")
        .values_list("id", flat=True)
    )


def buyers_erase_due(*, now: datetime | None = None) -> int:
    """The daily beat job: erased tenants' finalized invoices whose retention has ended lose
    their buyer (invoicing.privacy.buyers_erase, the one change the invoice guard allows).
    Never before the erasure's own `retention_until` (what it promised, whatever the
    settings say now), nor before an invoice's own retention end (its seller's country as
    printed on it). An erasure whose invoices all have is complete. How many changed."""
    now = now or timezone.now()
    changed = 0
    pending = Erasure.objects.filter(buyers_erased_at=None, retention_until__lte=now).select_related("tenant")
    for erasure in pending.order_by("id"):
        finalized = Invoice.objects.filter(tenant=erasure.tenant).exclude(status=Invoice.Status.DRAFT)
        due = [
            i.pk
            for i in finalized.exclude(buyer__has_key="erased").only("id", "finalized_at", "seller")
            if i.finalized_at and retention_end(i.finalized_at, i.seller.get("country")) <= now
        ]
        changed += buyers_erase(due)
        if not finalized.exclude(buyer__has_key="erased").exists():
            Erasure.objects.filter(pk=erasure.pk, buyers_erased_at=None).update(buyers_erased_at=now)
    if changed:
        logger.info("privacy.buyers_erased", extra={"invoices": changed})
    return changed
