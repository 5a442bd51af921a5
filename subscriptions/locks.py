"""Row locks on tenants, taken in one documented order.

Lock order, everywhere: an invoice (when acting on one that exists), then its tenant,
then the tenant's subscription and billing periods. The period close takes the tenant
first (it acts on no existing invoice), so closes, credit applications and credit notes
of one tenant queue behind each other and never deadlock.
"""

from __future__ import annotations

from django.db import transaction

from .models import Tenant


def tenant_select_for_update(*, tenant_id: int) -> Tenant:
    """The tenant's row, locked until the caller's transaction ends. Join-free: after
    waiting, PostgreSQL re-checks only the locked row (see services._live_locked)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("a tenant lock is taken inside the transaction that needs it")
    return Tenant.objects.select_for_update().get(pk=tenant_id)
