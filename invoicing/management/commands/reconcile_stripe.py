"""Reconcile with Stripe now: what the daily beat job does, with its outcome printed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from invoicing.providers import ProviderError
from invoicing.reconciliation import reconciliation_kinds, stripe_reconcile


class Command(BaseCommand):
    help = (
        "Compare our invoices, payments and refunds with Stripe's now and write today's report "
        "(replacing an earlier one of today); exit 1 when Stripe cannot be reached or refuses."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.STRIPE_COLLECTION_ENABLED:
            self.stdout.write(
                "skipped: collection at Stripe is off (STRIPE_COLLECTION_ENABLED): nothing at Stripe to compare with"
            )
            return
        try:
            report = stripe_reconcile()
        except ProviderError as exc:
            raise CommandError(f"no report: Stripe could not be reached or refused ({exc})") from exc
        kinds = reconciliation_kinds(report)
        found = sum(kinds.values())
        c = report.compared
        self.stdout.write(
            f"{report.day.isoformat()}: {'everything matched' if not found else f'{found} mismatches'} "
            f"({c.get('invoices', 0)} invoices, {c.get('paid_invoices', 0)} paid invoices' payments, "
            f"{c.get('charges', 0)} charges, {c.get('refunds', 0)} refunds compared)"
        )
        for kind, count in kinds.items():
            self.stdout.write(f"  {count} {kind}")
        self.stdout.write(f"report: /admin/console/reconciliation/?day={report.day.isoformat()}")
