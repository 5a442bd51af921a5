"""Tenants: the billed accounts. Their personal data lives here and nowhere else."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper

from billing_project.money import money_display
from billing_project.personal_data import EncryptedCharField, EncryptedEmailField, EncryptedTextField


class Tenant(models.Model):
    """A customer account of the platform, named by the platform's own id (`external_id`).

    Personal data (name, billing email, address, tax ID) is kept in this table only (and
    frozen on finalized invoices as their buyer), so that erasure has one place to act.
    """

    external_id = models.CharField(
        max_length=200, unique=True, help_text="The platform's own tenant id, as services send it."
    )
    # Personal data: encrypted at rest (billing_project/personal_data.py), so never filtered
    # or searched in SQL; a tenant is found by its external id.
    name = EncryptedCharField(max_length=200)
    billing_email = EncryptedEmailField(blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    address = EncryptedTextField(
        max_length=500,
        blank=True,
        help_text="Billing address as printed on invoices: street, postal code and city lines.",
    )
    tax_id = EncryptedCharField(
        max_length=40, blank=True, help_text="VAT or other tax ID, in its country's format (subscriptions/taxids.py)."
    )
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217")
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Personal data erased (privacy/): no new details, no new subscription.",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(name="tenant_external_id_not_blank", condition=~Q(external_id="")),
            models.CheckConstraint(name="tenant_currency_upper", condition=Q(currency=Upper("currency"))),
        ]

    def __str__(self) -> str:
        # The external id, never the name: str() of a tenant (and of whatever names one) is
        # copied into logs kept for ever (the admin's log, the audit log's object names).
        return self.external_id


LIVE_STATUSES = ("trialing", "active", "past_due", "suspended")


class Subscription(models.Model):
    """A tenant's subscription to one plan *version* (grandfathered: it keeps the
    version it bought until changed). Status moves only through the transitions of
    subscriptions/lifecycle.py, and only through subscriptions/services.py."""

    class Status(models.TextChoices):
        TRIALING = "trialing"
        ACTIVE = "active"
        PAST_DUE = "past_due", "past due"
        SUSPENDED = "suspended"
        CANCELED = "canceled"
        ENDED = "ended"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="subscriptions")
    plan_version = models.ForeignKey("plans.PlanVersion", on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=10, choices=Status.choices, editable=False)
    started_at = models.DateTimeField(editable=False)
    trial_end = models.DateTimeField(null=True, blank=True, editable=False)
    period_anchor = models.DateTimeField(editable=False, help_text="Periods are counted from here (month-end safe).")
    period_index = models.PositiveIntegerField(default=0, editable=False)
    current_period_start = models.DateTimeField(editable=False)
    current_period_end = models.DateTimeField(editable=False)
    cancel_at_period_end = models.BooleanField(default=False, editable=False)
    scheduled_plan_version = models.ForeignKey(
        "plans.PlanVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        help_text="Takes effect at the end of the current period.",
    )
    ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    past_due_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When a payment failed; the dunning grace counts from here."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # At most one live subscription per tenant, whatever writes the rows.
            models.UniqueConstraint(
                fields=["tenant"], condition=Q(status__in=LIVE_STATUSES), name="subscription_one_live_per_tenant"
            ),
            models.CheckConstraint(
                name="subscription_status_valid",
                condition=Q(status__in=["trialing", "active", "past_due", "suspended", "canceled", "ended"]),
            ),
            models.CheckConstraint(
                name="subscription_period_not_empty",
                condition=Q(current_period_end__gt=models.F("current_period_start")),
            ),
            models.CheckConstraint(
                name="subscription_trial_has_end", condition=~Q(status="trialing") | Q(trial_end__isnull=False)
            ),
        ]
        indexes = [models.Index(fields=["status", "current_period_end"], name="subscription_due_idx")]
        permissions = [("suspend_subscription", "Can suspend, resume and cancel subscriptions")]

    def __str__(self) -> str:
        return f"{self.tenant.external_id}: {self.plan_version} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES


class SubscriptionEvent(models.Model):
    """The audit record of every lifecycle operation: who did what, why, from which
    state to which. Append-only (a trigger refuses UPDATE, DELETE and TRUNCATE)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="events")
    action = models.CharField(max_length=30)
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10)
    actor = models.CharField(max_length=200, help_text="service:bsk_…, staff:<username> or system")
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]
        # /metrics counts the last hour's suspensions at every scrape (subscriptions/metrics_state.py)
        indexes = [models.Index(fields=["at"], name="subscriptionevent_suspend_at", condition=Q(action="suspend"))]

    def __str__(self) -> str:
        return f"{self.action}: {self.from_status or '—'} → {self.to_status}"


class BillingPeriod(models.Model):
    """A stretch of a subscription billed as one: `[start, end)` on one plan version, in
    one currency. Subscriptions open and close periods; invoicing reads them. A paid
    period's usage is billed in arrears by the invoice that closes it (one invoice per
    period: a rerun of the close finds it billed), and its base fee in advance when
    `fee_in_advance` (a period that follows a plan change mid-period has its fee prorated
    instead). A trial's usage is free. A plan change now ends the period at the change
    and opens another on the new version, so each version prices only its own usage.

    While open, `end` is where the period is due to end; closing may bring it forward
    (cancelled now, a plan change). Once closed it never changes (a trigger)."""

    class Kind(models.TextChoices):
        TRIAL = "trial"
        PAID = "paid"

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="periods")
    plan_version = models.ForeignKey("plans.PlanVersion", on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3, help_text="ISO 4217: the plan version's, so every line it bills.")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    start = models.DateTimeField()
    end = models.DateTimeField(help_text="Exclusive. Until the period closes, where it is due to end.")
    planned_end = models.DateTimeField(
        help_text="Where it was due to end when it opened (what a fee in advance covers)."
    )
    fee_in_advance = models.BooleanField(
        help_text="Its base fee is billed when it starts (false for trials and after a plan change mid-period)."
    )
    closed = models.BooleanField(default=False)
    opened_by = models.ForeignKey(SubscriptionEvent, on_delete=models.PROTECT, related_name="opened_periods")
    closed_by = models.ForeignKey(
        SubscriptionEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="closed_periods"
    )

    class Meta:
        ordering = ["start", "id"]
        constraints = [
            models.CheckConstraint(
                # only a period closed at its start is empty (a change or cancellation at that instant)
                name="billingperiod_not_empty",
                condition=Q(end__gt=models.F("start")) | Q(closed=True, end=models.F("start")),
            ),
            models.CheckConstraint(name="billingperiod_kind_valid", condition=Q(kind__in=["trial", "paid"])),
            models.CheckConstraint(
                name="billingperiod_trial_fee_not_in_advance", condition=Q(kind="paid") | Q(fee_in_advance=False)
            ),
            models.CheckConstraint(
                name="billingperiod_closed_by_iff_closed",
                condition=Q(closed=True, closed_by__isnull=False) | Q(closed=False, closed_by__isnull=True),
            ),
            # one open period per subscription: the one its current_period_* mirror
            models.UniqueConstraint(fields=["subscription"], condition=Q(closed=False), name="billingperiod_one_open"),
        ]
        indexes = [
            # the period close looks for closed, paid periods every few minutes
            models.Index(fields=["end"], name="billingperiod_closed_paid", condition=Q(closed=True, kind="paid")),
            models.Index(fields=["start"], name="billingperiod_fee_in_advance", condition=Q(fee_in_advance=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.start:%Y-%m-%d} – {self.end:%Y-%m-%d} ({self.plan_version_id})"


class ProrationItem(models.Model):
    """A prorated credit or charge from a plan change, waiting for the next invoice
    (invoicing sets `invoiced_at` when it bills it)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="proration_items")
    event = models.ForeignKey(SubscriptionEvent, on_delete=models.PROTECT, related_name="proration_items")
    kind = models.CharField(max_length=6, choices=[("credit", "credit"), ("charge", "charge")])
    description = models.CharField(max_length=200)
    amount = models.DecimalField(max_digits=24, decimal_places=10, help_text="Negative for a credit.")
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    invoiced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                name="prorationitem_sign_matches_kind",
                condition=(Q(kind="credit") & Q(amount__lt=0)) | (Q(kind="charge") & Q(amount__gt=0)),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.description}: {money_display(self.amount, self.currency)}"
