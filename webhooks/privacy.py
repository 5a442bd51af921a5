"""What webhooks hold about a tenant: Stripe's events as it sent them, which carry its
customer's name, email, phone and addresses. For its erasure (privacy/services.py)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Q

from billing_project.privacy import erase_fields

from .models import StripeEvent

# Where Stripe's objects carry a person: a customer's own fields, an invoice's copy of its
# customer, a charge's or payment's billing details. A customer's description is free text.
PERSONAL = frozenset(
    {
        "name",
        "email",
        "phone",
        "address",
        "shipping",
        "customer_name",
        "customer_email",
        "customer_phone",
        "customer_address",
        "customer_shipping",
        "billing_details",
        "receipt_email",
    }
)
PERSONAL_OF_CUSTOMER = PERSONAL | {"description"}


def _erased(data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The event's object and its previous attributes, their own fields only (a product's
    name deep in an invoice's lines is not a person's)."""
    found = data.get("object")
    obj: dict[str, Any] = found if isinstance(found, dict) else {}
    fields = PERSONAL_OF_CUSTOMER if obj.get("object") == "customer" else PERSONAL
    out, changed = dict(data), False
    for part in ("object", "previous_attributes"):
        if isinstance(data.get(part), dict):
            top = {k: v for k, v in data[part].items() if k in fields}
            erased, hit = erase_fields(top, fields)
            if hit:
                out[part], changed = {**data[part], **erased}, True
    return out, changed


def stripe_events_pseudonymise(customers: list[str]) -> int:
    """Erasure: the stored events about the tenant's Stripe customers (their object is one
    of them, or belongs to one) lose the personal fields of that object and of its previous
    attributes; nothing else about an event changes, its processing included. Chosen by
    customer id, exactly: another customer's events are never touched. The event guard
    (migration 0003) allows this, and only this, in a transaction that says so. How many."""
    if not customers:
        return 0
    about = Q(payload__data__object__customer__in=customers) | Q(
        payload__data__object__object="customer", payload__data__object__id__in=customers
    )
    changed = 0
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL billing.stripe_event_erasure = 'on'")
    for event in StripeEvent.objects.filter(about).order_by("id").iterator(chunk_size=200):
        data, hit = _erased(event.payload.get("data") or {})
        if hit:
            StripeEvent.objects.filter(pk=event.pk).update(payload={**event.payload, "data": data})
            changed += 1
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL billing.stripe_event_erasure = 'off'")
    return changed
