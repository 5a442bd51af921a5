"""Every error in one shape, with the status and code of API.md's Conventions."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.platform.test_api_auth import assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.probe_urls")]


def test_unknown_api_path_is_json_404(api, service_key):
    assert_error(api.get("/api/v1/no/such/thing", **service_key.header), 404, "not_found")


def test_unknown_api_path_is_json_404_without_a_key_too(api):
    assert_error(api.get("/api/v1/nothing-here"), 404, "not_found")


@pytest.mark.parametrize("path", ["/api/v1/plans", "/api/v1/usage/events", "/api/v1/no/such/thing"])
def test_a_host_outside_allowed_hosts_is_the_apis_json_error(api, service_key, path):
    response = api.get(path, HTTP_HOST="evil.example", **service_key.header)
    assert_error(response, 400, "invalid_host")
    assert "evil.example" not in response.content.decode()  # not echoed back


def test_a_host_outside_allowed_hosts_stays_djangos_page_outside_the_api(client: Client):
    response = client.get("/admin/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_non_api_404_stays_html(client: Client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "application/json" not in response["Content-Type"]


def test_wrong_method_is_405(api, service_key):
    assert_error(api.get("/api/v1/_probe/write", **service_key.header), 405, "method_not_allowed")


def test_malformed_json_is_400(api, service_key):
    response = api.post(
        "/api/v1/_probe/write",
        data='{"tenant": "acme", ',
        content_type="application/json",
        **service_key.header,
    )
    assert_error(response, 400, "malformed_json")


@pytest.mark.parametrize("body", ['{"q": NaN}', '{"q": Infinity}', b'{"q": "\xff"}'])
def test_non_json_numbers_and_bad_bytes_are_malformed(api, service_key, body):
    response = api.post("/api/v1/_probe/write", data=body, content_type="application/json", **service_key.header)
    assert_error(response, 400, "malformed_json")


def test_json_numbers_arrive_as_decimal_never_float(api, service_key):
    response = api.post(
        "/api/v1/_probe/echo-types", {"q": 0.1, "n": 3, "s": "1.50"}, format="json", **service_key.header
    )
    assert response.json() == {"q": "Decimal", "n": "int", "s": "str"}


def test_non_json_content_type_is_415(api, service_key):
    response = api.post(
        "/api/v1/_probe/write",
        data="a=1",
        content_type="application/x-www-form-urlencoded",
        **service_key.header,
    )
    assert_error(response, 415, "unsupported_media_type")


def test_body_over_the_limit_is_413(api, service_key, settings):
    settings.API_MAX_BODY_BYTES = 1000
    body = json.dumps({"pad": "x" * 2000})
    response = api.post("/api/v1/_probe/write", data=body, content_type="application/json", **service_key.header)
    error = assert_error(response, 413, "request_too_large")
    assert error["details"] == {"limit_bytes": 1000}


def test_parser_bounds_what_it_reads_whatever_the_declared_length(settings):
    # Defence in depth behind the Content-Length check of the middleware.
    from io import BytesIO

    from billing_project.parsers import BoundedJSONParser, RequestTooLarge

    settings.API_MAX_BODY_BYTES = 1000
    with pytest.raises(RequestTooLarge):
        BoundedJSONParser().parse(BytesIO(json.dumps({"pad": "x" * 5000}).encode()))
    assert BoundedJSONParser().parse(BytesIO(b'{"a": 1}')) == {"a": 1}


def test_domain_error_keeps_code_status_and_details(api, service_key):
    response = api.post("/api/v1/_probe/error", {}, format="json", **service_key.header)
    error = assert_error(response, 409, "probe_conflict")
    assert error["details"] == {"id": 7}


def test_crash_is_json_500_without_internals(service_key):
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/_probe/error", **service_key.header)
    error = assert_error(response, 500, "internal_error")
    assert "boom" not in json.dumps(error)


def test_request_id_is_honoured_and_returned(api):
    response = api.get("/healthz", HTTP_X_REQUEST_ID="trace-abc.123")
    assert response["X-Request-ID"] == "trace-abc.123"


@pytest.mark.parametrize("incoming", [None, "", "has spaces", "x" * 200, "new\nline"])
def test_request_id_is_generated_when_absent_or_implausible(api, incoming):
    extra = {} if incoming is None else {"HTTP_X_REQUEST_ID": incoming}
    response = api.get("/healthz", **extra)
    rid = response["X-Request-ID"]
    assert rid != incoming
    assert len(rid) == 32


def test_every_error_carries_the_request_id_header(api):
    response = api.get("/api/v1/nothing-here", HTTP_X_REQUEST_ID="rid-1")
    assert response["X-Request-ID"] == "rid-1"
