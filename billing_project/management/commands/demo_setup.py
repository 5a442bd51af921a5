"""manage.py demo_setup — the demo data that `make run` loads at every start.

Demo data is loaded once and never changed afterwards: a restart keeps whatever staff
did since (a plan version published in the admin, a tenant's details, the admin's
password, a revoked key).
- The demo catalog (plans/fixtures/demo_catalog.yaml: an AI platform with free, pro,
  team and enterprise plans) is imported into an empty catalog only.
- The admin user (a superuser) and an approver (`finance-approver`, the second pair of
  eyes), each with a TOTP authenticator; the demo tenant on the pro plan (in its trial), the demo service key
  (allowed to report every demo metric) and the demo agent key are created when missing.
- So is a customer with a history, for the finance console: `acme-demo` (Acme Demo GmbH,
  DE, USD), on the team plan since two months ago, its usage reported by the demo service
  key in the periods since, its periods rolled and closed as beat would have: two
  invoices, the first marked paid by staff (a bank transfer: the paid invoice to refund),
  the second open.
Their credentials are kept in .data/demo-credentials.json (local development only; the
directory is git-ignored), so that re-runs print the same ones; a password changed or a
key revoked since is left so and dropped from the file.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing_project.api_keys import ApiPrincipal, api_key_create, hash_secret
from billing_project.audit import system_actor
from billing_project.embedded import data_dir, write_private
from billing_project.models import ApiKey
from billing_project.scopes import AGENT_SCOPES, ALL_SCOPES
from billing_project.staff import FINANCE_APPROVER
from invoicing.services import invoice_close_periods, invoice_mark_paid
from plans.catalog import load_file
from plans.models import BillableMetric, Feature, Plan
from plans.selectors import live_version
from plans.services import catalog_import, catalog_validate
from subscriptions.models import Subscription, Tenant
from subscriptions.selectors import live_subscription
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
from usage.ingestion import usage_record
from usage.partitions import partitions_ensure

DEMO_CATALOG = Path(__file__).resolve().parents[3] / "plans" / "fixtures" / "demo_catalog.yaml"

DEMO_TENANT = "demo"
DEMO_CUSTOMER = "acme-demo"  # the tenant with invoices, one of them paid (to refund)
DEMO_ADMIN = "admin"
DEMO_APPROVER = "approver"  # finance-approver: the second pair of eyes on the admin's big refunds
ACTOR = "system:demo_setup"


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
            self._keep(creds, "admin_totp_key", self._authenticator(DEMO_ADMIN, creds.get("admin_totp_key"), done))
            creds["approver_username"] = DEMO_APPROVER
            self._keep(creds, "approver_password", self._approver(creds.get("approver_password"), done))
            self._keep(
                creds, "approver_totp_key", self._authenticator(DEMO_APPROVER, creds.get("approver_totp_key"), done)
            )
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
            if not Tenant.objects.filter(external_id=DEMO_CUSTOMER).exists():
                self._customer(done)
        # the demo's past months get their partitions now rather than at beat's first hourly run,
        # so its history does not wait in the default partition (and raise an alert) meanwhile
        made = partitions_ensure(now=timezone.now())
        if made:
            done.append(f"usage partitions {', '.join(made)}")
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

    def _approver(self, password: str | None, done: list[str]) -> str | None:
        """A finance-approver, so that a request above the thresholds made as the admin can be
        decided by someone else, as four eyes require; None when staff changed the password."""
        user_model = get_user_model()
        user = user_model.objects.filter(username=DEMO_APPROVER).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = user_model.objects.create_user(
                DEMO_APPROVER, "approver@demo.example", password, is_staff=True, first_name="Approver"
            )
            user.groups.add(Group.objects.get(name=FINANCE_APPROVER))
            done.append("approver user created")
            return password
        return password if password is not None and user.check_password(password) else None

    def _authenticator(self, username: str, key: str | None, done: list[str]) -> str | None:
        """A demo staff member's second factor (superusers and finance-approvers need one): a
        TOTP device made with the user, its key kept in the credentials file (base32, for an
        authenticator app or `manage.py demo_totp`); None when staff replaced or removed it since."""
        user = get_user_model().objects.get(username=username)
        devices = TOTPDevice.objects.filter(user=user, confirmed=True)
        if key is not None:
            return key if any(_base32(d.bin_key) == key for d in devices) else None
        if devices.exists():
            return None  # enrolled by hand: not ours to print
        device = TOTPDevice.objects.create(user=user, name="demo authenticator", confirmed=True)
        done.append(f"{username} authenticator enrolled")
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
            subscription_create(tenant=tenant, plan_code="pro", actor=ACTOR)
            done.append("subscribed to pro")

    def _customer(self, done: list[str]) -> None:
        """Acme Demo GmbH, as if it had been billed for two months: subscribed to team (its
        14-day trial, then a month) two months ago, its usage reported as it happened,
        then its periods rolled and closed as beat would have done meanwhile (the same
        services, for this subscription only). Collection is off with the demo's placeholder
        Stripe key, so the invoices stay ours: the first was paid by bank transfer and
        marked paid by staff, the second is open."""
        tenant, _ = tenant_upsert(
            external_id=DEMO_CUSTOMER,
            name="Acme Demo GmbH",
            billing_email="billing@acme-demo.example",
            country="DE",
            currency="USD",
        )
        done.append(f"tenant {DEMO_CUSTOMER!r} created")
        if live_version("team") is None:
            return  # staff's own catalog: no team plan to bill the history on
        now = timezone.now()
        start = (now - timedelta(days=60)).replace(minute=0, second=0, microsecond=0)
        sub = subscription_create(tenant=tenant, plan_code="team", actor=ACTOR, at=start)
        paid_from = sub.trial_end or start  # team has a trial; the first paid month starts at its end
        # reported as it happened (before each roll), all within LATE_USAGE_WINDOW_DAYS
        self._usage(
            [(start + timedelta(days=d), "ai_tokens", "650000") for d in (2, 9)]
            + [
                (paid_from + timedelta(days=d, hours=h), "ai_tokens", "1050000")
                for d, h in ((1, 3), (8, 5), (15, 2), (22, 7))
            ]
            + [
                (paid_from + timedelta(days=3), "storage_gb", "80"),
                (paid_from + timedelta(days=20), "storage_gb", "120"),
            ]
            + [(paid_from + timedelta(days=2, hours=n), "active_users", f"user-{n:02}") for n in range(1, 13)]
        )
        # each boundary closed when beat would have (past the grace window), so the history
        # reads as it happened: issued at the trial's end, paid by bank transfer days later
        grace = timedelta(minutes=settings.INVOICE_GRACE_MINUTES + 1)
        subscription_roll(subscription_id=sub.pk, at=paid_from + grace)
        first = invoice_close_periods(subscription_id=sub.pk, now=paid_from + grace)
        if first:
            invoice_mark_paid(invoice_id=first[0].pk, actor=ACTOR, at=paid_from + timedelta(days=4, hours=3))
        subscription_roll(subscription_id=sub.pk, at=now)
        sub = Subscription.objects.get(pk=sub.pk)
        self._usage(
            [
                (at, metric, value)
                for at, metric, value in (
                    (sub.current_period_start + timedelta(days=1), "ai_tokens", "900000"),
                    (sub.current_period_start + timedelta(days=2), "active_users", "user-01"),
                    (sub.current_period_start + timedelta(days=2, hours=1), "active_users", "user-02"),
                    (sub.current_period_start + timedelta(days=3), "storage_gb", "125"),
                )
                if at < now
            ],
            offset=100,
        )
        second = invoice_close_periods(subscription_id=sub.pk, now=min(sub.current_period_start + grace, now))
        done.append(f"{len(first) + len(second)} invoice(s) for {DEMO_CUSTOMER!r}, the first paid by bank transfer")

    @staticmethod
    def _usage(events: list[tuple[datetime, str, str]], offset: int = 0) -> None:
        """Usage events of the demo customer, through ingestion, reported by the demo service
        key (none when staff revoked it). A unique_count metric's value is its user."""
        key = ApiKey.objects.filter(name="demo-service", revoked_at__isnull=True).first()
        if key is None or not events:
            return
        batch = [
            {
                "tenant": DEMO_CUSTOMER,
                "metric": metric,
                "idempotency_key": f"demo-history-{offset + n}",
                "occurred_at": at.isoformat(),
                **(
                    {"quantity": "1", "properties": {"user_ref": value}}
                    if metric == "active_users"
                    else {"quantity": value, "properties": {"bucket": "main"} if metric == "storage_gb" else {}}
                ),
            }
            for n, (at, metric, value) in enumerate(events)
        ]
        results = usage_record(principal=ApiPrincipal.from_key(key), events=batch)
        refused = [r.error.code for r in results if r.error is not None]
        if refused:
            raise CommandError(f"demo usage refused: {refused}")

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
