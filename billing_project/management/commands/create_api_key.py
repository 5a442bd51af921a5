"""Create an API key; prints the secret once, as the last line of output.

python manage.py create_api_key --name NAME --kind service|agent --scopes s1,s2
                                [--metrics m1,m2] [--tenant T] [--rate N]
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_project.api_keys import api_key_create
from billing_project.audit import system_actor
from billing_project.scopes import ALL_SCOPES


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class Command(BaseCommand):
    help = "Create an API key for a service or an AI agent; the secret is printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", required=True, choices=["service", "agent"])
        parser.add_argument("--scopes", default="", help=f"comma-separated: {', '.join(ALL_SCOPES)}")
        parser.add_argument("--metrics", default="", help="comma-separated metric codes (usage:write)")
        parser.add_argument("--tenant", default=None, help="bind the key to this tenant's external id")
        parser.add_argument("--rate", type=int, default=None, help="requests per minute (default: service-wide)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with system_actor():
                created = api_key_create(
                    name=options["name"],
                    kind=options["kind"],
                    scopes=_csv(options["scopes"]),
                    metrics=_csv(options["metrics"]),
                    tenant=options["tenant"],
                    rate_limit_per_minute=options["rate"],
                )
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            raise CommandError(problems) from exc
        key = created.key
        self._warn_about_unknown_names(key.tenant, key.metrics)
        self.stdout.write(
            f"Created {key.kind} key {key.prefix} '{key.name}' "
            f"scopes=[{', '.join(key.scopes)}] metrics=[{', '.join(key.metrics)}] "
            f"tenant={key.tenant or '*'}. The secret below is shown once:"
        )
        self.stdout.write(created.secret)

    def _warn_about_unknown_names(self, tenant: str | None, metrics: list[str]) -> None:
        # Looked up through the app registry: plumbing does not import the apps.
        # Only warnings: a key may be made before its tenant or metric exists.
        if tenant and not apps.get_model("subscriptions", "Tenant").objects.filter(external_id=tenant).exists():
            self.stderr.write(f"warning: no tenant {tenant!r} exists yet; the key answers 404 until it does")
        known = set(apps.get_model("plans", "BillableMetric").objects.values_list("code", flat=True))
        unknown = sorted(set(metrics) - known)
        if unknown:
            self.stderr.write(f"warning: unknown metric(s) {', '.join(unknown)}: not in the catalog yet")
