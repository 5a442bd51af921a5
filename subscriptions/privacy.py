"""What subscriptions hold about a tenant, for its data export (privacy/export.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from billing_project.cache import tenant_changed

from .models import Tenant


def tenant_personal_data(tenant: Tenant) -> dict[str, Any]:
    """The tenant's own row: the only place its name and billing email are kept."""
    return {
        "external_id": tenant.external_id,
        "name": tenant.name,
        "billing_email": tenant.billing_email,
        "country": tenant.country,
        "address": tenant.address,
        "tax_id": tenant.tax_id,
        "currency": tenant.currency,
        "created_at": tenant.created_at,
        "erased_at": tenant.erased_at,
    }


def subscriptions_export(tenant: Tenant) -> Iterator[dict[str, Any]]:
    """Each subscription with its history: every lifecycle event and every billing period."""
    for sub in tenant.subscriptions.select_related("plan_version__plan").order_by("id").iterator(chunk_size=100):
        yield {
            "id": sub.pk,
            "plan": sub.plan_version.plan.code,
            "plan_version": sub.plan_version.version,
            "status": sub.status,
            "started_at": sub.started_at,
            "trial_end": sub.trial_end,
            "current_period": {"start": sub.current_period_start, "end": sub.current_period_end},
            "cancel_at_period_end": sub.cancel_at_period_end,
            "ended_at": sub.ended_at,
            "events": [
                {
                    "action": e.action,
                    "from_status": e.from_status,
                    "to_status": e.to_status,
                    "actor": e.actor,
                    "reason": e.reason,
                    "at": e.at,
                }
                for e in sub.events.order_by("at", "id")
            ],
            "periods": [
                {"kind": p.kind, "start": p.start, "end": p.end, "currency": p.currency, "closed": p.closed}
                for p in sub.periods.order_by("start", "id")
            ],
        }


def tenant_pseudonymise(tenant: Tenant, *, pseudonym: str, at: datetime) -> None:
    """Erasure: the row keeps its id (services still name the tenant by it, its invoices
    still print), its country and currency (tax and money, not a person); its name becomes
    the pseudonym; its email, address and tax ID nothing. The caller holds the tenant's lock."""
    tenant.name, tenant.billing_email, tenant.address, tenant.tax_id = pseudonym, "", "", ""
    tenant.erased_at = at
    tenant.save(update_fields=["name", "billing_email", "address", "tax_id", "erased_at"])
    tenant_changed(tenant.pk)  # what is cached of it (ingestion refuses an erased tenant's usage)
