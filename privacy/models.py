"""An erasure of a tenant's personal data (GDPR Art. 17), recorded without the data it erased."""

from __future__ import annotations

from django.db import models


class Erasure(models.Model):
    """One per tenant, for good. It says who asked, why, when, what was done (counts, never
    values) and what remains to do: the Stripe customer (a task, retried), and the buyer
    printed on finalized invoices, kept until the retention of the seller's country ends
    (`retention_until`, the last one's), then pseudonymised by a daily beat job."""

    tenant = models.OneToOneField("subscriptions.Tenant", on_delete=models.PROTECT, related_name="erasure")
    reason = models.TextField()
    requested_by = models.CharField(max_length=200, help_text="staff:<name> or the API key's label.")
    approved_by = models.CharField(max_length=200, blank=True, help_text="The second person, from the console.")
    approval_request = models.ForeignKey(
        "approvals.ApprovalRequest", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    erased_at = models.DateTimeField()
    done = models.JSONField(default=dict, help_text="What was done, in counts.")
    stripe_customers = models.JSONField(default=list, help_text="Stripe customer ids to pseudonymise there.")
    stripe_done_at = models.DateTimeField(null=True, blank=True)
    stripe_attempts = models.PositiveIntegerField(default=0)
    stripe_last_error = models.TextField(blank=True)
    retention_until = models.DateTimeField(
        null=True, blank=True, help_text="When the last finalized invoice's buyer may be pseudonymised."
    )
    buyers_erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-erased_at", "-id"]
        constraints = [models.CheckConstraint(name="erasure_has_reason", condition=~models.Q(reason=""))]

    def __str__(self) -> str:
        return f"erasure of tenant #{self.tenant_id} on {self.erased_at:%Y-%m-%d}"

    @property
    def status(self) -> str:
        if self.stripe_customers and self.stripe_done_at is None:
            return "stripe_pending"
        if self.buyers_erased_at is None and self.retention_until is not None:
            return "retained"
        return "completed"
