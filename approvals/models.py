"""Four eyes: what one person (or an AI agent) asks for and a second person decides."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from billing_project.money import exponent, format_decimal

# as invoicing's amounts: rounded to a minor unit, at most 4 digits after the point (CLF)
AMOUNT_DIGITS, AMOUNT_PLACES = 20, 4


class ApprovalRequest(models.Model):
    """A financial action waiting for a second person: a staff member's credit, refund or
    credit note above the currency's threshold (APPROVAL_THRESHOLDS), or anything an AI
    agent proposes, whatever the amount. Nothing happens until a member of
    `finance-approver` who did not ask approves it; approving checks it again and runs the
    same service the action runs without approval (approvals/kinds.py). Rejected or
    expired (APPROVAL_EXPIRY_DAYS), nothing happens at all."""

    class Kind(models.TextChoices):
        CREDIT = "credit", "credit"
        REFUND = "refund", "refund"
        CREDIT_NOTE = "credit_note", "credit note"
        PLAN_CHANGE = "plan_change", "plan change"
        GRANT = "grant", "grant"
        TRIAL_EXTENSION = "trial_extension", "trial extension"
        ERASURE = "erasure", "erasure of personal data"  # registered by privacy/ (above this app)

    class Status(models.TextChoices):
        PENDING = "pending", "pending (waiting for a second person)"
        APPROVED = "approved", "approved (done)"
        REJECTED = "rejected", "rejected (nothing done)"
        EXPIRED = "expired", "expired (nothing done)"
        FAILED = "failed", "failed (approved, refused when checked again: nothing done)"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="approval_requests")
    payload = models.JSONField(help_text="What to do, as validated when requested (approvals/kinds.py).")
    amount = models.DecimalField(
        max_digits=AMOUNT_DIGITS,
        decimal_places=AMOUNT_PLACES,
        null=True,
        blank=True,
        help_text="The money it moves (credits, refunds, credit notes); checked again on approval.",
    )
    currency = models.CharField(max_length=3, blank=True, help_text="ISO 4217, with the amount.")
    description = models.TextField(blank=True, help_text="What approving would do, as checked when requested.")
    preview = models.JSONField(default=dict, blank=True, help_text="The same, structured (lines, proration, …).")
    reason = models.TextField(help_text="Why the requester asks for it.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_by_key = models.ForeignKey(
        "billing_project.ApiKey",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The AI agent's key, for a proposal.",
    )
    idempotency_key = models.CharField(
        max_length=255, blank=True, help_text="The requester's token: the same request sent again is this one."
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True, help_text='What it did, e.g. {"credit_entry": 12}.')
    failure = models.TextField(blank=True, help_text="Why approving did nothing (the service's refusal).")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("approve_approvalrequest", "Can approve or reject what others request")]
        constraints = [
            models.CheckConstraint(
                name="approvalrequest_kind_valid",
                condition=Q(
                    kind__in=["credit", "refund", "credit_note", "plan_change", "grant", "trial_extension", "erasure"]
                ),
            ),
            models.CheckConstraint(
                name="approvalrequest_status_valid",
                condition=Q(status__in=["pending", "approved", "rejected", "expired", "failed"]),
            ),
            # a staff member or an agent's key asked: exactly one
            models.CheckConstraint(
                name="approvalrequest_one_requester",
                condition=Q(requested_by__isnull=False, requested_by_key__isnull=True)
                | Q(requested_by__isnull=True, requested_by_key__isnull=False),
            ),
            models.CheckConstraint(name="approvalrequest_has_reason", condition=~Q(reason="")),
            models.CheckConstraint(
                name="approvalrequest_amount_has_currency",
                condition=Q(amount__isnull=True, currency="") | (Q(amount__isnull=False) & ~Q(currency="")),
            ),
            # decided exactly when no longer pending; approved, rejected and failed by a person
            # with a reason, never by the person who asked (four eyes, below the ORM too)
            models.CheckConstraint(
                name="approvalrequest_decided_iff_not_pending",
                condition=Q(status="pending", decided_at__isnull=True, decided_by__isnull=True)
                | (~Q(status="pending") & Q(decided_at__isnull=False)),
            ),
            models.CheckConstraint(
                name="approvalrequest_decision_by_a_person",
                condition=~Q(status__in=["approved", "rejected", "failed"])
                | (Q(decided_by__isnull=False) & ~Q(decision_reason="")),
            ),
            models.CheckConstraint(
                name="approvalrequest_four_eyes",
                condition=Q(decided_by__isnull=True) | Q(requested_by__isnull=True) | ~Q(decided_by=F("requested_by")),
            ),
            models.UniqueConstraint(
                fields=["requested_by_key", "idempotency_key"],
                condition=~Q(idempotency_key="") & Q(requested_by_key__isnull=False),
                name="approvalrequest_idempotent_per_key",
            ),
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                condition=~Q(idempotency_key="") & Q(requested_by__isnull=False),
                name="approvalrequest_idempotent_per_user",
            ),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="approvalrequest_pending_due", condition=Q(status="pending")),
            models.Index(fields=["tenant", "-created_at"], name="approvalrequest_tenant"),
        ]

    def __str__(self) -> str:
        money = (
            f" {format_decimal(self.amount, exponent(self.currency))} {self.currency}"
            if self.amount is not None
            else ""
        )
        return f"#{self.pk} {self.get_kind_display()}{money} ({self.status})"

    @property
    def requester_label(self) -> str:
        """Who asked, as actors are named elsewhere: staff:<username> or agent:bak_…"""
        if self.requested_by_id is not None:
            return f"staff:{self.requested_by.get_username()}"  # type: ignore[union-attr]
        key = self.requested_by_key
        return f"{key.kind}:{key.prefix}" if key is not None else "unknown"
