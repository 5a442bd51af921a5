"""Admin: API keys created with the secret shown once, revoked with a reason; login guessing locked out."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing_project.models import ApiKey
from tests.conftest import verified_login

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.probe_urls")]


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser("root", "root@example.com", "correct horse battery")


@pytest.fixture
def staff_client(superuser) -> Client:
    client = Client()
    verified_login(client, superuser)
    return client


def add_key(client: Client, **fields: Any) -> Any:
    data = {
        "name": "chat-backend",
        "kind": "service",
        "scopes": ["usage:write"],
        "metrics": "ai_tokens",
        "tenant": "",
        "rate_limit_per_minute": "",
    }
    data.update(fields)
    return client.post("/admin/billing_project/apikey/add/", data)


def test_creating_a_key_shows_the_secret_once(staff_client, api):
    response = add_key(staff_client)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    found = re.search(r'id="api-key-secret"[^>]*>([^<]+)<', response.content.decode())
    assert found is not None
    secret = found.group(1)
    key = ApiKey.objects.get(name="chat-backend")
    assert secret.startswith(key.prefix)
    assert key.metrics == ["ai_tokens"]
    # the key works
    assert api.post("/api/v1/_probe/write", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 201
    # and the secret appears nowhere afterwards
    for url in ("/admin/billing_project/apikey/", f"/admin/billing_project/apikey/{key.pk}/change/"):
        page = staff_client.get(url)
        assert page.status_code == 200
        assert secret not in page.content.decode()


def test_admin_refuses_an_agent_key_with_write_scopes(staff_client):
    response = add_key(staff_client, name="bot", kind="agent", scopes=["billing:read", "usage:write"])
    assert response.status_code == 200
    assert "agent key cannot hold write scopes" in response.content.decode()
    assert not ApiKey.objects.filter(name="bot").exists()


def test_revoking_from_the_admin_needs_a_reason_and_takes_effect(staff_client, service_key, api):
    url = "/admin/billing_project/apikey/"
    # without a reason: the form asks again, nothing is revoked
    page = staff_client.post(
        url, {"action": "revoke_keys", "_selected_action": [service_key.key.pk], "apply": "1", "reason": ""}
    )
    assert page.status_code == 200
    service_key.key.refresh_from_db()
    assert service_key.key.is_active
    # with a reason
    staff_client.post(
        url,
        {
            "action": "revoke_keys",
            "_selected_action": [service_key.key.pk],
            "apply": "1",
            "reason": "leaked in a screenshot",
        },
    )
    service_key.key.refresh_from_db()
    assert not service_key.key.is_active
    assert service_key.key.revoked_reason == "leaked in a screenshot"
    response = api.post("/api/v1/_probe/write", {}, format="json", **service_key.header)
    assert response.status_code == 401


def test_keys_cannot_be_deleted_from_the_admin(staff_client, service_key):
    response = staff_client.get(f"/admin/billing_project/apikey/{service_key.key.pk}/delete/")
    assert response.status_code == 403


def test_admin_login_locks_out_a_guesser(superuser):
    client = Client()
    statuses = [
        client.post(
            "/admin/login/", {"username": "root", "password": "wrong guess"}, REMOTE_ADDR="203.0.113.9"
        ).status_code
        for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]  # the fifth failure locks the pair out
    # and then even the right password is refused
    response = client.post(
        "/admin/login/", {"username": "root", "password": "correct horse battery"}, REMOTE_ADDR="203.0.113.9"
    )
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_admin_login_works_with_the_right_password(superuser):
    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": "root", "password": "correct horse battery"})
    assert response.status_code == 302
    # a superuser moves money: before anything else, an authenticator (tests/security/test_staff_otp.py)
    assert client.get("/admin/")["Location"] == "/admin/otp/enroll/"
    assert client.get("/admin/otp/enroll/").status_code == 200
