"""The monthly partitions of usage_usageevent (range on occurred_at, UTC months).

- `partitions_ensure`: the beat job. Makes this month's partition and the next
  USAGE_PARTITIONS_AHEAD months', and moves any event the DEFAULT partition caught (its
  month had no partition yet: the job stopped, or a clock far ahead) into its own month.
- `partitions_list`: every partition, its rows, and whether it may be detached and why not.
- `partition_detach`: takes one month out of the table, once no billing will read it again:
  nothing of that month can still be accepted, and every billing period it touches is
  closed, invoiced and past the late-usage re-pricing of its subscription. The table stays
  in the database, recorded in DetachedUsagePartition, until the operator archives it.

Idempotency keys live apart (UsageEventKey) and are never detached: a retry of an event
whose month was detached is still found a duplicate.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Max

from billing_project.errors import Conflict, InvalidRequest, NotFound
from subscriptions.models import BillingPeriod

from .ingestion import month_after, month_start, oldest_accepted
from .models import DetachedUsagePartition

log = logging.getLogger(__name__)

TABLE = "usage_usageevent"
DEFAULT = "usage_usageevent_default"
LOCK = 7_201_717  # pg_advisory_xact_lock key: one partition change at a time
NAME = re.compile(r"^usage_usageevent_y(\d{4})m(\d{2})$")
# the late-usage re-pricing looks back from a subscription's previous draft less an hour
# (invoicing/drafting.py late_usage_lines)
DRAFT_MARGIN = timedelta(hours=1)
# a month is detached a day after its last event could be accepted: a host whose clock runs
# behind the detaching one's may still accept an event of it until then
DETACH_MARGIN = timedelta(days=1)


def partition_name(first: datetime) -> str:
    return f"{TABLE}_y{first.year:04d}m{first.month:02d}"


def parse_month(text: str) -> datetime:
    """'2026-11' → 2026-11-01T00:00Z; anything else is an invalid_request."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1:
        raise InvalidRequest(f"A month is written YYYY-MM, not {text!r}.", code="validation_error")
    return datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)


@dataclass(frozen=True)
class Partition:
    table: str
    month: datetime | None  # None: the DEFAULT partition
    events: int
    detachable: bool = False
    why_not: str = ""


def _attached(cursor: CursorWrapper) -> list[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass ORDER BY c.relname",
        [TABLE],
    )
    return [name for (name,) in cursor.fetchall()]


def _default_months(cursor: CursorWrapper) -> list[datetime]:
    cursor.execute(
        f"SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') FROM {DEFAULT}"  # noqa: S608
    )
    return sorted(m.replace(tzinfo=UTC) for (m,) in cursor.fetchall())


class PartitionsBlocked(Exception):
    """Months whose partition could not be made: a detached month's table, not yet dropped,
    holds the name. Everything else was made and moved; these months' events stay in the
    DEFAULT partition until the table is archived and dropped."""


def partitions_ensure(*, now: datetime) -> list[str]:
    """This month's partition and the next USAGE_PARTITIONS_AHEAD months'; events the
    DEFAULT partition holds moved into their months. Returns the partitions made. Safe to
    rerun and to race (one at a time, under an advisory lock). A month a detached table
    still holds the name of is left out, the rest made, and then PartitionsBlocked raised
    (after commit: the beat job records a task failure)."""
    made, blocked = _ensure(now=now)
    if made:
        log.info("usage partitions made: %s", ", ".join(made))
    if blocked:
        raise PartitionsBlocked(
            f"cannot make {', '.join(blocked)}: a table detached before still has that name (and its month has "
            "events waiting in the default partition, or is due). Archive it, DROP TABLE it, and run "
            "usage_partitions ensure again."
        )
    return made


@transaction.atomic
def _ensure(*, now: datetime) -> tuple[list[str], list[str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
        wanted = [month_start(now)]
        for _ in range(settings.USAGE_PARTITIONS_AHEAD):
            wanted.append(month_after(wanted[-1]))
        held = _default_months(cursor)
        months = [m for m in sorted(set(wanted) | set(held)) if not _exists(cursor, m)]
        blocked = [m for m in months if _name_taken(cursor, m)]
        todo = [m for m in months if m not in blocked]
        if set(held) - set(blocked):
            _rehome(cursor, todo)  # rows of a blocked month go back into the new default
        else:
            for first in todo:
                _create(cursor, first)
    return [partition_name(m) for m in todo], [partition_name(m) for m in blocked]


def _name_taken(cursor: CursorWrapper, first: datetime) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [partition_name(first)])
    return bool(cursor.fetchone()[0])


def _exists(cursor: CursorWrapper, first: datetime) -> bool:
    """The month's partition is attached (a detached month's table left behind is not one)."""
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s) AND inhparent = %s::regclass)",
        [partition_name(first), TABLE],
    )
    return bool(cursor.fetchone()[0])


def _create(cursor: CursorWrapper, first: datetime) -> None:
    cursor.execute("SELECT billing_usage_partition_create(%s)", [first])


def _rehome(cursor: CursorWrapper, months: list[datetime]) -> None:
    """A partition cannot be made for a month the DEFAULT partition holds rows of, so the
    DEFAULT partition is swapped for an empty one, the months made, and its rows inserted
    again through the parent: same ids and content, each now in its month. One transaction
    under an ACCESS EXCLUSIVE lock: ingestion waits for it, and nothing is lost or doubled."""
    cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
    # rows the caller's transaction wrote there still owe their deferred foreign-key checks,
    # and a table with pending checks cannot be dropped: run them now (set back at the end)
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {DEFAULT}")
    cursor.execute(f"ALTER TABLE {DEFAULT} RENAME TO {DEFAULT}_moving")
    cursor.execute(
        f"ALTER TRIGGER {DEFAULT}_append_only_truncate ON {DEFAULT}_moving RENAME TO {DEFAULT}_moving_truncate"
    )
    cursor.execute(f"CREATE TABLE {DEFAULT} PARTITION OF {TABLE} DEFAULT")
    cursor.execute(
        f"CREATE TRIGGER {DEFAULT}_append_only_truncate BEFORE TRUNCATE ON {DEFAULT}"
        " FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change()"
    )
    for first in months:
        _create(cursor, first)
    cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {DEFAULT}_moving ORDER BY id")  # noqa: S608
    moved = cursor.rowcount
    cursor.execute(f"DROP TABLE {DEFAULT}_moving")
    cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's foreign keys are initially deferred
    log.warning("usage partitions: moved %s events out of the default partition", moved)


def default_partition_events(limit: int = 100_000) -> int:
    """How many events the DEFAULT partition holds (counted up to `limit`)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM {DEFAULT} LIMIT %s) AS d", [limit])  # noqa: S608
        return int(cursor.fetchone()[0])


def months_ahead(*, now: datetime) -> int:
    """Whole months after the current one that already have their partition (0 when the
    next month would fall into the DEFAULT partition); -1 when this month has none."""
    with connection.cursor() as cursor:
        first = month_start(now)
        if not _exists(cursor, first):
            return -1
        ahead = 0
        while ahead < 120 and _exists(cursor, first := month_after(first)):
            ahead += 1
        return ahead


def partitions_list(*, now: datetime) -> list[Partition]:
    with connection.cursor() as cursor:
        names = _attached(cursor)
        out = []
        for name in names:
            cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608  (a name from the catalog)
            events = int(cursor.fetchone()[0])
            match = NAME.match(name)
            if match is None:
                out.append(Partition(name, None, events, why_not="the default partition is never detached"))
                continue
            first = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
            why_not = _why_not_detachable(first, now=now)
            out.append(Partition(name, first, events, detachable=not why_not, why_not=why_not))
        return out


def _why_not_detachable(first: datetime, *, now: datetime) -> str:
    """'' when no billing will read this month's events again; else why it still may."""
    end = month_after(first)
    if end > oldest_accepted(now) - DETACH_MARGIN:
        until = end + timedelta(days=settings.LATE_USAGE_WINDOW_DAYS)
        return (
            f"events of this month are accepted until {until:%Y-%m-%d %H:%M} UTC (LATE_USAGE_WINDOW_DAYS); "
            f"it may be detached a day later"
        )
    # on the service's clock, as late_usage_lines reads its subscription's previous invoice
    periods = BillingPeriod.objects.filter(start__lt=end, end__gt=first).annotate(
        last_drafted=Max("subscription__invoices__created_at")
    )
    open_period = periods.filter(closed=False).first()
    if open_period is not None:
        return f"billing period {open_period.pk} is still open"
    uninvoiced = periods.filter(kind=BillingPeriod.Kind.PAID, invoice__isnull=True).first()
    if uninvoiced is not None:
        return f"billing period {uninvoiced.pk} is closed but not invoiced"
    window = timedelta(days=settings.LATE_USAGE_WINDOW_DAYS)
    for pk, period_end, last_drafted, status, ended_at in periods.filter(kind=BillingPeriod.Kind.PAID).values_list(
        "pk", "end", "last_drafted", "subscription__status", "subscription__ended_at"
    ):
        # the next draft of its subscription re-prices periods ending after (its previous
        # draft − an hour − the window); an ended one is re-priced until the window has
        # passed since it ended (invoicing/selectors.py late_usage_due)
        repriced_until = period_end + window + DRAFT_MARGIN
        past_drafts = last_drafted is not None and last_drafted > repriced_until
        past_end = status in ("canceled", "ended") and ended_at is not None and ended_at < now - window
        if not (past_drafts or past_end):
            return f"billing period {pk} may still be re-priced for late usage"
    return ""


@transaction.atomic
def partition_detach(*, month: datetime, operator: str, now: datetime) -> DetachedUsagePartition:
    """Take `month` out of usage_usageevent, refused (conflict) while billing may still read it."""
    first = month_start(month)
    name = partition_name(first)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
        if name not in _attached(cursor):
            earlier = DetachedUsagePartition.objects.filter(table=name).order_by("-detached_at").first()
            if earlier is not None:
                raise Conflict(
                    f"{first:%Y-%m} was detached already, on {earlier.detached_at:%Y-%m-%d %H:%M} UTC by "
                    f"{earlier.detached_by} ({earlier.events} events).",
                    code="partition_in_use",
                    details={"table": name},
                )
            raise NotFound(f"{name} is not a partition of {TABLE}.", code="not_found", details={"table": name})
        why_not = _why_not_detachable(first, now=now)
        if why_not:
            raise Conflict(
                f"{first:%Y-%m} cannot be detached: {why_not}.",
                code="partition_in_use",
                details={"table": name, "reason": why_not},
            )
        cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608
        events = int(cursor.fetchone()[0])
        cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
        # PostgreSQL drops the row guard a partition inherits when it is detached: the table
        # is now the only copy of these events until archived, so it gets one of its own
        cursor.execute(
            f"CREATE TRIGGER {name}_append_only BEFORE UPDATE OR DELETE ON {name}"
            " FOR EACH ROW EXECUTE FUNCTION billing_refuse_change()"
        )
    log.warning("usage partition %s detached (%s events) by %s", name, events, operator)
    return DetachedUsagePartition.objects.create(table=name, month=first, events=events, detached_by=operator)
