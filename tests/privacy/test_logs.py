"""Logs never hold personal data or secrets: everything the service logs while tenants are
created with a name and an email, keys are used (and a wrong one tried), usage is reported,
entitlements are checked, invoices are read and exported, is captured at DEBUG through the
production JSON formatter and searched for the tenant's name and email and every secret."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from billing_project.scopes import PRIVACY_ADMIN
from invoicing.models import Invoice
from tests.agents.demo import bearer, load_demo
from tests.logcapture import json_log_handler

pytestmark = pytest.mark.django_db

NAME, EMAIL = "Zebulon Quartermaine-Ostrowski", "zebulon.q.ostrowski@example.test"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    handler, stream = json_log_handler()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("billing.access", "django.request", "billing_project", "usage")]
    states = [(lg.disabled, lg.level) for lg in loggers]
    for lg in loggers:
        lg.disabled = False
        lg.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    for lg, (disabled, lvl) in zip(loggers, states, strict=True):
        lg.disabled, lg.level = disabled, lvl


def test_nothing_logged_holds_a_name_an_email_or_a_key(api, make_key, tmp_path, clock, captured):
    credentials = load_demo(tmp_path)
    captured.truncate(0)  # the demo's own set-up ran with DEBUG on (its SQL is logged then)
    admin = make_key("service")
    assert api.put("/api/v1/tenants/zeb", {"name": NAME, "email": EMAIL, "currency": "USD"}, format="json",
                   **admin.header).status_code == 201  # fmt: skip
    assert api.put("/api/v1/tenants/zeb", {"name": NAME, "email": "bad address"}, format="json",
                   **admin.header).status_code == 400  # fmt: skip
    assert (
        api.post("/api/v1/tenants/zeb/subscription", {"plan": "pro"}, format="json", **admin.header).status_code == 201
    )
    service = bearer(credentials["service_key"])
    api.post("/api/v1/entitlements/check", {"tenant": "zeb", "feature": "api_calls"}, format="json", **service)
    api.get("/api/v1/tenants/zeb/billing", **service)
    number = (
        Invoice.objects.filter(tenant__external_id="acme-demo").exclude(number=None).values_list("number", flat=True)[0]
    )
    api.get(f"/api/v1/invoices/{number}", **service)
    api.get(f"/api/v1/invoices/{number}", HTTP_ACCEPT="text/html", **service)
    export = api.get("/api/v1/tenants/zeb/privacy/export", **make_key("service", scopes=[PRIVACY_ADMIN]).header)
    assert NAME.encode() in b"".join(export.streaming_content)  # the export has it; the logs must not
    wrong = admin.secret[:-4] + "xxxx"
    assert api.get("/api/v1/tenants/zeb/billing", HTTP_AUTHORIZATION=f"Bearer {wrong}").status_code == 401
    logged = captured.getvalue()
    assert logged.count("\n") >= 8, logged  # the access log saw the requests
    secrets = [admin.secret, wrong, credentials["service_key"], credentials["agent_key"]]
    for forbidden in [
        NAME,
        EMAIL,
        "Quartermaine",
        *secrets,
        *[p for s in secrets for p in s.split("_") if len(p) >= 12],
    ]:
        assert forbidden not in logged, forbidden
