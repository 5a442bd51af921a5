"""Background work that fails: counted, backed off, and blocked where staff see it.

Beat jobs take items up again (an invoice to collect at Stripe, a dunning retry, a period
close, a Stripe event), so that nothing a lost task left behind is forgotten. An item that
cannot succeed would then be retried for ever. So each attempt goes through
`work_attempt`:
- a failure is recorded on the item's WorkItem (in a transaction of its own), and the next
  attempt is due after a back-off that doubles from BACKOFF_FIRST up to BACKOFF_MAX;
- a failure no retry can cure (the caller names them: Stripe refusing a request, totals
  that disagree, a currency mismatch) blocks the item at once, and MAX_ATTEMPTS failures
  in a row block it too;
- a blocked item is not attempted again, and its beat job leaves it alone (`work_held`),
  until staff retry it in the admin after fixing the cause (`work_retry`, audited);
- a success after failures marks the item done.
The WorkItem is the failure's record (the admin's *Background work items*, the log,
`billing_work_failures_total`): a handled failure is not raised into the task's retries,
so a sweep no longer adds a task-failure row each time. An error while recording it (the
database down) is raised, and the task's own retries take over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from prometheus_client import Counter

from .jobs import send_after_commit
from .models import WorkItem

logger = logging.getLogger(__name__)
T = TypeVar("T")

BACKOFF_FIRST = timedelta(minutes=15)
BACKOFF_MAX = timedelta(hours=24)
MAX_ATTEMPTS = 8  # 15 min, 30 min, … 16 h between them: blocked about 32 hours after the first failure

FAILURES = Counter("billing_work_failures_total", "Failed attempts of background work items", ["job", "outcome"])
S = WorkItem.State


@dataclass(frozen=True)
class Item:
    """One item of a job. `subject` names it for staff (or says how to, when it costs a
    query); `task` and `task_args` are what a staff retry queues at once ('' : the job's
    beat takes it up)."""

    job: str
    object_id: int
    subject: str | Callable[[], str]
    task: str = ""
    task_args: tuple[Any, ...] = field(default_factory=tuple)


def backoff(attempts: int) -> timedelta:
    """The wait after `attempts` failures in a row (1 → BACKOFF_FIRST, doubling)."""
    wait: timedelta = BACKOFF_FIRST * 2 ** max(attempts - 1, 0)
    return min(wait, BACKOFF_MAX)


def work_held(*, job: str, now: datetime, ref: str = "pk") -> Exists:
    """For a beat job's selector: the items (OuterRef(ref) their ids) that are blocked or
    backing off at `now`. `queryset.exclude(work_held(...))` leaves what may run."""
    return Exists(
        WorkItem.objects.filter(job=job, object_id=OuterRef(ref)).filter(
            Q(state=S.BLOCKED) | Q(state=S.RETRYING, next_attempt_at__gt=now)
        )
    )


def work_due_again(*, job: str, now: datetime, ref: str = "pk") -> Exists:
    """Items whose back-off has passed: for a sweeper that otherwise takes only fresh work."""
    return Exists(WorkItem.objects.filter(job=job, object_id=OuterRef(ref), state=S.RETRYING, next_attempt_at__lte=now))


def work_attempt(
    item: Item,
    action: Callable[[], T],
    *,
    permanent: tuple[type[BaseException], ...] = (),
    now: datetime | None = None,
) -> T | None:
    """Run `action` for `item` unless it is blocked or backing off; record how it went.
    Returns what `action` returned, or None when it did not run or failed (recorded)."""
    now = now or timezone.now()
    found = WorkItem.objects.filter(job=item.job, object_id=item.object_id).values_list("state", "next_attempt_at")
    state, due = found.first() or (None, None)
    if state == S.BLOCKED or (state == S.RETRYING and due is not None and due > now):
        logger.info("work.held", extra={"job": item.job, "object_id": item.object_id, "state": state})
        return None
    try:
        result = action()
    except permanent as exc:
        work_failed(item, error=exc, block=True, now=now)
        return None
    except Exception as exc:
        work_failed(item, error=exc, block=False, now=now)
        return None
    if state is not None and state != S.DONE:  # it had failed: it is done now
        work_succeeded(item)
    return result


def _describe(error: BaseException) -> str:
    return (str(error) or type(error).__name__)[:4000]


def work_failed(item: Item, *, error: BaseException, block: bool, now: datetime | None = None) -> WorkItem:
    """One more failed attempt: back off, or block (a failure no retry can cure, or the
    MAX_ATTEMPTS-th in a row). In its own transaction (durable: a caller's rollback must
    not take the record with it)."""
    now = now or timezone.now()
    subject = item.subject() if callable(item.subject) else item.subject
    with transaction.atomic(durable=True):
        row = WorkItem.objects.select_for_update().filter(job=item.job, object_id=item.object_id).first()
        if row is None:
            row = WorkItem(job=item.job, object_id=item.object_id, first_failed_at=now)
        elif row.state == S.DONE:
            row.attempts, row.first_failed_at = 0, now  # a new run of failures
        row.subject, row.task, row.task_args = subject[:300], item.task, list(item.task_args)
        row.attempts += 1
        row.last_error = f"{type(error).__name__}: {_describe(error)}"[:4000]
        row.last_failed_at = now
        if block or row.attempts >= MAX_ATTEMPTS:
            row.state, row.next_attempt_at, row.blocked_at = S.BLOCKED, None, now
            row.blocked_reason = (
                _describe(error) if block else f"{row.attempts} failed attempts in a row; the last: {row.last_error}"
            )
        else:
            row.state, row.next_attempt_at = S.RETRYING, now + backoff(row.attempts)
        row.save()
    FAILURES.labels(job=item.job, outcome=row.state).inc()
    log = logger.error if row.state == S.BLOCKED else logger.warning
    log(
        "work.blocked" if row.state == S.BLOCKED else "work.failed",
        extra={"job": item.job, "object_id": item.object_id, "attempts": row.attempts, "error": row.last_error},
    )
    return row


def work_succeeded(item: Item) -> None:
    """The item's work succeeded: a record of earlier failures is marked done."""
    with transaction.atomic():
        row = (
            WorkItem.objects.select_for_update()
            .filter(job=item.job, object_id=item.object_id)
            .exclude(state=S.DONE)
            .first()
        )
        if row is not None:
            row.state, row.next_attempt_at = S.DONE, None
            row.save(update_fields=["state", "next_attempt_at"])


@transaction.atomic
def work_retry(*, item_id: int, note: str, now: datetime | None = None) -> WorkItem:
    """Staff fixed the cause: a blocked item is due again now, with a fresh count of
    attempts (one backing off is due now, its count kept), and its task is queued at once
    (else its beat job takes it up). Audited: the WorkItem's audit log names who, and
    `retry_note` says what they fixed. An item that succeeded since is left as it is."""
    if not note.strip():
        raise ValueError("say what was fixed")
    row = WorkItem.objects.select_for_update().get(pk=item_id)
    if row.state == S.DONE:
        return row
    if row.state == S.BLOCKED:
        row.attempts, row.blocked_at, row.blocked_reason = 0, None, ""
    row.state, row.next_attempt_at, row.retry_note = S.RETRYING, now or timezone.now(), note.strip()
    row.save()
    if row.task:
        send_after_commit(row.task, *row.task_args, failure_event="work.retry_enqueue_failed", item=row.pk)
    logger.info("work.retried", extra={"job": row.job, "object_id": row.object_id})
    return row


def work_retry_item(*, job: str, object_id: int, note: str) -> WorkItem | None:
    """work_retry for the item of `job` on `object_id`, if it has failed (None if not)."""
    row = WorkItem.objects.filter(job=job, object_id=object_id).exclude(state=S.DONE).first()
    return work_retry(item_id=row.pk, note=note) if row is not None else None
