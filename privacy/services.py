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
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing_project.errors import Conflict, invalid_field
from billing_project.jobs import send_after_commit
from billing_project.money import format_decimal
from billing_project.privacy import api_keys_revoke, audit_entries_pseudonymise
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
from subscriptions.locks import tenant_select_for_update
from subscriptions.models import LIVE_STATUSES, Subscription, Tenant
from subscriptions.privacy import tenant_pseudonymise
from subscriptions.services import subscription_cancel
from webhooks.privacy import stripe_events_pseudonymise

from .export import audit_entries_of
from .models import Erasure
from .retention import issued_before_retention_ended, retention_end

logger = logging.getLogger(__name__)

STRIPE_TASK = "privacy.tasks.erase_at_stripe"


def pseudonym_of(tenant: Tenant) -> str:
    """What an erased tenant is called: its row's number, nothing about the person."""
    return f"erased-tenant-{tenant.pk}"


def _refuse_if_owed(tenant: Tenant, *, after_final: bool = False) -> None:
    owed = open_balance(tenant)
    if not owed:
        return
    due: dict[str, Any] = {}
    for invoice in owed:
        due[invoice.currency] = due.get(invoice.currency, 0) + invoice.total
    amounts = ", ".join(f"{format_decimal(v)} {c}" for c, v in sorted(due.items()))
    what = "ending its subscription now would invoice" if after_final else "it owes"
    raise Conflict(
        f"{tenant.external_id} cannot be erased while {what} {amounts}: collect it, or write it off "
        "(void or mark the invoices uncollectible), first.",
        code="tenant_has_open_balance",
        details={
            "invoices": [i.number or f"draft #{i.pk}" for i in owed],
            "amount_due": [{"amount": format_decimal(v), "currency": c} for c, v in sorted(due.items())],
        },
    )


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


@transaction.atomic
def tenant_erase(
    *,
    tenant: Tenant,
    reason: str,
    requested_by: str,
    approved_by: str = "",
    approval_request_id: int | None = None,
    now: datetime | None = None,
) -> Erasure:
    """Erase the tenant's personal data (see the module docstring). Asked again for a tenant
    already erased: that erasure, unchanged."""
    now = now or timezone.now()
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason:
        raise invalid_field("reason", "Say why (an erasure is recorded with its reason).")
    tenant = tenant_select_for_update(tenant_id=tenant.pk)
    existing = Erasure.objects.filter(tenant=tenant).first()
    if existing is not None:
        return existing
    _refuse_if_owed(tenant)
    actor = approved_by or requested_by
    ended, final_invoices = _end_and_invoice(tenant, actor=actor, now=now)
    _refuse_if_owed(tenant, after_final=True)  # rolls all of it back

    personal = [tenant.name, tenant.billing_email, tenant.tax_id, *tenant.address.splitlines()]
    pseudonym = pseudonym_of(tenant)
    customers = customers_mirrored(tenant)
    done = {
        "subscriptions_ended": ended,
        "final_invoices": final_invoices,
        "api_keys_revoked": api_keys_revoke(tenant.external_id, reason="tenant erased"),
        "audit_entries_pseudonymised": audit_entries_pseudonymise(audit_entries_of(tenant), personal),
        "stripe_events_pseudonymised": stripe_events_pseudonymise(personal, within=[*customers, tenant.billing_email]),
        "stripe_mirror_pseudonymised": customer_mirror_pseudonymise(tenant, pseudonym=pseudonym),
    }
    tenant_pseudonymise(tenant, pseudonym=pseudonym, at=now)
    finalized = Invoice.objects.filter(tenant=tenant).exclude(status=Invoice.Status.DRAFT)
    last_issued = finalized.order_by("-finalized_at").values_list("finalized_at", flat=True).first()
    done["invoices_retained"] = finalized.count()
    erasure = Erasure.objects.create(
        tenant=tenant,
        reason=reason,
        requested_by=requested_by,
        approved_by=approved_by,
        approval_request_id=approval_request_id,
        erased_at=now,
        done=done,
        stripe_customers=customers,
        retention_until=retention_end(last_issued) if last_issued else None,
        buyers_erased_at=None if last_issued else now,
    )
    if customers:
        send_after_commit(STRIPE_TASK, erasure.pk, failure_event="privacy.stripe_enqueue_failed", erasure=erasure.pk)
    logger.info("privacy.tenant_erased", extra={"tenant": tenant.external_id, "erasure": erasure.pk, **done})
    return erasure


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
                if "404" not in str(exc):
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
    from django.db.models import F

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
    their buyer (invoicing.privacy.buyers_erase, the one change the invoice guard allows);
    an erasure whose invoices all have is complete. How many invoices changed."""
    now = now or timezone.now()
    changed = 0
    for erasure in Erasure.objects.filter(buyers_erased_at=None).select_related("tenant").order_by("id"):
        finalized = Invoice.objects.filter(tenant=erasure.tenant).exclude(status=Invoice.Status.DRAFT)
        due = finalized.filter(finalized_at__lt=issued_before_retention_ended(now))
        changed += buyers_erase(list(due.values_list("id", flat=True)))
        if not finalized.exclude(buyer__has_key="erased").exists():
            Erasure.objects.filter(pk=erasure.pk, buyers_erased_at=None).update(buyers_erased_at=now)
    if changed:
        logger.info("privacy.buyers_erased", extra={"invoices": changed})
    return changed
