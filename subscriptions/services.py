"""Subscription-domain services: every write to tenants and subscriptions."""

from __future__ import annotations

from django.db import transaction

from .models import Tenant


def tenant_upsert(
    *, external_id: str, name: str, billing_email: str = "", country: str = "", currency: str = "USD"
) -> tuple[Tenant, bool]:
    """Create the tenant or update its details; returns (tenant, created)."""
    with transaction.atomic():
        tenant, created = Tenant.objects.select_for_update().get_or_create(
            external_id=external_id,
            defaults={
                "name": name,
                "billing_email": billing_email,
                "country": country.upper(),
                "currency": currency.upper(),
            },
        )
        if not created:
            tenant.name = name
            tenant.billing_email = billing_email
            tenant.country = country.upper()
            tenant.currency = currency.upper()
            tenant.full_clean()
            tenant.save()
    return tenant, created
