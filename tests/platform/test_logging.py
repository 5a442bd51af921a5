"""Logs are JSON lines that carry the request id and the principal."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.logcapture import json_log_handler

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.probe_urls")]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    handler, stream = json_log_handler()  # the production formatter, from the settings
    logger = logging.getLogger("billing.access")
    # as the settings configure it, whatever a test before this one in the process did to it
    # (a worker or a command that reconfigures logging can disable existing loggers)
    disabled, level = logger.disabled, logger.level
    logger.disabled = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)
    logger.disabled, logger.level = disabled, level


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_access_log_line_has_request_id_and_principal(api, service_key, json_log):
    api.post("/api/v1/_probe/query", {}, format="json", HTTP_X_REQUEST_ID="rid-42", **service_key.header)
    (line,) = records(json_log)
    assert line["request_id"] == "rid-42"
    assert line["principal"] == f"service:{service_key.key.prefix}"
    assert line["status"] == 200
    assert line["path"] == "/api/v1/_probe/query"
    assert "duration_ms" in line
    assert service_key.secret not in json_log.getvalue()


def test_anonymous_requests_log_no_principal(api, json_log):
    api.get("/healthz", HTTP_X_REQUEST_ID="rid-43")
    (line,) = records(json_log)
    assert line["request_id"] == "rid-43"
    assert line["principal"] is None


def test_djangos_own_request_log_carries_the_request_id(api, service_key, json_log, settings):
    """django.request logs a 5xx answer after our middleware has returned (an exception is
    logged inside it): the id comes with the request."""
    handler = logging.getLogger("billing.access").handlers[-1]
    django_request = logging.getLogger("django.request")
    django_request.addHandler(handler)
    api.raise_request_exception = False
    try:
        api.get("/api/v1/_probe/error", HTTP_X_REQUEST_ID="rid-44", **service_key.header)
        settings.STRIPE_WEBHOOK_SECRET = ""
        api.post("/webhooks/stripe/", "{}", content_type="application/json", HTTP_X_REQUEST_ID="rid-45")
    finally:
        django_request.removeHandler(handler)
    lines = records(json_log)
    logged = [line for line in lines if line["logger"] == "django.request"]
    assert [line["request_id"] for line in logged] == ["rid-44", "rid-45"], lines
