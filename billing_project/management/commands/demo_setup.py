"""manage.py demo_setup — the demo data that `make run` loads at every start.

Demo data is loaded once and never changed afterwards: a restart keeps whatever staff
did since (a plan version published in the admin, a tenant's details, the admin's
password, a revoked key).
- The demo catalog (plans/fixtures/demo_catalog.yaml: an AI platform with free, pro,
  team and enterprise plans) is imported into an empty catalog only.
- The admin user, the demo tenant on the pro plan (in its trial), the demo service key
  (allowed to report every demo metric) and the demo agent key are created when missing.
Their credentials are kept in .data/demo-credentials.json (local development only; the
directory is git-ignored), so that re-runs print the same ones; a password changed or a
key revoked since is left so and dropped from the file.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing_project.api_keys import api_key_create, hash_secret
from billing_project.audit import system_actor
from billing_project.embedded import data_dir, write_private
from billing_project.models import ApiKey
from billing_project.scopes import AGENT_SCOPES, ALL_SCOPES
from plans.catalog import load_file
from plans.models import BillableMetric, Feature, Plan
from plans.selectors import live_version
from plans.services import catalog_import, catalog_validate
from subscriptions.models import Tenant
from subscriptions.selectors import live_subscription
from subscriptions.services import subscription_create, tenant_upsert

DEMO_CATALOG = Path(__file__).resolve().parents[3] / "plans" / "fixtures" / "demo_catalog.yaml"

DEMO_TENANT = "demo"
DEMO_ADMIN = "admin"


def _base32(key: bytes) -> str:
    return base64.b32encode(key).decode().rstrip("=")


class Command(BaseCommand):
    help = "Load the demo catalog, tenant, admin user and API keys once; a re-run changes nothing staff changed."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--credentials", default=None, help="where to keep the demo secrets")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            # a known admin password and keys printed in a banner belong on a developer's machine only
            raise CommandError(
                "demo_setup creates an admin user and API keys whose secrets it prints: it runs only with "
                "DEBUG=1 (make run sets it). Create real staff and keys with createsuperuser and create_api_key."
            )
        path = Path(options["credentials"] or data_dir() / "demo-credentials.json")
        creds: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        done: list[str] = []
        with system_actor(), transaction.atomic():
            if not (Plan.objects.exists() or BillableMetric.objects.exists() or Feature.objects.exists()):
                catalog_import(spec=catalog_validate(load_file(DEMO_CATALOG)))
                done.append("demo catalog imported")
            creds["admin_username"] = DEMO_ADMIN
            self._keep(creds, "admin_password", self._admin(creds.get("admin_password"), done))
            self._keep(creds, "admin_totp_key", self._authenticator(creds.get("admin_totp_key"), done))
            creds["tenant"] = DEMO_TENANT
            if not Tenant.objects.filter(external_id=DEMO_TENANT).exists():
                self._tenant(done)
            self._keep(
                creds,
                "service_key",
                self._key(
                    creds.get("service_key"),
                    done,
                    name="demo-service",
                    kind="service",
                    scopes=sorted(ALL_SCOPES),
                    metrics=sorted(BillableMetric.objects.values_list("code", flat=True)),  # every metric
                ),
            )
            self._keep(
                creds,
                "agent_key",
                self._key(creds.get("agent_key"), done, name="demo-agent", kind="agent", scopes=sorted(AGENT_SCOPES)),
            )
        write_private(path, json.dumps(creds, indent=2))
        # The secrets stay in the file (git-ignored, owner-only); make run prints them once.
        self.stdout.write(f"Demo data ready ({'; '.join(done) or 'nothing changed'}): credentials in {path}.")

    @staticmethod
    def _keep(creds: dict[str, str], name: str, secret: str | None) -> None:
        if secret is None:
            creds.pop(name, None)
        else:
            creds[name] = secret

    def _admin(self, password: str | None, done: list[str]) -> str | None:
        """The admin's password: made with the user; None when staff changed it since."""
        user_model = get_user_model()
        user = user_model.objects.filter(username=DEMO_ADMIN).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(DEMO_ADMIN, "admin@demo.example", password)
            done.append("admin user created")
            return password
        return password if password is not None and user.check_password(password) else None

    def _authenticator(self, key: str | None, done: list[str]) -> str | None:
        """The demo admin's second factor (superusers need one): a TOTP device made with the
        admin, its key kept in the credentials file (base32, for an authenticator app or
        `manage.py demo_totp`); None when staff replaced or removed it since."""
        user = get_user_model().objects.get(username=DEMO_ADMIN)
        devices = TOTPDevice.objects.filter(user=user, confirmed=True)
        if key is not None:
            return key if any(_base32(d.bin_key) == key for d in devices) else None
        if devices.exists():
            return None  # enrolled by hand: not ours to print
        device = TOTPDevice.objects.create(user=user, name="demo authenticator", confirmed=True)
        done.append("admin authenticator enrolled")
        return _base32(device.bin_key)

    def _tenant(self, done: list[str]) -> None:
        tenant, _ = tenant_upsert(
            external_id=DEMO_TENANT,
            name="Demo Co",
            billing_email="billing@demo.example",
            country="US",
            currency="USD",
        )
        done.append(f"tenant {DEMO_TENANT!r} created")
        if live_version("pro") is not None and live_subscription(tenant) is None:
            subscription_create(tenant=tenant, plan_code="pro", actor="system:demo_setup")
            done.append("subscribed to pro")

    def _key(
        self,
        secret: str | None,
        done: list[str],
        *,
        name: str,
        kind: str,
        scopes: list[str],
        metrics: list[str] | None = None,
    ) -> str | None:
        """The demo key's secret: kept while the key is live, made when the file has none;
        None when staff revoked it (a restart does not replace it)."""
        if secret:
            live = ApiKey.objects.filter(secret_hash=hash_secret(secret), revoked_at__isnull=True).exists()
            return secret if live else None
        done.append(f"{name} key created")
        return api_key_create(name=name, kind=kind, scopes=scopes, metrics=metrics or []).secret
