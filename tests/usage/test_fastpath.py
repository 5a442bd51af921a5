"""The single usage event's fast lane (usage.fastpath), through the real WSGI application: it
records an event exactly as the Django view does (same status, body and headers; stored
once), and passes everything else (batches, bad input, the rules' refusals, the service's
rejections, the rate limit) to the view, whose answer is then the only one, counted once."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from tests.conftest import Key
from usage.fastpath import EVENTS_PATH, LANE
from usage.models import UsageEvent

pytestmark = [pytest.mark.django_db]


def lanes() -> dict[str, float]:
    return {s.labels["lane"]: s.value for m in LANE.collect() for s in m.samples if s.name.endswith("_total")}


def served(
    body: Any,
    *,
    key: Key | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> tuple[int, dict[str, str], Any, str]:
    """POST to billing_project.wsgi.application: status, headers, body, lane."""
    from billing_project.wsgi import application

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": EVENTS_PATH,
        "QUERY_STRING": query,
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
    request_started.disconnect(close_old_connections)  # as Django's test client does
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
    return started["status"], started["headers"], json.loads(content), lane


def event(key: str = "fp-1", **changes: Any) -> dict[str, Any]:
    return {"tenant": "acme", "metric": "ai_tokens", "quantity": "7", "idempotency_key": key, **changes}


def test_an_event_is_recorded_in_the_fast_lane_as_the_view_records_one(api, reporter):
    status, headers, body, lane = served(event(), key=reporter)
    assert (status, lane) == (201, "fast")
    assert body == {"id": UsageEvent.objects.get(idempotency_key="fp-1").pk, "status": "accepted"}
    view = api.post(EVENTS_PATH, event("fp-view"), format="json", **reporter.header)
    assert view.status_code == 201
    assert set(view.json()) == set(body)
    for name in ("Content-Type", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
        assert headers[name] == view[name], name
    assert headers["X-Request-ID"]
    # sent again: the same event, a duplicate, stored once
    again = served(event(), key=reporter)
    assert again[:1] == (200,)
    assert again[2] == {"id": body["id"], "status": "duplicate"}
    assert again[3] == "fast"
    assert UsageEvent.objects.filter(idempotency_key="fp-1").count() == 1


def test_a_request_id_is_honoured(reporter):
    _, headers, _, lane = served(event(), key=reporter, headers={"HTTP_X_REQUEST_ID": "trace-42"})
    assert (headers["X-Request-ID"], lane) == ("trace-42", "fast")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (event(quantity="7.5", idempotency_key="fp-1"), 409, "idempotency_conflict"),  # after fp-1 below
        (event("fp-2", tenant="nobody"), 400, "unknown_tenant"),
        (event("fp-3", metric="storage_gb", quantity="-1"), 400, "invalid_quantity"),
        (event("fp-4", properties={"undeclared": "x"}), 400, "undeclared_property"),
        ([event("fp-5")], 400, None),  # not an object
    ],
)
def test_what_the_service_refuses_is_answered_by_the_view(reporter, body, status, code):
    served(event("fp-1"), key=reporter)
    before = UsageEvent.objects.count()
    got, _, answer, lane = served(body, key=reporter)
    assert (got, lane) == (status, "django")
    if code is not None:
        assert answer["error"]["code"] == code
    assert UsageEvent.objects.count() == before


def test_the_rules_refusals_are_the_views(make_key, usage_world):
    cases = [
        (None, 401, "not_authenticated"),
        (Key(key=None, secret="bsk_" + "x" * 40), 401, "invalid_api_key"),  # type: ignore[arg-type]
        (make_key("service", scopes=["billing:read"]), 403, "missing_scope"),
        (make_key("service", scopes=["usage:write"], metrics=["api_calls"]), 403, "metric_not_allowed"),
        (make_key("service", scopes=["usage:write"], metrics=["ai_tokens"], tenant="globex"), 404, "not_found"),
        (make_key("agent"), 403, "agent_write_forbidden"),
    ]
    for n, (key, status, code) in enumerate(cases):
        got, _, answer, lane = served(event(f"fp-r{n}"), key=key)
        assert (got, answer["error"]["code"], lane) == (status, code, "django"), (n, answer)
    assert not UsageEvent.objects.filter(idempotency_key__startswith="fp-r").exists()


def test_batches_query_strings_other_types_and_hosts_take_the_full_path(reporter):
    assert served({"events": [event("fp-b")]}, key=reporter)[0::3] == (200, "django")
    assert served(event("fp-q"), key=reporter, query="x=1")[3] == "django"
    assert served(b"tenant=acme", key=reporter, content_type="application/x-www-form-urlencoded")[:1] == (415,)
    status, _, answer, lane = served(event("fp-h"), key=reporter, headers={"HTTP_HOST": "evil.example"})
    assert (status, answer["error"]["code"], lane) == (400, "invalid_host", "django")
    assert not UsageEvent.objects.filter(idempotency_key__in=["fp-h"]).exists()


def test_the_rate_limit_is_the_views_and_counts_a_request_once(make_key, usage_world):
    key = make_key("service", scopes=["usage:write"], metrics=["ai_tokens"], rate=2)
    assert served(event("fp-l1"), key=key)[0::3] == (201, "fast")
    assert served(event("fp-l2"), key=key)[0::3] == (201, "fast")
    status, headers, answer, lane = served(event("fp-l3"), key=key)
    assert (status, answer["error"]["code"], lane) == (429, "rate_limited", "django")
    assert "Retry-After" in headers
    assert not UsageEvent.objects.filter(idempotency_key="fp-l3").exists()
