"""API keys at the door: 401, 403, tenant binding (404) and the request rate (429)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billing_project.api_keys import api_key_revoke, api_key_update_limits
from tests.clock import NOW

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.probe_urls")]

WRITE = "/api/v1/_probe/write"
QUERY = "/api/v1/_probe/query"
PROPOSALS = "/api/v1/_probe/proposals"


def tenant_url(tenant: str) -> str:
    return f"/api/v1/_probe/tenants/{tenant}/thing"


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    error: dict[str, Any] = body["error"]
    return error


def test_no_key_is_401_with_bearer_challenge(api):
    response = api.post(WRITE, {"a": 1}, format="json")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token abc", "bsk_12345678_nope"])
def test_malformed_authorization_is_401(api, header):
    response = api.post(WRITE, {}, format="json", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "invalid_api_key")


def test_unknown_key_is_401(api):
    response = api.post(WRITE, {}, format="json", HTTP_AUTHORIZATION="Bearer bsk_00000000_" + "x" * 43)
    assert_error(response, 401, "invalid_api_key")


def test_valid_key_passes(api, service_key):
    response = api.post(WRITE, {"a": 1}, format="json", **service_key.header)
    assert response.status_code == 201
    assert response.json() == {"echo": {"a": 1}}


def test_revoked_key_is_401_even_when_cached(api, service_key, django_capture_on_commit_callbacks):
    # given a key that has been used (and so is cached in Redis)
    assert api.post(WRITE, {}, format="json", **service_key.header).status_code == 201
    # when it is revoked
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=service_key.key, reason="leaked in a log")
    # then it stops working at once
    response = api.post(WRITE, {}, format="json", **service_key.header)
    assert_error(response, 401, "api_key_revoked")


def test_revoked_key_is_401_when_not_cached(api, service_key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=service_key.key, reason="rotated")
    from billing_project.redis_client import get_redis, rkey

    # the tombstone is gone too (evicted, Redis restarted): PostgreSQL must still say no
    get_redis().delete(rkey("apikey", service_key.key.secret_hash))
    assert_error(api.get(tenant_url("x"), **service_key.header), 401, "api_key_revoked")


def test_missing_scope_is_403_and_names_it(api, make_key):
    key = make_key("service", scopes=["entitlements:read"])
    error = assert_error(api.post(WRITE, {}, format="json", **key.header), 403, "missing_scope")
    assert error["details"]["missing_scopes"] == ["usage:write"]


def test_agent_key_on_a_write_is_403(api, agent_key):
    assert_error(api.post(WRITE, {}, format="json", **agent_key.header), 403, "agent_write_forbidden")


@pytest.mark.parametrize("method", ["put", "delete"])
def test_agent_key_on_other_writes_is_403(api, agent_key, method):
    response = getattr(api, method)(tenant_url("acme"), {}, format="json", **agent_key.header)
    assert_error(response, 403, "agent_write_forbidden")


def test_agent_key_may_use_a_query_post_and_propose(api, agent_key):
    assert api.post(QUERY, {}, format="json", **agent_key.header).status_code == 200
    assert api.post(PROPOSALS, {}, format="json", **agent_key.header).status_code == 201


def test_agent_key_may_read(api, agent_key):
    assert api.get(tenant_url("acme"), **agent_key.header).status_code == 200


class TestTenantBinding:
    def test_own_tenant_is_served(self, api, make_key):
        key = make_key("service", tenant="acme")
        assert api.get(tenant_url("acme"), **key.header).json() == {"tenant": "acme"}

    @pytest.mark.parametrize("method", ["get", "put", "delete"])
    def test_other_tenant_in_the_path_is_404(self, api, make_key, method):
        key = make_key("service", tenant="acme")
        response = getattr(api, method)(tenant_url("globex"), {}, format="json", **key.header)
        assert_error(response, 404, "not_found")

    def test_other_tenant_in_the_body_is_404(self, api, make_key):
        key = make_key("service", tenant="acme")
        response = api.post(WRITE, {"tenant": "globex"}, format="json", **key.header)
        assert_error(response, 404, "not_found")

    def test_other_tenant_inside_a_batch_is_404(self, api, make_key):
        key = make_key("service", tenant="acme")
        body = {"events": [{"tenant": "acme"}, {"tenant": "globex"}]}
        assert_error(api.post(WRITE, body, format="json", **key.header), 404, "not_found")

    def test_answer_is_the_same_as_for_a_tenant_that_does_not_exist(self, api, make_key):
        key = make_key("service", tenant="acme")
        a = api.get(tenant_url("globex"), **key.header)
        b = api.get(tenant_url("no-such-tenant-anywhere"), **key.header)
        assert a.status_code == b.status_code == 404
        assert a.json() == b.json()

    def test_unbound_key_serves_any_tenant(self, api, service_key):
        assert api.get(tenant_url("globex"), **service_key.header).status_code == 200


# The budget is per minute of the clock: every rate test runs on the suite's frozen clock,
# never on whichever side of a minute boundary the machine happens to be.
MINUTE = NOW.replace(second=0, microsecond=0)


@pytest.mark.usefixtures("clock")
class TestRateLimit:
    def test_past_the_rate_is_429_with_retry_after(self, api, make_key, clock):
        clock.move_to(MINUTE + timedelta(seconds=45))
        key = make_key("service", rate=3)
        statuses = [api.post(QUERY, {}, format="json", **key.header).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        response = api.post(QUERY, {}, format="json", **key.header)
        error = assert_error(response, 429, "rate_limited")
        assert response["Retry-After"] == "15"  # what is left of the minute
        assert error["details"]["retry_after_seconds"] == 15

    def test_the_next_minute_brings_a_new_budget_and_not_before(self, api, make_key, clock):
        clock.move_to(MINUTE + timedelta(seconds=59))
        key = make_key("service", rate=1)
        assert api.post(QUERY, {}, format="json", **key.header).status_code == 200
        response = api.post(QUERY, {}, format="json", **key.header)
        assert (response.status_code, response["Retry-After"]) == (429, "1")
        clock.move_to(MINUTE + timedelta(seconds=59, microseconds=999_999))
        assert api.post(QUERY, {}, format="json", **key.header).status_code == 429
        clock.move_to(MINUTE + timedelta(minutes=1))
        assert api.post(QUERY, {}, format="json", **key.header).status_code == 200
        assert api.post(QUERY, {}, format="json", **key.header).status_code == 429

    def test_keys_are_limited_separately(self, api, make_key):
        noisy, quiet = make_key("service", rate=1), make_key("service", rate=1)
        api.post(QUERY, {}, format="json", **noisy.header)
        assert api.post(QUERY, {}, format="json", **noisy.header).status_code == 429
        assert api.post(QUERY, {}, format="json", **quiet.header).status_code == 200

    def test_admin_raises_a_keys_rate_and_it_applies_at_once(self, api, make_key, django_capture_on_commit_callbacks):
        key = make_key("service", rate=1)
        api.post(QUERY, {}, format="json", **key.header)
        assert api.post(QUERY, {}, format="json", **key.header).status_code == 429
        with django_capture_on_commit_callbacks(execute=True):
            api_key_update_limits(key=key.key, name=key.key.name, rate_limit_per_minute=100)
        assert api.post(QUERY, {}, format="json", **key.header).status_code == 200

    def test_dead_redis_fails_open_and_auth_still_works(self, api, service_key, settings):
        settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
        assert api.post(WRITE, {}, format="json", **service_key.header).status_code == 201
