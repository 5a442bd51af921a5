"""Every write to StripeEvent: record a verified event once, process it once."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from billing_project.audit import acting_as
from billing_project.errors import BillingError
from billing_project.jobs import send_after_commit
from billing_project.work import Item, work_attempt, work_due_again, work_held, work_retry_item
from invoicing.providers import ProviderRejected

from .handlers import HANDLERS, Apply
from .models import StripeEvent

logger = logging.getLogger(__name__)

JOB = "webhooks.event"  # the WorkItem job of processing a stored event (object: its row)
TASK = "webhooks.tasks.process_stripe_event"
# Failures no retry can cure: Stripe refusing to show the object (it is not ours, or gone),
# an event without an object id (ValueError), a domain refusal. Others back off first.
PERMANENT: tuple[type[BaseException], ...] = (ProviderRejected, BillingError, ValueError)


class InvalidEvent(Exception):
    """A verified body that is not a Stripe event we can store."""


@dataclass(frozen=True)
class RecordedEvent:
    stripe_id: str
    created: bool  # False: Stripe delivered it before (a retry or a replay)


_INSERT = """
INSERT INTO webhooks_stripeevent (stripe_id, type, api_version, livemode, created, payload, received_at,
                                  attempts, last_error)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, now(), 0, '')
ON CONFLICT (stripe_id) DO NOTHING
RETURNING id
"""


def _mode() -> str:
    return "live" if settings.STRIPE_LIVE_MODE else "test"


def _fields(event: Any) -> tuple[str, str, str | None, bool, datetime]:
    if not isinstance(event, dict):
        raise InvalidEvent("The body is not a JSON object.")
    stripe_id, event_type, api_version = event.get("id"), event.get("type"), event.get("api_version")
    livemode, created, data = event.get("livemode"), event.get("created"), event.get("data")
    if not isinstance(stripe_id, str) or not 0 < len(stripe_id) <= 255:
        raise InvalidEvent("id must be a non-empty string.")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= 255:
        raise InvalidEvent("type must be a non-empty string.")
    if api_version is not None and (not isinstance(api_version, str) or len(api_version) > 64):
        raise InvalidEvent("api_version must be a string or null.")
    if not isinstance(livemode, bool):
        raise InvalidEvent("livemode must be a boolean.")
    if livemode != settings.STRIPE_LIVE_MODE:
        # signed with our secret, yet from the other mode: a misconfigured endpoint, never acted on
        raise InvalidEvent(f"A {'live' if livemode else 'test'}-mode event reached a {_mode()}-mode service.")
    if isinstance(created, bool) or not isinstance(created, int) or not 0 <= created < 2**37:
        raise InvalidEvent("created must be a Unix timestamp.")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidEvent("data.object must be an object.")
    return stripe_id, event_type, api_version, livemode, datetime.fromtimestamp(created, tz=UTC)


def stripe_event_record(*, event: Any) -> RecordedEvent:
    """Store a verified event once by its Stripe id and, once that commits, queue its
    processing. A concurrent duplicate waits on the unique index and then finds the row:
    never an error."""
    stripe_id, event_type, api_version, livemode, created = _fields(event)
    # PostgreSQL's jsonb cannot hold NUL in a string; refuse it here rather than as a 500.
    text = json.dumps(event, ensure_ascii=False, allow_nan=False)
    if "\\u0000" in text:
        raise InvalidEvent("The event contains a NUL character.")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_INSERT, [stripe_id, event_type, api_version, livemode, created, text])
        created_now = cursor.fetchone() is not None
        if created_now:
            stripe_event_enqueue(stripe_id=stripe_id)
    if api_version and api_version != settings.STRIPE_API_VERSION:
        # Handlers re-read objects from Stripe at our pinned version, so this is only a hint
        # that the endpoint in Stripe's dashboard is configured for another version.
        logger.warning("stripe.event.api_version_differs", extra={"event": stripe_id, "api_version": api_version})
    logger.info("stripe.event.received", extra={"event": stripe_id, "type": event_type, "new": created_now})
    return RecordedEvent(stripe_id=stripe_id, created=created_now)


def stripe_event_enqueue(*, stripe_id: str) -> None:
    """Queue the event's processing once the current transaction commits (the task must
    find the row). If the send fails, the row is committed all the same: Stripe must not
    be told to retry, and the sweeper (process_pending_stripe_events) queues it again."""
    send_after_commit(TASK, stripe_id, failure_event="stripe.event.enqueue_failed", event=stripe_id)


def stripe_event_process(*, stripe_id: str) -> bool:
    """Apply the event's effect exactly once. Returns True if this call applied it.

    Stripe first, then the lock: the handler reads Stripe's current state with no
    transaction open and nothing locked, then one short transaction locks the event's row,
    applies what was read and marks the event processed, so concurrent deliveries of one
    event apply it once and a failed attempt leaves no effect behind. A failure is counted
    in its own transaction, then re-raised.
    """
    event = StripeEvent.objects.filter(stripe_id=stripe_id).first()
    if event is None:
        # Queued only after the row committed and rows are never deleted: a retry cannot help.
        logger.error("stripe.event.missing", extra={"event": stripe_id})
        return False
    if event.processed_at is not None:
        return False
    try:
        handler = HANDLERS.get(event.type)
        if handler is None:
            logger.info("stripe.event.unhandled", extra={"event": stripe_id, "type": event.type})
        apply = handler(event) if handler is not None else None  # Stripe, outside any transaction
        with acting_as(f"stripe:{stripe_id}"):  # the audit log names the event as the actor
            applied = _apply(event_id=event.pk, apply=apply)
    except Exception as exc:
        _record_failure(stripe_id=stripe_id, error=exc)
        raise
    if applied:
        logger.info("stripe.event.processed", extra={"event": stripe_id, "type": event.type})
    return applied


def _apply(*, event_id: int, apply: Apply | None) -> bool:
    """Under the event's row lock: apply its effect and mark it processed, in one
    transaction (durable: never inside a caller's, whose locks it would keep)."""
    with transaction.atomic(durable=True):
        event = StripeEvent.objects.select_for_update().get(pk=event_id)
        if event.processed_at is not None:
            return False  # a concurrent delivery applied it while we read Stripe
        if apply is not None:
            apply()
        StripeEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now(), attempts=F("attempts") + 1)
    return True


def _record_failure(*, stripe_id: str, error: BaseException) -> None:
    try:
        with transaction.atomic():
            StripeEvent.objects.filter(stripe_id=stripe_id, processed_at=None).update(
                attempts=F("attempts") + 1, last_error=f"{type(error).__name__}: {error}"[:4000]
            )
    except Exception:
        # The original error matters more; the task's retry and failure record still see it.
        logger.exception("stripe.event.failure_not_recorded", extra={"event": stripe_id})


def stripe_event_attempt(*, stripe_id: str) -> bool | None:
    """One attempt to process the event, counted (billing_project.work): a failure backs
    off, and the sweeper queues it again once due; one no retry can cure (Stripe refuses
    to show the object, a malformed event, a domain refusal) blocks it at once, and so do
    MAX_ATTEMPTS failures in a row. A blocked event waits for staff to reprocess it."""
    pk = StripeEvent.objects.filter(stripe_id=stripe_id).values_list("pk", flat=True).first()
    if pk is None:
        return stripe_event_process(stripe_id=stripe_id)  # logs it: a retry cannot help
    item = Item(job=JOB, object_id=pk, subject=stripe_id, task=TASK, task_args=(stripe_id,))
    return work_attempt(item, partial(stripe_event_process, stripe_id=stripe_id), permanent=PERMANENT)


def stripe_event_reprocess(*, stripe_id: str, note: str) -> None:
    """Staff: process an unprocessed event again now, lifting its block if it has one
    (audited on its WorkItem), else simply queueing it."""
    pk = StripeEvent.objects.filter(stripe_id=stripe_id, processed_at=None).values_list("pk", flat=True).first()
    if pk is None:
        return
    if work_retry_item(job=JOB, object_id=pk, note=note) is None:  # never failed: only queue it
        stripe_event_enqueue(stripe_id=stripe_id)


def stripe_events_pending(*, older_than: timedelta, limit: int = 500, now: datetime | None = None) -> list[str]:
    """Events to queue: never attempted although received a while ago (their enqueue was
    lost), or failed and past their back-off. Never a blocked one. received_at is the
    database's clock (intake's now()), so its age is measured on it too; a back-off is on
    the application's clock, as work_failed set it."""
    now = now or timezone.now()
    return list(
        StripeEvent.objects.filter(processed_at=None, received_at__lt=Now() - older_than)
        .filter(Q(attempts=0) | work_due_again(job=JOB, now=now))
        .exclude(work_held(job=JOB, now=now))
        .order_by("received_at")
        .values_list("stripe_id", flat=True)[:limit]
    )
