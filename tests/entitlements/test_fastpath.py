"""The entitlement check's fast lane (entitlements.fastpath), through the real WSGI
application: it answers warm checks exactly as the Django view does (same status, same
body), never runs SQL, and passes everything else (cold caches, bad input, the rules'
refusals, Redis down) to the view, whose answer is then the only one."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from billing_project.api_keys import api_key_revoke
from billing_project.models import ApiKey
from billing_project.redis_client import get_redis
from entitlements.fastpath import CHECK_PATH, LANE
from entitlements.services import grant_create
from plans.models import Feature

pytestmark = [pytest.mark.django_db]


def lanes() -> dict[str, float]:
    return {s.labels["lane"]: s.value for m in LANE.collect() for s in m.samples if s.name.endswith("_total")}


def served(
    body: Any, *, key: Any = None, content_type: str = "application/json", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any, str]:
    """POST the check to billing_project.wsgi.application: status, headers, body, lane."""
    from billing_project.wsgi import application

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": CHECK_PATH,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        "CONTENT_LENGTH": str(len(raw)),
        "CONTENT_TYPE": content_type,
        **(key.header if key is not None else {}),
        **(headers or {}),
    }
    started: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started["status"], started["headers"] = int(status.split()[0]), dict(response_headers)

    before = lanes()
    # As Django's test client does: the request signals must not close the test's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = application(environ, start_response)
        content = b"".join(response)
        if hasattr(response, "close"):
            response.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    after = lanes()
    lane = "fast" if after.get("fast", 0) > before.get("fast", 0) else "django"
    try:
        parsed: Any = json.loads(content)
    except ValueError:  # an answer that is not JSON is kept as text, for the assertion to show
        parsed = content.decode()
    return started["status"], started["headers"], parsed, lane


def via_view(api: Any, body: Any, key: Any) -> tuple[int, Any]:
    """The Django view's answer (the test client never enters the fast lane)."""
    response = api.post("/api/v1/entitlements/check", body, format="json", **key.header)
    return response.status_code, response.json()


def warm(key: Any, body: dict[str, Any]) -> None:
    status, _, _, _ = served(body, key=key)  # the first check builds the context and counter
    assert status == 200


CHECKS: list[dict[str, Any]] = [
    {"tenant": "acme", "feature": "api"},  # metered, within its limit
    {"tenant": "acme", "feature": "api", "quantity": "6"},  # past a blocking limit
    {"tenant": "acme", "feature": "tokens", "quantity": 150},  # past a billed limit, a JSON number
    {"tenant": "acme", "feature": "sso"},  # switched off in the plan
    {"tenant": "acme", "feature": "chat"},  # not metered
    {"tenant": "acme", "feature": "seats"},  # distinct users (a set counter; see the seats test)
]


@pytest.mark.parametrize("body", CHECKS[:-1], ids=lambda b: f"{b['feature']}-{b.get('quantity', 1)}")
def test_a_warm_check_answers_in_the_fast_lane_exactly_as_the_view(api, reader, subscribed, body):
    warm(reader, body)
    status, headers, answer, lane = served(body, key=reader)
    assert lane == "fast"
    assert (status, answer) == via_view(api, body, reader)
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_set_counter_answers_in_the_fast_lane_once_it_exists(
    api, reader, subscribed, django_capture_on_commit_callbacks
):
    """Redis keeps no empty set: until the first distinct user is reported, a unique count
    cannot be told from a counter not built yet, and the view answers (from PostgreSQL)."""
    body = {"tenant": "acme", "feature": "seats"}
    warm(reader, body)
    assert served(body, key=reader)[3] == "django"
    event = {
        "tenant": "acme",
        "metric": "seats",
        "quantity": "1",
        "idempotency_key": "s1",
        "properties": {"user_ref": "u1"},
    }
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/v1/usage/events", event, format="json", **reader.header)
    warm(reader, body)  # the view builds the set from PostgreSQL
    status, _, answer, lane = served(body, key=reader)
    assert (lane, answer["used"]) == ("fast", "1")
    assert (status, answer) == via_view(api, body, reader)


def test_the_fast_lane_runs_no_sql_and_keeps_the_request_id(reader, subscribed, django_assert_num_queries):
    warm(reader, CHECKS[0])
    with django_assert_num_queries(0):
        status, headers, _, lane = served(CHECKS[0], key=reader, headers={"HTTP_X_REQUEST_ID": "rid-fast-1"})
    assert (status, lane, headers["X-Request-ID"]) == (200, "fast", "rid-fast-1")


def test_usage_and_grants_show_at_once(api, reader, subscribed, django_capture_on_commit_callbacks, admin_user):
    body = {"tenant": "acme", "feature": "api"}
    warm(reader, body)
    events = [{"tenant": "acme", "metric": "api_calls", "quantity": "1", "idempotency_key": f"e{i}"} for i in range(5)]
    with django_capture_on_commit_callbacks(execute=True):  # counters are updated once ingestion commits
        api.post("/api/v1/usage/events", {"events": events}, format="json", **reader.header)
    _, _, answer, lane = served(body, key=reader)
    assert (lane, answer["used"], answer["allowed"], answer["reason"]) == ("fast", "5", False, "limit_exceeded")
    with django_capture_on_commit_callbacks(execute=True):  # the tenant's version is bumped on commit
        grant_create(
            tenant=subscribed.tenant,
            feature=Feature.objects.get(code="api"),
            kind="extra_limit",
            amount=Decimal(10),
            expires_at=subscribed.current_period_end,
            reason="launch week",
            created_by=admin_user,
        )
    _, _, answer, _ = served(body, key=reader)
    assert (answer["limit"], answer["allowed"]) == ("15", True)  # the grant counts at once


def bound(make_key: Any, tenant: str) -> Any:
    return make_key("service", scopes=["entitlements:read"], tenant=tenant)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown feature", (400, "unknown_feature")),
        ("invalid key", (401, "invalid_api_key")),
        ("revoked key", (401, "api_key_revoked")),
        ("missing scope", (403, "missing_scope")),
        ("bound to another tenant", (404, "not_found")),
        ("malformed json", (400, "malformed_json")),
        ("not json", (415, "unsupported_media_type")),
        ("bad quantity", (400, "invalid_quantity")),
        ("no tenant", (400, "validation_error")),
        ("rate limited", (429, "rate_limited")),
    ],
)
def test_whatever_the_fast_lane_cannot_settle_the_view_answers(
    api, make_key, reader, subscribed, case, expected, django_capture_on_commit_callbacks
):
    warm(reader, CHECKS[0])
    key, body, content_type = reader, dict(CHECKS[0]), "application/json"
    raw: Any = body
    if case == "unknown feature":
        body["feature"] = "teleport"
        raw = body
    elif case == "invalid key":
        key = type("K", (), {"header": {"HTTP_AUTHORIZATION": "Bearer bsk_nope_nope"}})()
    elif case == "revoked key":
        with django_capture_on_commit_callbacks(execute=True):  # the cache's tombstone is written on commit
            api_key_revoke(key=ApiKey.objects.get(pk=reader.key.pk), reason="leaked")
    elif case == "missing scope":
        key = make_key("service", scopes=["usage:write"])
        warm_other = served(CHECKS[0], key=key)  # its record is cached now, and still refused
        assert warm_other[0] == 403
    elif case == "bound to another tenant":
        key = bound(make_key, "globex")
        served(CHECKS[0], key=key)
    elif case == "malformed json":
        raw = b'{"tenant": "acme", "feature":'
    elif case == "not json":
        raw, content_type = b"tenant=acme&feature=api", "application/x-www-form-urlencoded"
    elif case == "bad quantity":
        body["quantity"] = "-1"
        raw = body
    elif case == "no tenant":
        raw = {"feature": "api"}
    elif case == "rate limited":
        key = make_key("service", scopes=["entitlements:read"], rate=2)
        for _ in range(2):
            served(CHECKS[0], key=key)
    status, _, answer, lane = served(raw, key=key, content_type=content_type)
    assert lane == "django"
    assert (status, answer["error"]["code"]) == expected


def test_an_agent_and_a_key_bound_to_the_tenant_use_the_fast_lane(api, make_key, agent_key, subscribed):
    for key in (agent_key, bound(make_key, "acme")):
        warm(key, CHECKS[0])
        status, _, answer, lane = served(CHECKS[0], key=key)
        assert (status, lane) == (200, "fast")
        assert (status, answer) == via_view(api, CHECKS[0], key)


def test_with_redis_down_the_view_answers_from_postgresql(reader, subscribed, settings):
    warm(reader, CHECKS[0])
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    status, _, answer, lane = served(CHECKS[0], key=reader)
    assert (status, lane, answer["reason"]) == (200, "django", "ok")


def test_a_redis_restart_costs_one_check_in_the_slow_lane_at_most(reader, subscribed):
    warm(reader, CHECKS[0])
    get_redis().script_flush()  # the fast lane's script is forgotten
    status, _, answer, _ = served(CHECKS[0], key=reader)
    assert (status, answer["reason"]) == (200, "ok")
    assert served(CHECKS[0], key=reader)[3] == "fast"
