"""python manage.py demo_setup — the demo data that `make run` loads (safe to re-run).

Imports the demo catalog (plans/fixtures/demo_catalog.yaml: an AI platform with
free, pro, team and enterprise plans), creates an admin user, a demo tenant on the
pro plan (in its trial), a
demo service key (allowed to report every demo metric) and a demo agent key,
and writes their credentials to .data/demo-credentials.json (local development
only; the directory is git-ignored) so that re-runs print the same ones.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from billing_project.api_keys import api_key_create, api_key_revoke, hash_secret
from billing_project.audit import system_actor
from billing_project.embedded import data_dir
from billing_project.models import ApiKey
from billing_project.scopes import AGENT_SCOPES, ALL_SCOPES
from plans.catalog import load_file
from plans.models import BillableMetric
from plans.services import catalog_import, catalog_validate
from subscriptions.selectors import live_subscription
from subscriptions.services import subscription_create, tenant_upsert

DEMO_CATALOG = Path(__file__).resolve().parents[3] / "plans" / "fixtures" / "demo_catalog.yaml"

DEMO_TENANT = "demo"
DEMO_ADMIN = "admin"


class Command(BaseCommand):
    help = "Load the demo tenant, admin user and API keys (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--credentials", default=None, help="where to keep the demo secrets")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["credentials"] or data_dir() / "demo-credentials.json")
        creds: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        with system_actor(), transaction.atomic():
            catalog_import(spec=catalog_validate(load_file(DEMO_CATALOG)))
            creds["admin_username"] = DEMO_ADMIN
            creds["admin_password"] = self._admin(creds.get("admin_password"))
            tenant, _ = tenant_upsert(
                external_id=DEMO_TENANT,
                name="Demo Co",
                billing_email="billing@demo.example",
                country="US",
                currency="USD",
            )
            creds["tenant"] = tenant.external_id
            if live_subscription(tenant) is None:
                subscription_create(tenant=tenant, plan_code="pro", actor="system:demo_setup")
            creds["service_key"] = self._key(
                creds.get("service_key"),
                name="demo-service",
                kind="service",
                scopes=sorted(ALL_SCOPES),
                metrics=sorted(BillableMetric.objects.values_list("code", flat=True)),  # may report every metric
            )
            creds["agent_key"] = self._key(
                creds.get("agent_key"), name="demo-agent", kind="agent", scopes=sorted(AGENT_SCOPES)
            )
        path.write_text(json.dumps(creds, indent=2))
        path.chmod(0o600)
        # The secrets stay in the file (git-ignored, owner-only); make run prints them once.
        self.stdout.write(
            f"Demo data ready: catalog, tenant {creds['tenant']!r}, admin user, "
            f"service and agent keys (credentials in {path})."
        )

    def _admin(self, password: str | None) -> str:
        user_model = get_user_model()
        user = user_model.objects.filter(username=DEMO_ADMIN).first()
        if user is None or password is None or not user.check_password(password):
            password = password or secrets.token_urlsafe(12)
            if user is None:
                user_model.objects.create_superuser(DEMO_ADMIN, "admin@demo.example", password)
            else:
                user.set_password(password)
                user.save()
        return password

    def _key(
        self, secret: str | None, *, name: str, kind: str, scopes: list[str], metrics: list[str] | None = None
    ) -> str:
        existing = ApiKey.objects.filter(secret_hash=hash_secret(secret or ""), revoked_at__isnull=True).first()
        if secret and existing is not None and existing.metrics == sorted(metrics or []):
            return secret
        for stale in ApiKey.objects.filter(name=name, revoked_at__isnull=True):
            api_key_revoke(key=stale, reason="replaced by demo_setup")
        return api_key_create(name=name, kind=kind, scopes=scopes, metrics=metrics or []).secret
