"""Every change to a tenant (personal data) is in the audit log with its actor: the API key
through the API, the staff member in the admin. The log never holds the personal data."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from subscriptions.models import Tenant
from subscriptions.services import subscription_create
from tests.conftest import verified_login

pytestmark = [pytest.mark.django_db]

MASK = "(personal data, not logged)"  # what the log shows instead of a name or an email


def entries(tenant: Tenant) -> list[LogEntry]:
    return list(LogEntry.objects.get_for_object(tenant).order_by("timestamp", "pk"))


def put(api, key, **body):
    body = {"name": "Acme", "email": "billing@acme.example", "currency": "USD", "country": "DE", **body}
    return api.put("/api/v1/tenants/acme", body, format="json", HTTP_X_REQUEST_ID="req-tenant-1", **key.header)


def staff(group: str | None) -> tuple[Client, object]:
    user_model = get_user_model()
    if group is None:
        user = user_model.objects.create_superuser("root", "root@example.com", "pw-long-enough-1")
    else:
        user = user_model.objects.create_user(group, f"{group}@example.com", "pw-long-enough-1", is_staff=True)
        user.groups.add(Group.objects.get(name=group))
    client = Client()
    verified_login(client, user)
    return client, user


def test_the_api_creates_and_updates_a_tenant_with_the_key_as_actor(api, service_key):
    assert put(api, service_key).status_code == 201
    tenant = Tenant.objects.get(external_id="acme")
    (created,) = entries(tenant)
    label = f"service:{service_key.key.prefix}"
    assert created.action == LogEntry.Action.CREATE
    assert created.additional_data == {"actor": label, "api_key_id": service_key.key.pk}
    assert created.cid == "req-tenant-1"
    assert created.changes["currency"] == ["None", "USD"]

    assert put(api, service_key, name="Acme GmbH", country="AT").status_code == 200
    update = entries(tenant)[-1]
    assert update.action == LogEntry.Action.UPDATE
    assert update.additional_data["actor"] == label
    assert update.changes["country"] == ["DE", "AT"]
    assert update.changes["name"] == [MASK, MASK]  # changed, and what it says is not logged


def test_the_log_never_holds_the_tenants_personal_data(api, service_key):
    put(api, service_key, name="Jane Doe Consulting", email="jane@doe.example")
    put(api, service_key, name="Jane Roe Consulting", email="jane@roe.example")
    tenant = Tenant.objects.get(external_id="acme")
    logged = " ".join(f"{e.object_repr} {e.changes_text} {e.changes}" for e in entries(tenant))
    assert len(entries(tenant)) == 2
    for personal in ("Jane", "Doe", "Roe", "doe.example", "roe.example"):
        assert personal not in logged
    assert {e.object_repr for e in entries(tenant)} == {"acme"}


def test_an_unchanged_put_logs_nothing_new(api, service_key):
    put(api, service_key)
    put(api, service_key)
    assert len(entries(Tenant.objects.get(external_id="acme"))) == 1


def test_a_staff_member_edits_a_tenant_in_the_admin_with_an_audit_entry(tenant):
    finance, user = staff("finance")
    page = finance.get(f"/admin/subscriptions/tenant/{tenant.pk}/change/")
    assert page.status_code == 200
    form = {"name": "Acme GmbH", "billing_email": "ap@acme.example", "country": "AT", "currency": "USD"}
    response = finance.post(f"/admin/subscriptions/tenant/{tenant.pk}/change/", form, HTTP_X_REQUEST_ID="req-adm-1")
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant.refresh_from_db()
    assert (tenant.name, tenant.billing_email, tenant.country) == ("Acme GmbH", "ap@acme.example", "AT")
    update = entries(tenant)[-1]
    assert update.action == LogEntry.Action.UPDATE
    assert update.actor == user
    assert update.cid == "req-adm-1"
    assert update.changes["billing_email"] == [MASK, MASK]
    assert update.changes["country"] == ["DE", "AT"]


def test_a_superuser_adds_a_tenant_in_the_admin_with_an_audit_entry(db):
    root, user = staff(None)
    form = {"external_id": "globex", "name": "Globex", "billing_email": "", "country": "us", "currency": "eur"}
    response = root.post("/admin/subscriptions/tenant/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant = Tenant.objects.get(external_id="globex")
    assert (tenant.country, tenant.currency) == ("US", "EUR")
    (created,) = entries(tenant)
    assert created.action == LogEntry.Action.CREATE
    assert created.actor == user


@pytest.mark.parametrize(
    ("field", "value"),
    [("external_id", "globex corp"), ("country", "XX"), ("currency", "USX"), ("billing_email", "nope")],
)
def test_the_admin_refuses_what_the_service_refuses(db, field, value):
    root, _ = staff(None)
    form = {"external_id": "globex", "name": "Globex", "billing_email": "", "country": "", "currency": "USD"}
    response = root.post("/admin/subscriptions/tenant/add/", {**form, field: value})
    assert response.status_code == 200  # the form again, with its error
    assert field in response.context["adminform"].form.errors
    assert not Tenant.objects.exists()


def test_the_admin_refuses_a_currency_change_under_a_live_subscription(tenant):
    subscription_create(tenant=tenant, plan_code="enterprise", actor="test")
    finance, _ = staff("finance")
    form = {"name": "Acme", "billing_email": "", "country": "DE", "currency": "EUR"}
    response = finance.post(f"/admin/subscriptions/tenant/{tenant.pk}/change/", form)
    assert response.status_code == 200
    assert "currency" in response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.currency == "USD"


def test_support_reads_tenants_but_changes_nothing_and_nobody_deletes_one(tenant):
    support, _ = staff("support")
    assert support.get(f"/admin/subscriptions/tenant/{tenant.pk}/change/").status_code == 200
    form = {"name": "Hacked", "billing_email": "", "country": "DE", "currency": "USD"}
    assert support.post(f"/admin/subscriptions/tenant/{tenant.pk}/change/", form).status_code == 403
    root, _ = staff(None)
    assert root.post(f"/admin/subscriptions/tenant/{tenant.pk}/delete/", {"post": "yes"}).status_code == 403
    tenant.refresh_from_db()
    assert tenant.name == "Acme"


def test_the_audit_log_page_names_the_api_key(api, service_key):
    put(api, service_key)
    auditor, _ = staff("auditor")
    page = auditor.get("/admin/auditlog/logentry/").content.decode()
    assert f"API key service:{service_key.key.prefix}" in page
