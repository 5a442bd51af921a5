"""Platform-level records: API keys of services and agents, failed background tasks, and
background work that failed (counted, backed off, blocked)."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from .scopes import AGENT_SCOPES, ALL_SCOPES


class ApiKey(models.Model):
    """A credential for a product service or an AI agent calling the API.

    The secret is shown once when the key is made and stored only as a SHA-256
    hash (keys are 256-bit random, so a fast hash is safe and keeps the hot
    path cheap). Keys are revoked, never deleted, so the audit trail keeps its
    subject.
    """

    class Kind(models.TextChoices):
        SERVICE = "service", "Service"
        AGENT = "agent", "Agent (AI)"

    name = models.CharField(max_length=100, help_text="Who uses the key, e.g. 'chat-backend (prod)'.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    prefix = models.CharField(
        max_length=16,
        unique=True,
        editable=False,
        help_text="The visible start of the key, to recognise it in logs and support tickets.",
    )
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = ArrayField(
        models.CharField(max_length=40),
        default=list,
        blank=True,
        help_text="What the key may do. Agent keys may only read and propose.",
    )
    metrics = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="Metric codes this key may report usage for (services with usage:write).",
    )
    tenant = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        help_text="If set, the key serves only this tenant (external id); "
        "every other tenant looks as if it did not exist.",
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per minute; empty means the service-wide default.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_reason = models.TextField(blank=True, editable=False)
    last_used_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Updated at most once a minute."
    )

    class Meta:
        verbose_name = "service or agent API key"
        constraints = [
            models.CheckConstraint(name="apikey_kind_valid", condition=Q(kind__in=["service", "agent"])),
            models.CheckConstraint(name="apikey_scopes_known", condition=Q(scopes__contained_by=sorted(ALL_SCOPES))),
            # An AI agent can never hold a write scope, whatever writes the row.
            models.CheckConstraint(
                name="apikey_agent_scopes_read_only",
                condition=Q(kind="service") | Q(scopes__contained_by=sorted(AGENT_SCOPES)),
            ),
            models.CheckConstraint(
                name="apikey_revoked_has_reason",
                condition=Q(revoked_at__isnull=True) | ~Q(revoked_reason=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        unknown = sorted(set(self.scopes) - set(ALL_SCOPES))
        if unknown:
            raise ValidationError({"scopes": f"Unknown scopes: {', '.join(unknown)}."})
        if self.kind == self.Kind.AGENT:
            forbidden = sorted(set(self.scopes) - AGENT_SCOPES)
            if forbidden:
                raise ValidationError({"scopes": f"An agent key cannot hold write scopes: {', '.join(forbidden)}."})

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class TaskFailure(models.Model):
    """A background task that failed after all its retries: someone must look at it."""

    task_name = models.CharField(max_length=200)
    task_id = models.CharField(max_length=64, unique=True)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    exception_type = models.CharField(max_length=200)
    message = models.TextField()
    traceback = models.TextField(blank=True)
    failed_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-failed_at"]
        indexes = [models.Index(fields=["resolved_at"], name="taskfailure_open_idx")]

    def __str__(self) -> str:
        return f"{self.task_name} {self.task_id}"


class WorkItem(models.Model):
    """Background work on one item that has failed: collecting an invoice at Stripe, a
    dunning retry, a subscription's period close, a Stripe event. It says how many attempts
    failed in a row, when the next one is due (each failure doubles the wait), and, once
    blocked, why. A blocked item is never tried again by its beat job; staff retry it once
    the cause is fixed (an audited admin action). See billing_project/work.py."""

    class State(models.TextChoices):
        RETRYING = "retrying", "Failed; tried again after a back-off"
        BLOCKED = "blocked", "Blocked until staff retry it"
        DONE = "done", "Succeeded since it failed"

    job = models.CharField(max_length=64, help_text="What the work is, e.g. invoicing.collect.")
    object_id = models.BigIntegerField(help_text="The id of the invoice, subscription or event the work is on.")
    subject = models.CharField(max_length=300, help_text="What the work is on, as staff know it (a number, an id).")
    task = models.CharField(
        max_length=200, blank=True, help_text="The task a retry queues at once (empty: its beat job takes it up)."
    )
    task_args = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RETRYING)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Failed attempts in a row, since it last succeeded or staff retried it."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Not tried again before this.")
    last_error = models.TextField(blank=True)
    first_failed_at = models.DateTimeField(help_text="The first failure of this run of failures.")
    last_failed_at = models.DateTimeField()
    blocked_at = models.DateTimeField(null=True, blank=True)
    blocked_reason = models.TextField(blank=True, help_text="Why it stopped: what to fix before retrying it.")
    retry_note = models.TextField(blank=True, help_text="What staff fixed when they last retried it.")

    class Meta:
        ordering = ["-last_failed_at", "-id"]
        verbose_name = "background work item"
        constraints = [
            models.UniqueConstraint(fields=["job", "object_id"], name="workitem_one_per_item"),
            models.CheckConstraint(
                name="workitem_blocked_says_why",
                condition=~Q(state="blocked") | (Q(blocked_at__isnull=False) & ~Q(blocked_reason="")),
            ),
            models.CheckConstraint(
                name="workitem_retrying_has_a_time", condition=~Q(state="retrying") | Q(next_attempt_at__isnull=False)
            ),
        ]
        indexes = [models.Index(fields=["state", "job"], name="workitem_state_job")]
        permissions = [("retry_workitem", "Can retry blocked background work")]

    def __str__(self) -> str:
        return f"{self.job} {self.subject}"


class ChainLink(models.Model):
    """One link of the tamper-evident audit chain: a financial row as written (its content's
    SHA-256, taken by a trigger in the writing transaction), then sealed into the chain by
    `position`, the previous link's hash and its own. A row that changes again (a refund that
    moves on, a decided approval) gets a new link; the newest must match the row as it stands."""

    table_name = models.CharField(max_length=63)
    row_id = models.CharField(max_length=40)
    event = models.CharField(max_length=12, help_text="insert, update or backfill.")
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    position = models.BigIntegerField(null=True, blank=True, unique=True, help_text="Place in the chain once sealed.")
    prev_hash = models.CharField(max_length=64, blank=True)
    link_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["table_name", "row_id", "id"], name="chainlink_row"),
            models.Index(fields=["id"], condition=Q(position__isnull=True), name="chainlink_unsealed"),
        ]

    def __str__(self) -> str:
        return f"link {self.position or '(unsealed)'}: {self.table_name} #{self.row_id}"


class ChainHead(models.Model):
    """The chain's newest sealed link as recorded by the daily beat job. Copied out of the
    database (README), a head proves the chain up to it was not rewritten since."""

    recorded_at = models.DateTimeField()
    position = models.BigIntegerField()
    link_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-recorded_at"]

    def __str__(self) -> str:
        return f"head {self.position} {self.link_hash[:12]}…"
