"""Stripe webhook events: each verified event stored once by its Stripe id, then processed
exactly once by a Celery task."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class StripeEvent(models.Model):
    """An event Stripe delivered to us with a valid signature, kept as received. Only the
    processing bookkeeping (processed_at, attempts, last_error) ever changes; a PostgreSQL
    trigger refuses any other UPDATE, and every DELETE and TRUNCATE."""

    stripe_id = models.CharField(max_length=255, unique=True, help_text="Stripe's event id (evt_…).")
    type = models.CharField(max_length=255, db_index=True, help_text="e.g. invoice.paid")
    api_version = models.CharField(
        max_length=64, null=True, blank=True, help_text="The Stripe API version the payload is shaped by."
    )
    livemode = models.BooleanField(help_text="False for Stripe test-mode events.")
    created = models.DateTimeField(help_text="When Stripe created the event.")
    payload = models.JSONField(help_text="The event's JSON as Stripe sent it (after verification).")
    received_at = models.DateTimeField(db_default=Now())
    processed_at = models.DateTimeField(
        null=True, blank=True, help_text="Set once, when its effect on billing state was committed."
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Processing attempts so far, failed ones included.")
    last_error = models.TextField(blank=True, help_text="The most recent processing error, if any.")

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["received_at"], name="stripeevent_pending_idx", condition=models.Q(processed_at=None)),
        ]
        permissions = [("reprocess_stripeevent", "Can queue unprocessed Stripe events for processing again")]

    def __str__(self) -> str:
        return f"{self.stripe_id} {self.type}"
