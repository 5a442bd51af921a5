"""The audit trail: every change has an actor and a correlation id, and the log is append-only."""

from __future__ import annotations

import io

import psycopg
import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import Client

from billing_project.audit import SYSTEM_USERNAME
from billing_project.models import ApiKey
from tests.conftest import verified_login

pytestmark = [pytest.mark.django_db]


def entries_for(key: ApiKey):
    return LogEntry.objects.get_for_object(key).order_by("timestamp")


def test_command_changes_are_attributed_to_the_system_user():
    out = io.StringIO()
    call_command("create_api_key", "--name", "svc", "--kind", "service", "--scopes", "billing:read", stdout=out)
    key = ApiKey.objects.get(name="svc")
    entry = entries_for(key).get()
    assert entry.action == LogEntry.Action.CREATE
    assert entry.actor.username == SYSTEM_USERNAME
    assert "secret_hash" not in (entry.changes or {})


def test_admin_changes_carry_the_staff_member_and_request_id():
    admin = get_user_model().objects.create_superuser("ana", "ana@example.com", "pw-long-enough-1")
    client = Client()
    verified_login(client, admin)
    client.post(
        "/admin/billing_project/apikey/add/",
        {
            "name": "from-admin",
            "kind": "service",
            "scopes": ["billing:read"],
            "metrics": "",
            "tenant": "",
            "rate_limit_per_minute": "",
        },
        HTTP_X_REQUEST_ID="req-audit-1",
    )
    entry = entries_for(ApiKey.objects.get(name="from-admin")).get()
    assert entry.actor == admin
    assert entry.cid == "req-audit-1"


def test_revocation_is_audited_with_its_reason(service_key):
    from billing_project.api_keys import api_key_revoke
    from billing_project.audit import system_actor

    with system_actor():
        api_key_revoke(key=service_key.key, reason="employee left")
    update = entries_for(service_key.key).filter(action=LogEntry.Action.UPDATE).get()
    assert update.changes["revoked_reason"] == ["", "employee left"]


@pytest.fixture
def an_entry(service_key) -> LogEntry:
    return entries_for(service_key.key).first()


def test_audit_rows_cannot_be_updated(an_entry):
    # The test connection carries billing.allow_truncate=on: it must not help an UPDATE.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LogEntry.objects.filter(pk=an_entry.pk).update(changes_text="tampered")


def test_audit_rows_cannot_be_deleted(an_entry):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LogEntry.objects.filter(pk=an_entry.pk).delete()


def test_audit_table_cannot_be_truncated_by_a_normal_session():
    # A session without the test-only flag, as production runs.
    params = connection.get_connection_params()
    params.pop("options", None)
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as raw:
        raw.execute("SET lock_timeout = '5s'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            raw.execute("TRUNCATE auditlog_logentry")


def test_the_audit_log_records_the_clients_address_from_the_trusted_proxy_only(settings):
    """auditlog took the left-most X-Forwarded-For whatever TRUSTED_PROXIES said: any client
    could write the address of its choice into the audit trail."""
    from tests.conftest import verified_login

    admin = get_user_model().objects.create_superuser("ana", "ana@example.com", "pw-long-enough-1")
    settings.TRUSTED_PROXIES = []
    client = Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="6.6.6.6, 10.0.0.1")
    verified_login(client, admin)
    client.post(
        "/admin/billing_project/apikey/add/",
        {"name": "k1", "kind": "service", "scopes": ["billing:read"], "metrics": "", "tenant": ""},
    )
    assert entries_for(ApiKey.objects.get(name="k1")).get().remote_addr == "203.0.113.9"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxied = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7")
    verified_login(proxied, admin)
    proxied.post(
        "/admin/billing_project/apikey/add/",
        {"name": "k2", "kind": "service", "scopes": ["billing:read"], "metrics": "", "tenant": ""},
    )
    assert entries_for(ApiKey.objects.get(name="k2")).get().remote_addr == "198.51.100.7"
