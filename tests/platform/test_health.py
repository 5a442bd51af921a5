"""/healthz, /readyz (database, Redis, broker each reported) and /metrics."""

from __future__ import annotations

import json
import time

import pytest

from billing_project.redis_client import get_redis, rkey
from billing_project.tasks import heartbeat
from tests.faults.proxy import FaultProxy
from tests.waiting import wait_for

pytestmark = [pytest.mark.django_db]


def test_healthz_answers_without_asking_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_each_dependency(client):
    heartbeat()  # what a worker does every 30 s, sent by beat
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "redis", "broker", "worker"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["worker"]["heartbeat_age_s"] <= 1


def test_readyz_names_what_is_down(client, settings):
    heartbeat()
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.REDIS_URL = dead
    from billing_project.celery import app

    original = app.conf.broker_url
    app.conf["broker_url"] = dead
    try:
        response = client.get("/readyz")
    finally:
        app.conf["broker_url"] = original
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False
    assert checks["broker"]["ok"] is False
    assert "error" in checks["redis"]


def test_readyz_is_503_when_no_worker_has_run_the_heartbeat(client, settings):
    """Beat sending nothing, or no worker consuming, stops aggregation, period close and
    the sweepers: the service is not ready, whatever PostgreSQL and Redis say."""
    get_redis().delete(rkey("worker-heartbeat"))
    response = client.get("/readyz")
    assert response.status_code == 503
    worker = response.json()["checks"]["worker"]
    assert worker["ok"] is False
    assert "heartbeat" in worker["error"]
    heartbeat()
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_once_the_heartbeat_is_older_than_allowed(client, settings):
    settings.READYZ_HEARTBEAT_MAX_AGE_SECONDS = 120
    get_redis().set(rkey("worker-heartbeat"), "1", ex=50)  # a heartbeat 70 s old
    body = client.get("/readyz").json()
    assert body["checks"]["worker"]["heartbeat_age_s"] == 70
    get_redis().set(rkey("worker-heartbeat"), "1", px=50)  # 120 s old, less 50 ms: it lapses
    assert wait_for(lambda: get_redis().exists(rkey("worker-heartbeat")) == 0)
    assert client.get("/readyz").status_code == 503


def test_readyz_answers_within_its_deadline_while_redis_hangs(client, settings):
    """A Redis (and broker) that accepts connections and never answers: /readyz still
    answers, 503, within its deadline (it blocked 30 s until gunicorn killed the worker)."""
    from billing_project.celery import app

    heartbeat()
    proxy = FaultProxy(settings.REDIS_URL)
    original = app.conf.broker_url
    settings.REDIS_URL = proxy.url
    app.conf["broker_url"] = proxy.url
    try:
        with proxy.fault("hang"):
            started = time.monotonic()
            response = client.get("/readyz")
            elapsed = time.monotonic() - started
            again = client.get("/readyz")  # a second probe is not stuck behind the first
    finally:
        app.conf["broker_url"] = original
        proxy.close()
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False
    assert checks["broker"]["ok"] is False
    assert elapsed < settings.READYZ_DEADLINE_SECONDS + 1.0, elapsed  # bounded, not the 30 s hang
    assert again.status_code == 503


def test_metrics_are_prometheus_text(client, settings):
    settings.METRICS_TOKEN = "scrape-me"
    client.get("/healthz")
    client.get("/api/v1/nothing-here")
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'billing_http_requests_total{method="GET",route="healthz",status="200"}' in text
    assert 'billing_api_errors_total{code="not_found"}' in text
    assert "billing_task_failures_open 0.0" in text


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"openapi: 3" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
    # Swagger UI is served from our own static files, not a CDN (no internet needed).
    assert b"cdn.jsdelivr" not in docs.content


def test_openapi_schema_validates_without_warnings(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert (tmp_path / "schema.yml").read_text().startswith("openapi: 3")


@pytest.mark.urls("billing_project.urls")
def test_the_openapi_schema_describes_every_api_route():
    # API.md: "The OpenAPI schema served at /api/schema/ must describe all of it."
    import re

    from django.urls import URLPattern, URLResolver, get_resolver
    from drf_spectacular.generators import SchemaGenerator

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern)

    routes = {
        "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r)
        for r in walk(get_resolver().url_patterns)
        if r.startswith("api/v1/")
    }
    described = set(SchemaGenerator().get_schema(request=None, public=True)["paths"])
    assert routes
    assert routes <= described, sorted(routes - described)


@pytest.mark.parametrize("header", [None, "Bearer wrong", "scrape-me", "Basic c2NyYXBlLW1l"])
def test_metrics_need_the_bearer_token(client, settings, header):
    settings.METRICS_TOKEN = "scrape-me"
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert b"billing_" not in response.content
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'


def test_metrics_without_a_token_configured_are_closed_unless_debug(client, settings):
    settings.METRICS_TOKEN = ""
    settings.DEBUG = False
    assert client.get("/metrics").status_code == 401
    settings.DEBUG = True
    assert client.get("/metrics").status_code == 200


def test_readyz_names_the_dependency_never_its_hosts_or_users(client, settings, caplog):
    """It returned raw exception text (hosts, ports, users) to anyone who asked."""
    heartbeat()
    settings.REDIS_URL = "redis://secret-user:hunter2@127.0.0.1:1/0"
    body = client.get("/readyz").json()
    assert body["checks"]["redis"] == {"ok": False, "error": "unavailable"}
    text = json.dumps(body)
    for leak in ("127.0.0.1", "secret-user", "hunter2", "Error", "port"):
        assert leak not in text, leak
    assert any(r.getMessage() == "readyz.unavailable" and r.dependency == "redis" for r in caplog.records)
