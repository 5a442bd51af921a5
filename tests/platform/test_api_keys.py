"""API keys: shown once, stored hashed, agents never write (model, database, command)."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from billing_project.api_keys import api_key_create, hash_secret
from billing_project.models import ApiKey

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.probe_urls")]


def run_create_api_key(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("create_api_key", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_command_prints_the_key_last_and_it_works(api):
    lines = run_create_api_key(
        "--name",
        "chat-backend",
        "--kind",
        "service",
        "--scopes",
        "usage:write,entitlements:read",
        "--metrics",
        "ai_tokens,api_calls",
    )
    secret = lines[-1]
    key = ApiKey.objects.get(prefix=secret[:12])
    assert key.name == "chat-backend"
    assert key.kind == "service"
    assert key.scopes == ["entitlements:read", "usage:write"]
    assert key.metrics == ["ai_tokens", "api_calls"]
    assert key.tenant is None
    response = api.post("/api/v1/_probe/write", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 201


def test_command_binds_a_key_to_a_tenant(api):
    secret = run_create_api_key(
        "--name", "portal", "--kind", "service", "--scopes", "billing:read", "--tenant", "acme"
    )[-1]
    assert ApiKey.objects.get(prefix=secret[:12]).tenant == "acme"
    header = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    assert api.get("/api/v1/_probe/tenants/acme/thing", **header).status_code == 200
    assert api.get("/api/v1/_probe/tenants/globex/thing", **header).status_code == 404


def test_command_refuses_an_agent_key_with_a_write_scope():
    with pytest.raises(CommandError, match="agent key cannot hold write scopes: usage:write"):
        run_create_api_key("--name", "bot", "--kind", "agent", "--scopes", "billing:read,usage:write")
    assert not ApiKey.objects.filter(name="bot").exists()


def test_command_refuses_unknown_scopes():
    with pytest.raises(CommandError, match="Unknown scopes: money:print"):
        run_create_api_key("--name", "x", "--kind", "service", "--scopes", "money:print")


def test_agent_key_with_read_and_proposal_scopes_is_fine():
    secret = run_create_api_key(
        "--name", "assistant", "--kind", "agent", "--scopes", "billing:read,entitlements:read,proposals:write"
    )[-1]
    assert secret.startswith("bak_")


def test_secret_is_stored_only_as_its_hash():
    created = api_key_create(name="k", kind="service", scopes=["billing:read"])
    row = ApiKey.objects.filter(pk=created.key.pk).values().get()
    assert created.secret not in {str(v) for v in row.values()}
    assert row["secret_hash"] == hash_secret(created.secret)
    assert created.secret.startswith(row["prefix"] + "_")
    assert len(created.secret) > 40


def test_model_validation_refuses_agent_write_scopes():
    key = ApiKey(name="bot", kind="agent", prefix="bak_x", secret_hash="h" * 64, scopes=["tenants:write"])
    with pytest.raises(ValidationError):
        key.full_clean()


@pytest.mark.parametrize("scope", ["usage:write", "tenants:write", "subscriptions:write", "portal"])
def test_database_refuses_agent_write_scopes_even_past_the_model(scope):
    created = api_key_create(name="bot", kind="agent", scopes=["billing:read"])
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.filter(pk=created.key.pk).update(scopes=["billing:read", scope])
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_project_apikey (name, kind, prefix, secret_hash, scopes, metrics, "
            "created_at, revoked_reason) VALUES ('raw', 'agent', 'bak_raw', %s, %s, '{}', now(), '')",
            ["r" * 64, [scope]],
        )


def test_database_refuses_turning_a_writing_service_key_into_an_agent():
    created = api_key_create(name="svc", kind="service", scopes=["usage:write"])
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.filter(pk=created.key.pk).update(kind="agent")


def test_last_used_is_recorded_at_most_once_a_minute(api, service_key):
    assert service_key.key.last_used_at is None
    api.post("/api/v1/_probe/query", {}, format="json", **service_key.header)
    service_key.key.refresh_from_db()
    first = service_key.key.last_used_at
    assert first is not None
    api.post("/api/v1/_probe/query", {}, format="json", **service_key.header)
    service_key.key.refresh_from_db()
    assert service_key.key.last_used_at == first


def test_warm_key_authenticates_without_sql(api, service_key, django_assert_num_queries):
    api.post("/api/v1/_probe/query", {}, format="json", **service_key.header)  # warms the cache
    with django_assert_num_queries(0):
        assert api.post("/api/v1/_probe/query", {}, format="json", **service_key.header).status_code == 200
