"""Production-safe by default: with DEBUG off, HTTPS only (redirect, HSTS, Secure cookies),
staff sessions of a working day that end with the browser, a Content-Security-Policy on the
admin and on invoice documents; `manage.py check --deploy` passes with the README's
production settings; demo_setup refuses to run without DEBUG and keeps its secrets 0600."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from tests.livedb import ROOT, subprocess_env

README = ROOT / "README.md"


def production_env() -> dict[str, str]:
    """The README's production settings, with its placeholders filled in."""
    text = README.read_text()
    block = re.search(r"<!-- production-settings -->\s*```sh\n(.*?)```", text, re.S)
    assert block, "the README's production settings block is missing"
    env = subprocess_env()
    env.pop("DEBUG", None)
    for line in block.group(1).strip().splitlines():
        name, _, value = line.partition("=")
        value = value.strip().strip('"')
        if value.startswith("<a Fernet key"):
            value = Fernet.generate_key().decode()
        elif value.startswith("<"):
            value = secrets.token_urlsafe(48)
        env[name.strip()] = value
    # connect to nothing: the deploy checks read settings only
    env["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    env["DJANGO_SETTINGS_MODULE"] = "billing_project.settings"
    return env


def test_check_deploy_passes_with_the_readmes_production_settings():
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def settings_in(env: dict[str, str], *names: str) -> dict[str, object]:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)  # noqa: S603
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_with_debug_off_the_defaults_are_https_only():
    env = production_env()
    for name in ("SECURE_HSTS_PRELOAD", "PROXY_SSL_HEADER"):
        env.pop(name, None)  # the defaults, not the README's choices
    values = settings_in(
        env,
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SESSION_COOKIE_AGE",
        "SESSION_EXPIRE_AT_BROWSER_CLOSE",
        "SECURE_PROXY_SSL_HEADER",
    )
    assert values == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_AGE": 8 * 3600,
        "SESSION_EXPIRE_AT_BROWSER_CLOSE": True,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_the_proxy_ssl_header_is_read_from_its_variable():
    env = production_env()
    assert settings_in(env, "SECURE_PROXY_SSL_HEADER") == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"]
    }
    env["PROXY_SSL_HEADER"] = "no colon here"
    bad = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )  # noqa: S603
    assert bad.returncode != 0
    assert "PROXY_SSL_HEADER" in bad.stderr


@pytest.mark.django_db
def test_a_request_over_http_is_redirected_but_the_health_probes_are_not(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/admin/login/")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")
    assert client.get("/healthz").status_code == 200
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200


@pytest.mark.django_db
def test_the_admin_and_invoice_documents_carry_a_content_security_policy(client, settings):
    page = client.get("/admin/login/")
    assert page.status_code == 200
    policy = page["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "script-src" not in policy or "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert "Content-Security-Policy" not in client.get("/api/docs/")  # Swagger UI keeps its inline script


@pytest.mark.django_db
def test_an_invoice_document_has_the_strict_policy(api, make_key):
    from datetime import UTC, datetime

    from invoicing.models import Invoice
    from invoicing.services import invoices_close_due
    from plans.services import catalog_import, catalog_validate
    from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
    from tests.plans.factories import demo

    catalog_import(spec=catalog_validate(demo()))
    acme = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    sub = subscription_create(tenant=acme, plan_code="pro", actor="t", at=datetime(2026, 1, 1, tzinfo=UTC))
    subscription_roll(subscription_id=sub.pk, at=datetime(2026, 2, 20, tzinfo=UTC))
    invoices_close_due(now=datetime(2026, 3, 1, tzinfo=UTC))
    number = Invoice.objects.exclude(number=None).values_list("number", flat=True).first()
    key = make_key("service", scopes=["billing:read"])
    response = api.get(f"/api/v1/invoices/{number}?format=html", **key.header)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/html")
    assert response["Content-Security-Policy"].startswith("default-src 'none'")
    json_answer = api.get(f"/api/v1/invoices/{number}", **key.header)
    assert "Content-Security-Policy" not in json_answer


@pytest.mark.django_db
def test_demo_setup_refuses_to_run_without_debug(settings, tmp_path):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("demo_setup", "--credentials", str(tmp_path / "c.json"))
    assert not (tmp_path / "c.json").exists()


@pytest.mark.django_db
def test_demo_setup_writes_its_credentials_readable_by_their_owner_only(settings, tmp_path):
    settings.DEBUG = True
    path = tmp_path / "c.json"
    path.write_text("{}")
    path.chmod(0o644)  # an existing file loses its wider mode too
    old = os.umask(0)  # the most permissive umask: the mode comes from the code, not the shell
    try:
        call_command("demo_setup", "--credentials", str(path), stdout=open(os.devnull, "w"))  # noqa: SIM115
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["admin_password"]
