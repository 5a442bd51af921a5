"""What webhooks hold about a tenant: Stripe's events as it sent them, which name its
customer (name, email) in their payloads. For its erasure (privacy/services.py)."""

from __future__ import annotations

from django.db import connection
from django.db.models import Q, TextField
from django.db.models.functions import Cast

from billing_project.privacy import scrub

from .models import StripeEvent


def stripe_events_pseudonymise(personal: list[str], *, within: list[str]) -> int:
    """Erasure: the stored events about the tenant (their payload names one of its Stripe
    customers, or its email) get its name and email replaced (billing_project.privacy.scrub);
    nothing else about an event changes, its processing included. A name alone picks no
    event: another customer may share it. The event guard (migration 0003) allows this,
    and only this, in a transaction that says so. How many events changed."""
    personal = [p for p in personal if p]
    markers = [m for m in within if m]  # the tenant's Stripe customer ids, its email
    if not personal or not markers:
        return 0
    holding = Q()
    for value in markers:
        holding |= Q(text__icontains=value)
    found = StripeEvent.objects.annotate(text=Cast("payload", TextField())).filter(holding).order_by("id")
    changed = 0
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL billing.stripe_event_erasure = 'on'")
    for event in found.iterator(chunk_size=200):
        payload, hit = scrub(event.payload, personal)
        if hit:
            StripeEvent.objects.filter(pk=event.pk).update(payload=payload)
            changed += 1
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL billing.stripe_event_erasure = 'off'")
    return changed
