"""Stripe events for staff: read-only (they are what Stripe sent); unprocessed ones can be
processed again, which lifts a block (audited on the event's background work item)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from billing_project.admin_base import ReadOnlyAdmin

from .models import StripeEvent
from .services import stripe_event_reprocess


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["stripe_id", "type", "livemode", "created", "received_at", "processed_at", "attempts"]
    list_filter = [("processed_at", admin.EmptyFieldListFilter), "type", "livemode"]
    search_fields = ["stripe_id", "type"]
    actions = ["reprocess"]
    show_full_result_count = False

    @admin.action(description="Reprocess (unprocessed events only)", permissions=["reprocess"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        pending = list(queryset.filter(processed_at=None).values_list("stripe_id", flat=True))
        for stripe_id in pending:
            stripe_event_reprocess(
                stripe_id=stripe_id, note=f"reprocessed by {request.user} from the Stripe events page"
            )
        skipped = queryset.count() - len(pending)
        self.message_user(request, f"Queued {len(pending)} event(s) for processing.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {skipped} already processed event(s).", messages.WARNING)

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.reprocess_stripeevent")
