"""Tenants: the billed accounts. Their personal data lives here and nowhere else."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper


class Tenant(models.Model):
    """A customer account of the platform, named by the platform's own id (`external_id`).

    Personal data (name, billing email) is kept in this table only, so that
    financial tables never copy it and erasure has one place to act.
    """

    external_id = models.CharField(
        max_length=200, unique=True, help_text="The platform's own tenant id, as services send it."
    )
    name = models.CharField(max_length=200)
    billing_email = models.EmailField(blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(name="tenant_external_id_not_blank", condition=~Q(external_id="")),
            models.CheckConstraint(name="tenant_currency_upper", condition=Q(currency=Upper("currency"))),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.external_id})"
