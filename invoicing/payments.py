"""Collection through the payment provider: push our invoices to Stripe, and move their
collection status from what Stripe says *now* (never from an event's payload).

No Stripe call runs while we hold a row lock: the provider is called first, then one
short transaction applies the result. Every function is safe to run again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing_project.errors import Conflict, ProviderDown, ProviderRefused, invalid_field
from billing_project.money import exponent, format_decimal
from subscriptions.locks import tenant_select_for_update
from subscriptions.models import Tenant
from subscriptions.selectors import live_subscription
from subscriptions.services import offered_version, subscription_create

from . import providers
from .models import Invoice
from .services import (
    invoice_finalize_with_tax,
    invoice_mark_paid,
    invoice_mark_uncollectible,
    invoice_payment_failed,
    invoice_retry_recorded,
    invoice_total_with_tax,
    invoice_void,
)

logger = logging.getLogger(__name__)
STRIPE = "stripe"


@transaction.atomic
def _store_stripe_refs(*, invoice_id: int, stripe_invoice_id: str, stripe_number: str = "") -> Invoice:
    """Stripe's id and number on our invoice: set once, from empty (the 0002 trigger
    refuses any later change on a finalized invoice)."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    changed = []
    if invoice.stripe_invoice_id != stripe_invoice_id:
        if invoice.stripe_invoice_id:
            raise Conflict(
                f"invoice {invoice.pk} is already at Stripe as {invoice.stripe_invoice_id}, not {stripe_invoice_id}",
                code="stripe_invoice_mismatch",
            )
        invoice.stripe_invoice_id = stripe_invoice_id
        changed.append("stripe_invoice_id")
    if stripe_number and not invoice.stripe_number:
        invoice.stripe_number = stripe_number
        changed.append("stripe_number")
    if changed:
        invoice.save(update_fields=changed)
    return invoice


def invoice_collect(*, invoice_id: int) -> Invoice:
    """Push the invoice to Stripe and finalize it there, so Stripe charges the customer.

    Without Stripe Tax the invoice is already final here. With it, the draft goes to Stripe
    first; Stripe's total is compared with what ours would total with Stripe's tax, and
    only when they agree is ours finalized with that tax, then Stripe's. On a mismatch
    neither is finalized (Conflict `stripe_total_mismatch`, which says both totals).
    Rerunning after any failure continues where the last run stopped."""
    invoice = Invoice.objects.select_related("tenant").get(pk=invoice_id)
    if invoice.stripe_number:
        return invoice  # finalized at Stripe already: Stripe collects
    if invoice.status == Invoice.Status.DRAFT and not settings.STRIPE_TAX_ENABLED:
        raise Conflict(f"draft invoice {invoice.pk} is not finalized: nothing to collect", code="invoice_not_final")
    if invoice.status in (Invoice.Status.VOID, Invoice.Status.UNCOLLECTIBLE) or (
        invoice.status == Invoice.Status.PAID and not invoice.stripe_invoice_id
    ):
        # settled without Stripe (a zero total, staff) or given up on
        logger.info("payments.collect_skipped", extra={"invoice_id": invoice.pk, "status": invoice.status})
        return invoice
    pushed = providers.invoice_push(invoice)
    invoice = _store_stripe_refs(invoice_id=invoice.pk, stripe_invoice_id=pushed.stripe_invoice_id)
    draft = invoice.status == Invoice.Status.DRAFT
    if pushed.status == "draft" or draft:
        # never let Stripe charge, nor freeze ours at, an amount the other does not hold
        ours = invoice_total_with_tax(invoice_id=invoice.pk, tax=pushed.taxes) if draft else invoice.total
        if pushed.total != ours:
            places = exponent(invoice.currency)
            theirs = "Stripe's draft" if pushed.status == "draft" else f"Stripe's {pushed.status} invoice"
            what, outcome = ("ours with Stripe's tax", "neither is") if draft else ("ours", "Stripe's is not")
            raise Conflict(
                f"invoice {invoice}: {theirs} totals {format_decimal(pushed.total, places)}, {what} "
                f"{format_decimal(ours, places)} {invoice.currency}; {outcome} finalized",
                code="stripe_total_mismatch",
            )
    if draft:
        invoice = invoice_finalize_with_tax(invoice_id=invoice.pk, tax=pushed.taxes, expect_total=pushed.total)
    final = providers.invoice_finalize_remote(
        pushed.stripe_invoice_id, billing_invoice_id=invoice.pk, number=invoice.number or ""
    )
    invoice = _store_stripe_refs(
        invoice_id=invoice.pk, stripe_invoice_id=final.stripe_invoice_id, stripe_number=final.stripe_number
    )
    logger.info(
        "payments.collect_pushed",
        extra={"invoice_id": invoice.pk, "stripe_invoice_id": final.stripe_invoice_id, "stripe_status": final.status},
    )
    return invoice


def invoice_sync_fetch(*, stripe_invoice_id: str) -> providers.RemoteInvoice | None:
    """The Stripe invoice as it stands now, if it is one of ours (None, and Stripe is not
    asked, when it is not). Call it with no transaction open: it waits for Stripe."""
    if not Invoice.objects.filter(stripe_invoice_id=stripe_invoice_id).exists():
        logger.info("payments.sync_unknown_invoice", extra={"stripe_invoice_id": stripe_invoice_id})
        return None
    return providers.invoice_fetch(stripe_invoice_id)


def invoice_sync_apply(*, remote: providers.RemoteInvoice | None) -> Invoice | None:
    """Apply the Stripe invoice's state, as read by invoice_sync_fetch, to ours. Each move
    is made under our invoice's lock and only forward, so events may arrive in any order or
    twice: a stale `payment_failed` after `paid` changes nothing."""
    if remote is None:
        return None
    invoice = Invoice.objects.get(stripe_invoice_id=remote.stripe_invoice_id)
    if remote.status == "paid":
        return invoice_mark_paid(invoice_id=invoice.pk, at=remote.paid_at, actor=STRIPE)
    if remote.status == "void":
        return invoice_void(invoice_id=invoice.pk, reason="voided at Stripe", actor=STRIPE, at=remote.voided_at)
    if remote.status == "uncollectible":
        return invoice_mark_uncollectible(invoice_id=invoice.pk, actor=STRIPE, at=remote.uncollectible_at)
    # Count each of Stripe's failed attempts once, however often its events arrive (the
    # count is compared again under the lock).
    if remote.payment_failed and remote.attempt_count > invoice.collection_attempts:
        return invoice_payment_failed(
            invoice_id=invoice.pk, error=remote.last_payment_error, actor=STRIPE, attempts=remote.attempt_count
        )
    return invoice


def invoice_sync_from_stripe(*, stripe_invoice_id: str) -> Invoice | None:
    """Read the Stripe invoice's current state, then apply it to ours (reads state rather
    than trusting an event, so events may arrive in any order or twice)."""
    return invoice_sync_apply(remote=invoice_sync_fetch(stripe_invoice_id=stripe_invoice_id))


def invoice_retry_payment(*, invoice_id: int, now: datetime | None = None) -> Invoice:
    """A dunning retry: ask Stripe to charge the open invoice now, then apply Stripe's state
    (paid, or one more failed attempt) and schedule the next retry. The Stripe call carries
    the key `inv-{id}-retry-{n}`, so a redelivered task never charges twice."""
    now = now or timezone.now()
    invoice = Invoice.objects.get(pk=invoice_id)
    due = invoice.next_payment_retry_at is not None and invoice.next_payment_retry_at <= now
    if invoice.status != Invoice.Status.OPEN or not invoice.stripe_invoice_id or not due:
        return invoice  # settled, not at Stripe, or a redelivered task ahead of schedule
    retry = invoice.payment_retries + 1
    try:
        providers.invoice_pay(invoice.stripe_invoice_id, key=f"inv-{invoice.pk}-retry-{retry}")
    except providers.ProviderDeclined as exc:  # declined again: Stripe's state says so (other refusals raise)
        logger.info("payments.retry_declined", extra={"invoice_id": invoice.pk, "retry": retry, "error": str(exc)})
    invoice_sync_from_stripe(stripe_invoice_id=invoice.stripe_invoice_id)
    return invoice_retry_recorded(invoice_id=invoice.pk, retry=retry, now=now)


@dataclass(frozen=True)
class CheckoutResult:
    session_id: str
    customer: str
    status: str
    setup_intent: str
    tenant_external_id: str


def checkout_start(*, tenant: Tenant, plan_code: str, success_url: str, cancel_url: str) -> str:
    """A Stripe Checkout page where the tenant leaves a payment method for `plan_code`.
    Billing checks the plan here and subscribes the tenant when Stripe reports the page
    completed (checkout_session_completed); Stripe never sells the plan itself."""
    offered_version(plan_code, tenant)  # 400 unknown_plan / currency_mismatch before Stripe is asked
    live = live_subscription(tenant)
    if live is not None and live.plan_version.plan.code != plan_code:
        # a checkout only starts a subscription (or renews a payment method for this plan)
        raise Conflict(
            f"{tenant.external_id} is subscribed to {live.plan_version.plan.code}: change plan instead.",
            code="subscription_exists",
        )
    for name, url in (("success_url", success_url), ("cancel_url", cancel_url)):
        # Stripe sends the tenant's user there: only https, only to the platform's own hosts
        # (else a checkout link could forward a paying customer anywhere)
        parts = urlsplit(url)
        allowed = settings.CHECKOUT_ALLOWED_HOSTS
        # no backslash, no user info: browsers read "https://evil.example\@app.test/" as evil.example
        odd = "\\" in url or "@" in parts.netloc or any(ord(c) < 33 for c in url)
        if odd or parts.scheme != "https" or not parts.hostname or parts.hostname.lower() not in allowed:
            hosts = ", ".join(allowed) or "none: set CHECKOUT_ALLOWED_HOSTS"
            raise invalid_field(name, f"`{name}` must be an https URL on an allowed host ({hosts}).")
    try:
        return providers.checkout_session_create(tenant, plan_code, success_url, cancel_url)
    except providers.ProviderUnavailable as exc:
        raise ProviderDown("Stripe cannot be reached; try again shortly.") from exc
    except providers.ProviderRejected as exc:
        raise ProviderRefused(f"Stripe refused the checkout session: {exc}") from exc


def checkout_session_fetch(*, session_id: str) -> providers.RemoteCheckoutSession:
    """The Checkout session as Stripe has it now. Call it with no transaction open."""
    return providers.checkout_session_fetch(session_id)


def checkout_session_apply(*, session: providers.RemoteCheckoutSession) -> CheckoutResult:
    """A Checkout session (mode=setup) finished: the customer has a payment method, and a
    tenant without a live subscription is subscribed to the plan it chose. A repeat finds
    the subscription and changes nothing."""
    tenant_id, plan_code = session.metadata.get("billing_tenant_id"), session.metadata.get("plan_code")
    tenant = Tenant.objects.filter(external_id=tenant_id or "").first()
    if session.status == "complete" and tenant is not None and plan_code:
        with transaction.atomic():
            tenant_select_for_update(tenant_id=tenant.pk)  # one subscription, however many deliveries
            live = live_subscription(tenant)
            if live is None:
                subscription_create(tenant=tenant, plan_code=plan_code, actor=f"{STRIPE}:checkout")
            elif live.plan_version.plan.code != plan_code:
                # subscribed to another plan since the page opened: staff should look at it
                logger.warning(
                    "payments.checkout_plan_ignored",
                    extra={"tenant": tenant.external_id, "plan": plan_code, "live": live.plan_version.plan.code},
                )
    result = CheckoutResult(
        session_id=session.session_id,
        customer=session.customer,
        status=session.status,
        setup_intent=session.setup_intent,
        tenant_external_id=str(session.metadata.get("billing_tenant_id") or ""),
    )
    logger.info("payments.checkout_completed", extra={"session_id": session.session_id, "status": session.status})
    return result


def checkout_session_completed(*, session_id: str) -> CheckoutResult:
    """Read the session from Stripe (not from the event), then apply it."""
    return checkout_session_apply(session=checkout_session_fetch(session_id=session_id))
