"""Stripe, behind plain functions: the only module that talks to Stripe.

Every call goes through stripe-python's `StripeClient` with the pinned API version
(`STRIPE_API_VERSION`), the test or live key, and `STRIPE_API_BASE` when set (a local
fake Stripe). Every write carries an idempotency key derived from our own record
(`customer-{tenant.pk}-{digest of its details}`, `inv-{invoice.pk}-create`, `inv-{invoice.pk}-item-{position}`,
`inv-{invoice.pk}-finalize`, `refund-{refund.pk}`), so a retry within Stripe's 24 h key window returns the
first result. Because Stripe forgets keys after that, a write that may be a retry first
looks for what an earlier attempt made (by the metadata we stamp on every object).

Errors come back as ours: `ProviderUnavailable` (connection, rate limit, 5xx: retry) or
`ProviderRejected` (invalid request, card error, authentication: do not).

Customers are mirrored by dj-stripe (its `Customer` table, synced from each customer we
create or find), which is how a tenant finds its customer without asking Stripe. A
tenant's Stripe customer is found, in order, from (0) that mirror, by
`metadata.billing_tenant_id`, (1) the customer of the tenant's last invoice already pushed,
(2) `Customer.list(email=…)` filtered by that metadata (the search API is not served by
localstripe), else (3) created with the key `customer-{tenant.pk}-{digest}` and that metadata, which
Stripe answers with the same customer for 24 h. Our invoices are ours; Stripe's id and
number are kept on them.

For reconciliation (`mirror_sync`), dj-stripe mirrors customers, payment intents, charges,
invoices and refunds through its own sync functions. dj-stripe 2.11 syncs an invoice of
the pinned version only from stripe-python's objects, never from plain dicts (it iterates
the `lines` list object, and a dict's iteration gives its keys), so the mirror is fed what
the client returns, as dj-stripe's webhook processing feeds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from prometheus_client import Counter

from billing_project.money import Money, exponent, from_minor_units, to_minor_units
from invoicing.models import REVERSE_CHARGE

from .base import (
    Mirrored,
    MirrorSync,
    ProviderDeclined,
    ProviderRejected,
    ProviderUnavailable,
    PushedInvoice,
    RemoteCharge,
    RemoteCheckoutSession,
    RemoteInvoice,
    RemoteInvoicePayment,
    RemoteRefund,
)

if TYPE_CHECKING:
    from invoicing.models import Invoice
    from subscriptions.models import Tenant

logger = logging.getLogger(__name__)

# stripe-python retries connection errors and 409/5xx itself, with the same idempotency key;
# past that the Celery task retries with backoff.
MAX_NETWORK_RETRIES = 2
# Lines Stripe does not get as invoice items: tax is Stripe's own (Stripe Tax).
NOT_PUSHED = ("tax",)
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
MIRROR_FAILURES = Counter("billing_stripe_mirror_failures_total", "dj-stripe mirror syncs that failed")


def _live() -> bool:
    return bool(settings.STRIPE_LIVE_MODE)


def _key() -> str:
    return str(settings.STRIPE_LIVE_SECRET_KEY if settings.STRIPE_LIVE_MODE else settings.STRIPE_TEST_SECRET_KEY)


def _client() -> stripe.StripeClient:
    key = _key()
    return stripe.StripeClient(
        key,
        stripe_version=settings.STRIPE_API_VERSION,
        base_addresses={"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None,
        max_network_retries=MAX_NETWORK_RETRIES,
    )


@contextmanager
def _errors(action: str) -> Iterator[None]:
    """Stripe's exceptions as ours."""
    try:
        yield
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise ProviderUnavailable(f"{action}: {exc.user_message or exc}") from exc
    except stripe.CardError as exc:
        raise ProviderDeclined(f"{action}: {exc.user_message or exc}") from exc
    except stripe.StripeError as exc:
        status = exc.http_status or 0
        if status >= 500 or isinstance(exc, stripe.APIError):
            raise ProviderUnavailable(f"{action}: HTTP {status}: {exc.user_message or exc}") from exc
        raise ProviderRejected(f"{action}: HTTP {status}: {exc.user_message or exc}", status=status) from exc


def _call(fn: Callable[..., Any], *args: Any, key: str | None = None, **params: Any) -> dict[str, Any]:
    """One Stripe call; the object it returns as a plain dict."""
    options: dict[str, Any] = {"idempotency_key": key} if key else {}
    result = fn(*args, params=params or None, options=options or None)
    return cast(dict[str, Any], result.to_dict())


def _list(fn: Callable[..., Any], **params: Any) -> Iterator[dict[str, Any]]:
    for obj in fn(params=params).auto_paging_iter():
        yield cast(dict[str, Any], obj.to_dict())


def _at(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, tz=UTC) if timestamp else None


def _money(units: int | None, currency: str) -> Decimal:
    return from_minor_units(units or 0, currency.upper())


# ---------------------------------------------------------------- customers
def _mirror_account() -> None:
    """Link our key to its Stripe account in dj-stripe's tables, asking Stripe outside any
    transaction. dj-stripe ties every mirrored object to the key's account and, when it does
    not know it yet, asks Stripe from inside a transaction of its own
    (`Account.get_or_retrieve_for_api_key`): no Stripe call may run inside a transaction, so
    the account is known before dj-stripe is asked to mirror anything."""
    from djstripe.models import Account, APIKey

    key = _key()
    if APIKey.objects.filter(secret=key, djstripe_owner_account__isnull=False).exists():
        return
    with _errors("account_fetch"):
        account = _call(_client().v1.accounts.retrieve_current)
    with transaction.atomic():
        owner, _ = Account.objects.get_or_create(id=str(account["id"]), defaults={"livemode": _live()})
        api_key, _ = APIKey.objects.get_or_create_by_api_key(key)
        api_key.djstripe_owner_account = owner
        api_key.save(update_fields=["djstripe_owner_account"])


def _mirror_customer(obj: dict[str, Any]) -> None:
    """Keep dj-stripe's copy of a customer. A failed mirror costs only a Stripe lookup
    next time, so it is logged and counted, and the Stripe call it follows stands."""
    from djstripe.models import Customer

    try:
        _mirror_ready()
        Customer.sync_from_stripe_data(obj, api_key=_key())
    except Exception:
        MIRROR_FAILURES.inc()
        logger.exception("stripe.customer_mirror_failed", extra={"customer": obj.get("id")})


def _mirrored_customer(tenant: Tenant) -> str | None:
    from djstripe.models import Customer

    found = (
        Customer.objects.filter(
            metadata__billing_tenant_id=tenant.external_id, livemode=settings.STRIPE_LIVE_MODE, date_purged=None
        )
        .order_by("-created", "-djstripe_id")
        .values_list("id", flat=True)
        .first()
    )
    return str(found) if found else None


def customer_known(tenant: Tenant) -> str | None:
    """The tenant's Stripe customer as our mirror knows it: no call to Stripe (for pages
    that link to it and must not wait on Stripe)."""
    return _mirrored_customer(tenant)


def customer_find(tenant: Tenant) -> str | None:
    """The tenant's Stripe customer, if one exists (see the module docstring)."""
    from invoicing.models import Invoice  # invoicing.models never imports this module

    mirrored = _mirrored_customer(tenant)
    if mirrored:
        return str(mirrored)
    client = _client()
    with _errors("customer_find"):
        pushed = (
            Invoice.objects.filter(tenant=tenant, stripe_invoice_id__isnull=False)
            .order_by("-created_at", "-id")
            .values_list("stripe_invoice_id", flat=True)
            .first()
        )
        if pushed:
            customer = _call(client.v1.invoices.retrieve, pushed).get("customer")
            if isinstance(customer, str) and customer:
                return customer
        if tenant.billing_email:
            for found in _list(client.v1.customers.list, email=tenant.billing_email, limit=100):
                if (found.get("metadata") or {}).get("billing_tenant_id") == tenant.external_id:
                    _mirror_customer(found)
                    return str(found["id"])
    return None


def customer_for(tenant: Tenant) -> str:
    """The tenant's Stripe customer id, created when there is none."""
    found = customer_find(tenant)
    if found:
        return found
    params: dict[str, Any] = {
        "name": tenant.name,
        "email": tenant.billing_email or None,
        "address": {"country": tenant.country} if tenant.country else None,
        "metadata": {"billing_tenant_id": tenant.external_id},
    }
    # Stripe refuses a key reused with other parameters: the details' digest is in the key,
    # so a tenant whose email changed within the key window gets an answer, not an error.
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    with _errors("customer_create"):
        created = _call(_client().v1.customers.create, key=f"customer-{tenant.pk}-{digest}", **params)
    logger.info("stripe.customer_created", extra={"tenant": tenant.external_id, "customer": created["id"]})
    _mirror_customer(created)
    return str(created["id"])


def customers_mirrored(tenant: Tenant) -> list[str]:
    """Every Stripe customer our mirror holds for the tenant (purged or not), oldest first."""
    from djstripe.models import Customer

    rows = Customer.objects.filter(metadata__billing_tenant_id=tenant.external_id).order_by("created", "djstripe_id")
    return [str(c) for c in rows.values_list("id", flat=True)]


# What erasure clears on a Stripe customer (Stripe keeps what it must, on its own documents).
_ERASED_AT_STRIPE = ("email", "phone", "description", "shipping", "address")


def customer_mirror_pseudonymise(tenant: Tenant, *, pseudonym: str) -> int:
    """Erasure in dj-stripe's mirror, at once and without Stripe: the tenant's customers
    named by the pseudonym, their email, phone, description, address and shipping gone (the
    caller's transaction). Stripe itself follows (customer_pseudonymise); how many rows."""
    from djstripe.models import Customer

    changed = 0
    for customer in Customer.objects.filter(metadata__billing_tenant_id=tenant.external_id).order_by("djstripe_id"):
        data = dict(customer.stripe_data or {})
        data.update({"name": pseudonym, **dict.fromkeys(_ERASED_AT_STRIPE)})
        customer.stripe_data, customer.email = data, ""
        customer.save(update_fields=["stripe_data", "email"])
        changed += 1
    return changed


def customer_pseudonymise(customer_id: str, *, pseudonym: str) -> None:
    """Erasure at Stripe: the customer keeps its id (its invoices, charges and refunds
    there still add up), is named by the pseudonym and loses its email, phone, description,
    address and shipping; the mirror takes Stripe's answer. Repeatable (same key, same
    parameters). Outside any transaction: the erasure task calls it, retried on failure."""
    params: dict[str, Any] = {"name": pseudonym, **dict.fromkeys(_ERASED_AT_STRIPE, "")}
    with _errors("customer_pseudonymise"):
        updated = _call(_client().v1.customers.update, customer_id, key=f"erasure-{customer_id}", **params)
    logger.info("stripe.customer_pseudonymised", extra={"customer": customer_id})
    _mirror_customer(updated)


# ---------------------------------------------------------------- invoices
def _taxes(obj: dict[str, Any]) -> list[tuple[str, Decimal]]:
    currency = str(obj["currency"])
    taxes = []
    for tax in obj.get("total_taxes") or []:
        amount, taxable = _money(tax.get("amount"), currency), _money(tax.get("taxable_amount"), currency)
        reason = str(tax.get("taxability_reason") or "")
        if reason == "reverse_charge":
            label = f"{REVERSE_CHARGE} (0% on {taxable:,.{exponent(currency)}f})"
        elif taxable:
            # an EU invoice states the tax per rate: the rate as Stripe applied it to this base
            rate = (amount * 100 / taxable).quantize(Decimal("0.01")).normalize()
            label = f"Tax {rate:f}% on {taxable:,.{exponent(currency)}f}"
        else:
            label = f"Tax ({reason or 'tax'})"
        taxes.append((label, amount))
    return taxes


def _pushed(obj: dict[str, Any]) -> PushedInvoice:
    return PushedInvoice(
        stripe_invoice_id=str(obj["id"]),
        status=str(obj["status"]),
        stripe_number=str(obj.get("number") or ""),
        total=_money(obj.get("total"), str(obj["currency"])),
        taxes=_taxes(obj),
    )


def _remote(obj: dict[str, Any]) -> RemoteInvoice:
    currency = str(obj["currency"])
    transitions = obj.get("status_transitions") or {}
    ours = (obj.get("metadata") or {}).get("billing_invoice_id")
    error = ""
    for payment in (obj.get("payments") or {}).get("data") or []:  # when expanded
        intent = (payment.get("payment") or {}).get("payment_intent")
        if isinstance(intent, dict) and intent.get("last_payment_error"):
            error = str(intent["last_payment_error"].get("message") or intent["last_payment_error"].get("code"))
    attempts = int(obj.get("attempt_count") or 0)
    if not error and obj.get("status") == "open" and attempts:
        error = f"payment attempt {attempts} failed"
    return RemoteInvoice(
        stripe_invoice_id=str(obj["id"]),
        status=str(obj["status"]),
        stripe_number=str(obj.get("number") or ""),
        currency=currency.upper(),
        total=_money(obj.get("total"), currency),
        amount_paid=_money(obj.get("amount_paid"), currency),
        attempt_count=attempts,
        last_payment_error=error,
        billing_invoice_id=int(ours) if isinstance(ours, str) and ours.isdigit() else None,
        paid_at=_at(transitions.get("paid_at")),
        voided_at=_at(transitions.get("voided_at")),
        uncollectible_at=_at(transitions.get("marked_uncollectible_at")),
    )


def _find_invoice(client: stripe.StripeClient, invoice: Invoice, customer: str) -> dict[str, Any] | None:
    """What an earlier push of this invoice made, even after Stripe forgot its keys."""
    if invoice.stripe_invoice_id:
        return _call(client.v1.invoices.retrieve, invoice.stripe_invoice_id)
    # Ours is created before Stripe's: only invoices created since can be it.
    since = int(invoice.created_at.timestamp()) - 60
    for found in _list(client.v1.invoices.list, customer=customer, created={"gte": since}, limit=100):
        if (found.get("metadata") or {}).get("billing_invoice_id") == str(invoice.pk):
            return found
    return None


def _item_params(invoice: Invoice) -> list[tuple[int, dict[str, Any]]]:
    items = []
    for line in invoice.lines.order_by("position"):
        if line.kind in NOT_PUSHED or line.amount == 0:
            continue
        items.append(
            (
                line.position,
                {
                    "amount": to_minor_units(line.amount, invoice.currency),  # credit lines are negative
                    "currency": invoice.currency.lower(),
                    "description": line.description,
                    "metadata": {"billing_invoice_id": str(invoice.pk), "billing_line_position": str(line.position)},
                },
            )
        )
    return items


def invoice_push(invoice: Invoice) -> PushedInvoice:
    """Create (or find) our invoice at Stripe as a draft with one item per line, and return
    it as Stripe now has it (its tax, with Stripe Tax). Safe to call again."""
    customer = customer_for(invoice.tenant)
    client = _client()
    with _errors("invoice_push"):
        remote = _find_invoice(client, invoice, customer)
        if remote is None:
            metadata = {"billing_invoice_id": str(invoice.pk), "billing_invoice_number": invoice.number or ""}
            remote = _call(
                client.v1.invoices.create,
                key=f"inv-{invoice.pk}-create",
                customer=customer,
                currency=invoice.currency.lower(),
                collection_method="charge_automatically",
                auto_advance=False,  # no auto-finalization while we add items; collection starts at finalize
                pending_invoice_items_behavior="exclude",
                metadata=metadata,
                custom_fields=[{"name": "Invoice", "value": invoice.number}] if invoice.number else None,
                # Stripe Tax only for a draft of ours: a finalized invoice's amounts are fixed.
                automatic_tax={"enabled": True} if settings.STRIPE_TAX_ENABLED and invoice.number is None else None,
            )
        stripe_id = str(remote["id"])
        if remote.get("status") != "draft":
            return _pushed(remote)
        present = {
            (item.get("metadata") or {}).get("billing_line_position")
            for item in _list(client.v1.invoice_items.list, invoice=stripe_id, limit=100)
        }
        for position, params in _item_params(invoice):
            if str(position) in present:
                continue
            _call(
                client.v1.invoice_items.create,
                key=f"inv-{invoice.pk}-item-{position}",
                customer=customer,
                invoice=stripe_id,
                **params,
            )
        return _pushed(_call(client.v1.invoices.retrieve, stripe_id))


def invoice_finalize_remote(stripe_invoice_id: str, *, billing_invoice_id: int, number: str = "") -> PushedInvoice:
    """Finalize the Stripe draft and let Stripe collect (auto_advance); a no-op once final.
    `number` (ours) is written to its custom field first when it was not known at creation
    (Stripe Tax: our number is taken after Stripe computed the tax)."""
    client = _client()
    with _errors("invoice_finalize"):
        remote = _call(client.v1.invoices.retrieve, stripe_invoice_id)
        if remote.get("status") != "draft":
            return _pushed(remote)
        if number and (remote.get("metadata") or {}).get("billing_invoice_number") != number:
            _call(
                client.v1.invoices.update,
                stripe_invoice_id,
                key=f"inv-{billing_invoice_id}-number",
                metadata={"billing_invoice_number": number},
                custom_fields=[{"name": "Invoice", "value": number}],
            )
        return _pushed(
            _call(
                client.v1.invoices.finalize_invoice,
                stripe_invoice_id,
                key=f"inv-{billing_invoice_id}-finalize",
                auto_advance=True,
            )
        )


def invoice_pay(stripe_invoice_id: str, *, key: str) -> RemoteInvoice:
    """Charge an open invoice now (a dunning retry). A declined card is ProviderRejected."""
    with _errors("invoice_pay"):
        return _remote(_call(_client().v1.invoices.pay, stripe_invoice_id, key=key))


def invoice_fetch(stripe_invoice_id: str) -> RemoteInvoice:
    with _errors("invoice_fetch"):
        return _remote(_call(_client().v1.invoices.retrieve, stripe_invoice_id))


# ---------------------------------------------------------------- charges, refunds
def charge_fetch(charge_id: str) -> RemoteCharge:
    with _errors("charge_fetch"):
        return _charge(_call(_client().v1.charges.retrieve, charge_id))


def _charge(obj: dict[str, Any]) -> RemoteCharge:
    currency = str(obj["currency"])
    return RemoteCharge(
        charge_id=str(obj["id"]),
        currency=currency.upper(),
        amount=_money(obj.get("amount"), currency),
        amount_refunded=_money(obj.get("amount_refunded"), currency),
        refunded=bool(obj.get("refunded")),
        payment_intent=_ref(obj.get("payment_intent")),
        status=str(obj.get("status") or ""),
        customer=_ref(obj.get("customer")),
    )


def _ref(value: Any) -> str:
    """An expandable field's id, whether Stripe sent the id or the object."""
    return value if isinstance(value, str) else str((value or {}).get("id") or "")


def _refund(obj: dict[str, Any]) -> RemoteRefund:
    currency = str(obj["currency"])
    ours = (obj.get("metadata") or {}).get("billing_refund_id")
    return RemoteRefund(
        refund_id=str(obj["id"]),
        status=str(obj.get("status") or ""),
        currency=currency.upper(),
        amount=_money(obj.get("amount"), currency),
        charge_id=_ref(obj.get("charge")),
        payment_intent=_ref(obj.get("payment_intent")),
        failure_reason=str(obj.get("failure_reason") or ""),
        billing_refund_id=int(ours) if isinstance(ours, str) and ours.isdigit() else None,
    )


def refund_create(
    *,
    amount: Money,
    reason: str,
    idempotency_key: str,
    charge_id: str | None = None,
    payment_intent: str | None = None,
    billing_refund_id: int | None = None,
) -> RemoteRefund:
    """Refund (part of) a charge or payment intent. `reason` is Stripe's enum when it is one,
    else it travels as metadata only; `billing_refund_id` (our Refund) is stamped in the
    metadata, so refund_find finds it after Stripe forgot the key."""
    if bool(charge_id) == bool(payment_intent):
        raise ValueError("give exactly one of charge_id and payment_intent")
    metadata = {"billing_reason": reason[:500]}
    if billing_refund_id is not None:
        metadata["billing_refund_id"] = str(billing_refund_id)
    params: dict[str, Any] = {"amount": to_minor_units(amount.amount, amount.currency), "metadata": metadata}
    if reason in REFUND_REASONS:
        params["reason"] = reason
    params["charge" if charge_id else "payment_intent"] = charge_id or payment_intent
    with _errors("refund_create"):
        return _refund(_call(_client().v1.refunds.create, key=idempotency_key, **params))


def refund_fetch(refund_id: str) -> RemoteRefund:
    """The refund as Stripe has it now."""
    with _errors("refund_fetch"):
        return _refund(_call(_client().v1.refunds.retrieve, refund_id))


def refund_find(
    *, billing_refund_id: int, charge_id: str | None = None, payment_intent: str | None = None
) -> RemoteRefund | None:
    """What an earlier refund_create made for our Refund, by the metadata stamped on it:
    Stripe forgets idempotency keys after 24 hours, a retry after that must not refund twice."""
    if bool(charge_id) == bool(payment_intent):
        raise ValueError("give exactly one of charge_id and payment_intent")
    params: dict[str, Any] = {"charge": charge_id} if charge_id else {"payment_intent": payment_intent}
    with _errors("refund_find"):
        for found in _list(_client().v1.refunds.list, limit=100, **params):
            remote = _refund(found)
            if remote.billing_refund_id == billing_refund_id:
                return remote
    return None


def refunds_of_charge(charge_id: str) -> list[RemoteRefund]:
    """Every refund of a charge, as Stripe has them now (charge.refunded names only the charge)."""
    with _errors("refunds_of_charge"):
        return [_refund(found) for found in _list(_client().v1.refunds.list, charge=charge_id, limit=100)]


def invoice_payments(stripe_invoice_id: str) -> list[RemoteInvoicePayment]:
    """The payments Stripe allocated to the invoice (since API 2025-03-31 an invoice names its
    payment intent only through these), paid ones first."""
    found = []
    with _errors("invoice_payments"):
        for obj in _list(_client().v1.invoice_payments.list, invoice=stripe_invoice_id, limit=100):
            payment = obj.get("payment") or {}
            currency = str(obj["currency"])
            found.append(
                RemoteInvoicePayment(
                    payment_id=str(obj["id"]),
                    status=str(obj.get("status") or ""),
                    currency=currency.upper(),
                    amount_paid=_money(obj.get("amount_paid"), currency),
                    payment_intent=_ref(payment.get("payment_intent")),
                    charge_id=_ref(payment.get("charge")),
                )
            )
    return sorted(found, key=lambda p: p.status != "paid")


# ---------------------------------------------------------------- checkout (payment method setup)
def _session(obj: dict[str, Any]) -> RemoteCheckoutSession:
    def ref(value: Any) -> str:
        return value if isinstance(value, str) else str((value or {}).get("id") or "")

    return RemoteCheckoutSession(
        session_id=str(obj["id"]),
        status=str(obj.get("status") or ""),
        mode=str(obj.get("mode") or ""),
        customer=ref(obj.get("customer")),
        setup_intent=ref(obj.get("setup_intent")),
        url=str(obj.get("url") or ""),
        metadata=dict(obj.get("metadata") or {}),
    )


def checkout_session_create(tenant: Tenant, plan_code: str, success_url: str, cancel_url: str) -> str:
    """A Checkout page collecting a payment method for the tenant's customer (mode=setup):
    billing owns prices, so Stripe never sells the subscription. Returns its URL."""
    customer = customer_for(tenant)
    params: dict[str, Any] = {
        "mode": "setup",
        "customer": customer,
        "currency": tenant.currency.lower(),
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": {"billing_tenant_id": tenant.external_id, "plan_code": plan_code},
        "setup_intent_data": {"metadata": {"billing_tenant_id": tenant.external_id}},
    }
    # No record of ours stands behind a checkout page: the key is the request itself within
    # a ten-minute window, so a retried request gets the same page rather than a second one.
    window = int(datetime.now(UTC).timestamp()) // 600
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    with _errors("checkout_session_create"):
        obj = _call(_client().v1.checkout.sessions.create, key=f"checkout-{tenant.pk}-{digest}-{window}", **params)
    return _session(obj).url


def checkout_session_fetch(session_id: str) -> RemoteCheckoutSession:
    with _errors("checkout_session_fetch"):
        return _session(_call(_client().v1.checkout.sessions.retrieve, session_id))


# ---------------------------------------------------------------- the mirror (reconciliation)
# In this order dj-stripe finds what each object links to already mirrored, and asks
# Stripe only for what it keeps beside them (balance transactions, payment methods).
_MIRRORED = (
    ("customers", "Customer"),
    ("payment_intents", "PaymentIntent"),
    ("charges", "Charge"),
    ("invoices", "Invoice"),
    ("refunds", "Refund"),
)
_FETCHED = {"invoice": ("invoices", "Invoice"), "refund": ("refunds", "Refund"), "charge": ("charges", "Charge")}
_DASHBOARD = (
    ("in_", "invoices"),
    ("ch_", "payments"),
    ("py_", "payments"),
    ("pi_", "payments"),
    ("re_", "refunds"),
    ("pyr_", "refunds"),
    ("cus_", "customers"),
)


def _mirror_ready() -> None:
    # dj-stripe calls Stripe through stripe-python's module settings, not our client: point
    # them where the client goes (a deployment constant; tests switch it per test)
    stripe.api_base = settings.STRIPE_API_BASE or "https://api.stripe.com"
    stripe.api_version = settings.STRIPE_API_VERSION
    _mirror_account()


def _mirror_one(model: Any, obj: Any, failed: list[tuple[str, str]]) -> bool:
    """dj-stripe's sync of one object. Stripe out of reach while dj-stripe fetches what the
    object links to is ProviderUnavailable (the whole run is retried); anything else
    dj-stripe cannot sync is recorded in `failed` and the others go on."""
    try:
        with _errors("mirror_sync"):
            model.sync_from_stripe_data(obj, api_key=_key())
    except ProviderUnavailable:
        raise
    except Exception as exc:  # one object dj-stripe cannot sync must not hide the others
        MIRROR_FAILURES.inc()
        logger.exception("stripe.mirror_sync_failed", extra={"stripe_id": obj.get("id")})
        failed.append((str(obj.get("id")), f"{type(exc).__name__}: {exc}"[:500]))
        return False
    return True


def mirror_sync(*, since: datetime) -> MirrorSync:
    """dj-stripe's mirror brought up to Stripe for every customer, payment intent, charge,
    invoice and refund created since `since`, through dj-stripe's own sync. Outside any
    transaction (dj-stripe asks Stripe for what an object links to). Stripe unreachable is
    ProviderUnavailable; an object dj-stripe cannot sync is counted, logged and returned,
    and the others go on."""
    from djstripe import models as mirror

    _mirror_ready()
    client = _client()
    synced: dict[str, int] = {}
    failed: list[tuple[str, str]] = []
    seen: set[str] = set()
    for resource, model_name in _MIRRORED:
        model = getattr(mirror, model_name)
        service = getattr(client.v1, resource)
        count = 0
        with _errors(f"{resource}_list"):
            listed = service.list(params={"created": {"gte": int(since.timestamp())}, "limit": 100})
            for obj in listed.auto_paging_iter():
                seen.add(str(obj.get("id")))
                count += _mirror_one(model, obj, failed)
        synced[resource] = count
    return MirrorSync(synced=synced, failed=failed, seen=frozenset(seen))


def mirror_fetch(kind: str, stripe_id: str) -> bool:
    """One object of ours (`invoice`, `refund`, `charge`) fetched from Stripe into the
    mirror; False when Stripe has no such object. Raises ProviderError when the fetch or the
    sync fails otherwise."""
    from djstripe import models as mirror

    resource, model_name = _FETCHED[kind]
    _mirror_ready()
    try:
        with _errors(f"{kind}_fetch"):
            obj = getattr(_client().v1, resource).retrieve(stripe_id)
    except ProviderRejected as exc:
        if exc.status == 404:
            return False
        raise
    failed: list[tuple[str, str]] = []
    if not _mirror_one(getattr(mirror, model_name), obj, failed):
        raise ProviderRejected(f"{kind} {stripe_id}: the mirror could not sync it: {failed[0][1]}")
    return True


def mirror_read(*, since: datetime, until: datetime, seen: frozenset[str]) -> Mirrored:
    """What the mirror holds of the Stripe objects created in [since, until) that Stripe
    listed in this run (`seen`), in the current mode (test or live), as Stripe sent them."""
    from djstripe import models as mirror

    def rows(model: Any) -> list[dict[str, Any]]:
        mode = Q(livemode=_live())
        if model is mirror.Refund:  # Stripe's refunds carry no livemode: their charge's says
            mode = Q(livemode=_live()) | Q(livemode__isnull=True, charge__livemode=_live())
        found = model.objects.filter(mode, created__gte=since, created__lt=until, id__in=seen)
        return [dict(row.stripe_data) for row in found.order_by("created", "id")]

    return Mirrored(
        invoices=[_remote(obj) for obj in rows(mirror.Invoice)],
        charges=[_charge(obj) for obj in rows(mirror.Charge)],
        refunds=[_refund(obj) for obj in rows(mirror.Refund)],
    )


def _mirrored_rows(model: Any, stripe_ids: list[str]) -> list[dict[str, Any]]:
    return [dict(row.stripe_data) for row in model.objects.filter(id__in=stripe_ids).order_by("id")]


def mirror_invoices(stripe_ids: list[str]) -> list[RemoteInvoice]:
    """The mirror's copies of these invoices, whatever their creation time."""
    from djstripe.models import Invoice as MirroredInvoice

    return [_remote(obj) for obj in _mirrored_rows(MirroredInvoice, stripe_ids)]


def mirror_refunds(stripe_ids: list[str]) -> list[RemoteRefund]:
    """The mirror's copies of these refunds, whatever their creation time."""
    from djstripe.models import Refund as MirroredRefund

    return [_refund(obj) for obj in _mirrored_rows(MirroredRefund, stripe_ids)]


def dashboard_url(stripe_id: str) -> str:
    """Where staff see a Stripe object in Stripe's dashboard, by its id's prefix ("" for
    an id of no kind the dashboard shows)."""
    mode = "" if _live() else "test/"
    path = next((p for prefix, p in _DASHBOARD if stripe_id.startswith(prefix)), "")
    return f"https://dashboard.stripe.com/{mode}{path}/{stripe_id}" if path else ""
