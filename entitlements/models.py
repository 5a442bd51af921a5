"""Entitlements: grants that staff add on top of a plan, consume answers kept for
idempotency, and the record of counter reconciliations."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Grant(models.Model):
    """A human exception to a tenant's plan: more of a metered feature, or a feature
    switched on, until it expires. Created by staff in the admin with a reason; audited."""

    class Kind(models.TextChoices):
        EXTRA_LIMIT = "extra_limit", "extra limit"
        ENABLE = "enable", "switch the feature on"

    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="grants")
    feature = models.ForeignKey("plans.Feature", on_delete=models.PROTECT, related_name="grants")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount = models.DecimalField(
        max_digits=30, decimal_places=6, null=True, blank=True, help_text="Added to the period limit (extra_limit)."
    )
    reason = models.TextField(help_text="Why this tenant gets it (kept in the audit trail).")
    expires_at = models.DateTimeField(help_text="The grant stops counting at this instant.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(name="grant_kind_valid", condition=Q(kind__in=["extra_limit", "enable"])),
            models.CheckConstraint(
                name="grant_extra_limit_has_amount",
                condition=~Q(kind="extra_limit") | Q(amount__isnull=False, amount__gt=0),
            ),
            models.CheckConstraint(name="grant_has_reason", condition=~Q(reason="")),
        ]
        indexes = [models.Index(fields=["tenant", "expires_at"], name="grant_active_idx")]

    def __str__(self) -> str:
        return f"{self.feature} {self.kind} for {self.tenant.external_id} until {self.expires_at:%Y-%m-%d}"


class ConsumeRecord(models.Model):
    """The answer given to an entitlements/consume request, so that a repeated
    idempotency key answers as the first time did (allowed or not)."""

    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="+")
    idempotency_key = models.CharField(max_length=255)
    # what the key was used for: the same key with another feature or quantity is a conflict
    feature = models.CharField(max_length=100)
    quantity = models.DecimalField(
        max_digits=30, decimal_places=6, null=True, help_text="Unknown (null) for consumes recorded before it was kept."
    )
    recorded = models.BooleanField(help_text="Allowed, and the usage recorded (else denied: nothing recorded).")
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="consumerecord_idempotent")]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.idempotency_key}: {'recorded' if self.recorded else 'denied'}"


class ReconciliationRun(models.Model):
    """One pass of the counter reconciliation: how many counters were checked and how
    many had drifted from PostgreSQL and were corrected."""

    started_at = models.DateTimeField(auto_now_add=True)
    checked = models.PositiveIntegerField(default=0)
    corrected = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M}: {self.corrected}/{self.checked} corrected"
