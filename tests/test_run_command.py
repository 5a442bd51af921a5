"""README command 1 (`make run` → billing_project.devrun) and the embedded engines, for real."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.livedb import fresh_database

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def test_embedded_engines_start_serve_and_stop(tmp_path):
    env = {k: v for k, v in base_env().items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env["BILLING_DATA_DIR"] = str(tmp_path)
    probe = (
        "import os, psycopg, redis;"
        "c = psycopg.connect(os.environ['DATABASE_URL']);"
        "print(c.execute('select version()').fetchone()[0]);"
        "print(redis.Redis.from_url(os.environ['REDIS_URL']).ping());"
        "print(os.environ['REDIS_URL'])"
    )
    result = subprocess.run(
        [sys.executable, "-m", "billing_project.embedded", "exec", "--", sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    version, pong, redis_url = result.stdout.strip().splitlines()[-3:]
    assert version.startswith("PostgreSQL 16")
    assert pong == "True"
    # whoever started the engines stopped them
    assert not list((tmp_path / "pg").glob("postmaster.pid"))
    socket_path = redis_url.removeprefix("unix://").split("?")[0]
    assert not os.path.exists(socket_path) or not _redis_alive(socket_path)


def _redis_alive(path: str) -> bool:
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=path).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def run_database(django_db_blocker) -> str:
    """A fresh database, as a new user's first `make run` gets one: demo_setup always finds
    no admin, tenant or keys of an earlier run (whose credentials file went with its tmp_path)."""
    return fresh_database(django_db_blocker, "runcheck")


def test_make_run_brings_up_web_worker_and_beat_and_ctrl_c_stops_them(run_database, tmp_path):
    port = free_port()
    env = base_env()
    env.update(
        DATABASE_URL=run_database,
        PORT=str(port),
        BILLING_DATA_DIR=str(tmp_path),
        REDIS_KEY_PREFIX="billing-runcheck",
        CELERY_QUEUE="billing-runcheck",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "billing_project.devrun"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        banner = "".join(output)
        assert "Billing service is up." in banner, banner
        base = f"http://127.0.0.1:{port}"
        assert http(f"{base}/healthz")[0] == 200
        # ready once beat has sent its heartbeat and the worker has run it (at start-up)
        deadline_ready = time.monotonic() + 60
        status, body = http(f"{base}/readyz")
        while status != 200 and time.monotonic() < deadline_ready:
            time.sleep(0.5)
            status, body = http(f"{base}/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"]["worker"]["heartbeat_age_s"] is not None
        assert http(f"{base}/api/docs/")[0] == 200
        assert http(f"{base}/api/schema/")[0] == 200
        assert http(f"{base}/admin/login/")[0] == 200
        creds = json.loads((tmp_path / "demo-credentials.json").read_text())
        assert creds["admin_password"] in banner
        assert creds["admin_totp_key"] in banner
        assert creds["approver_password"] in banner
        assert creds["approver_totp_key"] in banner
        assert creds["service_key"] in banner
        assert creds["agent_key"] in banner
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "gunicorn" in names
        assert "worker" in names
        assert "beat" in names
    finally:
        # Ctrl-C
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        output.append(rest or "")
    assert proc.returncode == 0, "".join(output)
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"still running after Ctrl-C: {alive}"
    assert re.search(r"stopped\.", "".join(output))


# ------------------------------------------------------------------ demo data: loaded once
def demo_setup(credentials: Path) -> dict[str, str]:
    from django.core.management import call_command
    from django.test import override_settings

    with override_settings(DEBUG=True):  # demo_setup runs only on a developer's machine
        call_command("demo_setup", "--credentials", str(credentials), stdout=open(os.devnull, "w"))  # noqa: SIM115
    return dict(json.loads(credentials.read_text()))


@pytest.mark.django_db
def test_a_restart_keeps_what_staff_changed_in_the_demo_data(tmp_path, clock):
    """`make run` runs demo_setup at every start: it loads the demo once, into an empty
    catalog, and never undoes a change made since (pro v2 at 59.00 stayed live)."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model

    from billing_project.api_keys import api_key_revoke
    from billing_project.models import ApiKey
    from invoicing.models import Invoice
    from invoicing.services import invoice_void
    from plans.models import PlanVersion
    from plans.selectors import live_version
    from plans.services import plan_version_copy_to_draft, plan_version_publish
    from subscriptions.models import Subscription, Tenant

    credentials = tmp_path / "demo-credentials.json"
    first = demo_setup(credentials)
    pro = live_version("pro")
    assert pro is not None
    assert (pro.version, pro.base_fee) == (1, Decimal("49.00"))
    assert Subscription.objects.filter(tenant__external_id="demo", status="trialing").count() == 1
    assert set(first) == {
        "admin_username",
        "admin_password",
        "admin_totp_key",
        "approver_username",
        "approver_password",
        "approver_totp_key",
        "tenant",
        "service_key",
        "agent_key",
    }

    # What finance and staff did in the admin since:
    draft = plan_version_copy_to_draft(version=pro)
    PlanVersion.objects.filter(pk=draft.pk).update(base_fee=Decimal("59.00"))
    plan_version_publish(version=draft)
    Tenant.objects.filter(external_id="demo").update(name="Demo Corporation")
    Subscription.objects.filter(tenant__external_id="demo").update(status="canceled")
    Tenant.objects.filter(external_id="acme-demo").update(name="Acme AG")
    open_invoice = Invoice.objects.get(tenant__external_id="acme-demo", status="open")
    invoice_void(invoice_id=open_invoice.pk, reason="sent in error", actor="staff:ana")
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("a-password-staff-chose-1")
    admin.save()
    api_key_revoke(key=ApiKey.objects.get(name="demo-agent"), reason="not needed")

    again = demo_setup(credentials)
    pro = live_version("pro")
    assert pro is not None
    assert (pro.version, pro.base_fee) == (2, Decimal("59.00"))
    assert PlanVersion.objects.filter(plan__code="pro").count() == 2
    assert Tenant.objects.get(external_id="demo").name == "Demo Corporation"
    assert not Subscription.objects.filter(tenant__external_id="demo").exclude(status="canceled").exists()
    assert Tenant.objects.get(external_id="acme-demo").name == "Acme AG"
    assert list(Invoice.objects.filter(tenant__external_id="acme-demo").values_list("status", flat=True)) == [
        "void",
        "paid",
    ]  # newest first: nothing closed again, nothing reopened
    admin.refresh_from_db()
    assert admin.check_password("a-password-staff-chose-1")
    assert "admin_password" not in again  # the banner says it changed, not a stale one
    assert "agent_key" not in again
    assert ApiKey.objects.filter(name="demo-agent", revoked_at__isnull=True).count() == 0
    assert again["service_key"] == first["service_key"]
    assert ApiKey.objects.filter(name="demo-service").count() == 1


@pytest.mark.django_db
def test_the_demo_has_a_customer_with_a_paid_invoice_to_refund_and_an_open_one(tmp_path, clock):
    """acme-demo, on team since two months ago: its trial, a paid month, the month running;
    an invoice per boundary closed as beat would have, the first marked paid by staff (a bank
    transfer, collection off with the demo's placeholder key), so finance can refund it."""
    from datetime import timedelta
    from decimal import Decimal

    from invoicing.models import Invoice
    from invoicing.services import refund_method, refundable
    from subscriptions.models import Subscription, Tenant
    from tests.clock import NOW
    from usage.models import UsageEvent

    demo_setup(tmp_path / "creds.json")

    tenant = Tenant.objects.get(external_id="acme-demo")
    assert (tenant.name, tenant.country, tenant.currency) == ("Acme Demo GmbH", "DE", "USD")
    sub = Subscription.objects.get(tenant=tenant)
    assert (sub.plan_version.plan.code, sub.status) == ("team", "active")
    assert sub.started_at == (NOW - timedelta(days=60)).replace(minute=0, second=0, microsecond=0)
    assert sub.current_period_start < NOW < sub.current_period_end
    events = UsageEvent.objects.filter(tenant=tenant)
    assert events.count() > 20
    assert not events.filter(late=True).exists()  # reported as it happened

    first, second = Invoice.objects.filter(tenant=tenant).order_by("number")
    assert (first.status, second.status) == ("paid", "open")
    # closed when beat would have: the history reads in order, nothing issued today
    assert first.finalized_at is not None
    assert first.paid_at is not None
    assert second.finalized_at is not None
    assert sub.started_at < first.finalized_at < first.paid_at < second.finalized_at < NOW
    assert second.finalized_at == sub.current_period_start + timedelta(minutes=61)
    assert (first.stripe_invoice_id, second.stripe_invoice_id) == (None, None)  # never at Stripe
    assert [line.kind for line in first.lines.all()] == ["base_fee"]  # the trial's usage is free
    assert first.total == Decimal("199.00")
    usage = {line.metric: line.amount for line in second.lines.filter(kind="usage")}
    assert usage == {
        "ai_tokens": Decimal("75.60"),  # 4.2M tokens at 0.000018
        "active_users": Decimal("24.00"),  # 12 users, 10 free, then 12.00
        "storage_gb": Decimal("9.60"),  # 120 GB at most, at 0.08
        "api_calls": Decimal(0),  # within the 100,000 free
    }
    assert second.lines.filter(kind="base_fee").count() == 1  # the month running, in advance
    assert second.total == Decimal("199.00") + Decimal("75.60") + Decimal("24.00") + Decimal("9.60")
    assert refund_method(invoice=first) == "manual"  # paid out by staff when refunded
    assert refundable(invoice=first) == Decimal("199.00")


@pytest.mark.django_db
def test_the_demo_catalog_goes_only_into_an_empty_catalog(tmp_path):
    from plans.models import Plan
    from plans.services import catalog_import, catalog_validate
    from tests.plans.factories import demo

    spec = demo()
    spec["plans"] = [p for p in spec["plans"] if p["code"] == "free"]
    catalog_import(spec=catalog_validate(spec))  # the catalog staff keep
    demo_setup(tmp_path / "creds.json")
    assert list(Plan.objects.values_list("code", flat=True)) == ["free"]


@pytest.mark.django_db
def test_the_demo_has_an_approver_for_the_admins_requests_above_the_thresholds(tmp_path, clock):
    """Four eyes in the demo: the admin asks, the approver (finance-approver, its own
    authenticator) decides; demo_totp prints either one's current code."""
    import io

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import override_settings
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    creds = demo_setup(tmp_path / "creds.json")
    approver = get_user_model().objects.get(username="approver")
    assert approver.is_staff
    assert not approver.is_superuser
    assert list(approver.groups.values_list("name", flat=True)) == ["finance-approver"]
    assert approver.has_perm("approvals.approve_approvalrequest")
    assert approver.check_password(creds["approver_password"])
    device = TOTPDevice.objects.get(user=approver, confirmed=True)
    out = io.StringIO()
    with override_settings(DEBUG=True):
        call_command("demo_totp", "--credentials", str(tmp_path / "creds.json"), "--user", "approver", stdout=out)
    assert out.getvalue().strip() == f"{TOTP(device.bin_key, device.step, device.t0, device.digits).token():06d}"
    assert creds["approver_totp_key"] != creds["admin_totp_key"]
    again = demo_setup(tmp_path / "creds.json")  # a restart keeps the same approver
    assert (again["approver_password"], again["approver_totp_key"]) == (
        creds["approver_password"],
        creds["approver_totp_key"],
    )
    assert get_user_model().objects.filter(username="approver").count() == 1
