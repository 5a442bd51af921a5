"""The audit trail of tenants (personal data) in django-auditlog.

Every create and change of a tenant is logged with its actor: the staff member in the
admin, the API key for the API (billing_project.audit.api_actor), `billing-system` for
tasks and commands. The log is append-only and kept for ever, so it never holds the
tenant's personal data (name, billing email: kept in the tenant's row only, where
erasure can act): their changes are recorded as changed, masked, and an entry names
the tenant by its external id, not by its name.
"""

from __future__ import annotations

from typing import Any

PERSONAL_FIELDS = ["name", "billing_email", "address", "tax_id"]
MASK_CALLABLE = "subscriptions.audit.mask_personal_data"
MASK = "(personal data, not logged)"


def mask_personal_data(value: str) -> str:
    return MASK if value else ""


def _name_tenant_by_its_id(sender: Any, instance: Any, **kwargs: Any) -> None:
    """pre_save of a LogEntry: a tenant's entry names it by external id (str(tenant) has its name)."""
    from django.contrib.contenttypes.models import ContentType

    from .models import Tenant

    if not instance._state.adding or instance.content_type_id != ContentType.objects.get_for_model(Tenant).pk:
        return
    external_id = Tenant.objects.filter(pk=instance.object_id).values_list("external_id", flat=True).first()
    instance.object_repr = external_id or f"tenant #{instance.object_pk}"


def connect() -> None:
    from auditlog.models import LogEntry
    from django.db.models.signals import pre_save

    pre_save.connect(_name_tenant_by_its_id, sender=LogEntry, dispatch_uid="subscriptions_tenant_audit_repr")
