"""The monthly partitions of usage events: list them, make those due, detach an old month."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billing_project.errors import BillingError
from usage.partitions import (
    PartitionsBlocked,
    default_partition_events,
    parse_month,
    partition_detach,
    partitions_ensure,
    partitions_list,
)


class Command(BaseCommand):
    help = (
        "usage_partitions [list]: each month's partition of usage events, its events, and whether it may be "
        "detached. ensure: make this month's and the next USAGE_PARTITIONS_AHEAD months' partitions and move "
        "events out of the default partition (what the hourly beat job does). detach YYYY-MM: take that month "
        "out of the table once its periods are invoiced and past re-pricing; the table stays, to be archived."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", nargs="?", choices=["list", "ensure", "detach"], default="list")
        parser.add_argument("month", nargs="?", help="detach: the month, YYYY-MM")
        parser.add_argument("--operator", default="", help="detach: who is detaching (default: the OS user)")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        action = options["action"]
        if action == "ensure":
            waiting = default_partition_events()
            try:
                made = partitions_ensure(now=now)
            except PartitionsBlocked as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"made: {', '.join(made)}" if made else "every partition due exists")
            if waiting:
                self.stdout.write(f"moved {waiting} events out of the default partition into their months")
            return
        if action == "detach":
            if not options["month"]:
                raise CommandError("detach needs the month: usage_partitions detach YYYY-MM")
            try:
                detached = partition_detach(
                    month=parse_month(options["month"]), operator=options["operator"] or getpass.getuser(), now=now
                )
            except BillingError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(
                f"detached {detached.table} ({detached.events} events). It is still in the database: archive it "
                f"(pg_dump -Fc -t {detached.table}), then DROP TABLE {detached.table}. Its idempotency keys stay."
            )
            return
        for p in partitions_list(now=now):
            month = f"{p.month:%Y-%m}" if p.month else "default"
            state = "detachable" if p.detachable else p.why_not
            self.stdout.write(f"{month:8} {p.table:32} {p.events:>10} events  {state}")
