"""Lockouts and limits that cannot be turned against staff or services, and that read the
client's address from the trusted proxy only (billing_project/net.py).

Audited: axes locked per username + REMOTE_ADDR, so behind a proxy (one address for
everyone) five guesses locked a named staff member out, and spraying many usernames was
not limited; failed API authentications were not limited at all."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing_project.login_throttle import username_wait_seconds
from billing_project.net import client_address
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, tenant_upsert
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]
PASSWORD = "a-long-enough-password-1"
PROXY = "10.0.0.7"


def request_from(remote: str, forwarded: str | None = None) -> SimpleNamespace:
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return SimpleNamespace(META=meta)


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.5", None, [], "203.0.113.5"),
        ("203.0.113.5", "198.51.100.1", [], "203.0.113.5"),  # no trusted proxy: the header is a client's word
        (PROXY, "198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
        (PROXY, "1.2.3.4, 198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),  # the client prepended a lie
        (PROXY, "198.51.100.1, 10.0.0.9", ["10.0.0.0/8"], "198.51.100.1"),  # two proxies of ours
        ("203.0.113.5", "198.51.100.1", ["10.0.0.0/8"], "203.0.113.5"),  # not from the proxy: ignored
        (PROXY, "not an address", ["10.0.0.0/8"], PROXY),
        (PROXY, None, ["10.0.0.0/8"], PROXY),
    ],
)
def test_the_client_address_comes_from_the_trusted_proxy_only(settings, remote, forwarded, trusted, expected):
    settings.TRUSTED_PROXIES = trusted
    assert client_address(request_from(remote, forwarded)) == expected


@pytest.fixture
def ana(db):
    return get_user_model().objects.create_superuser("ana", "ana@example.com", PASSWORD)


def login(username: str, password: str, forwarded: str) -> tuple[int, bool]:
    client = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    return response.status_code, "_auth_user_id" in client.session


def test_a_guesser_behind_the_proxy_locks_out_only_itself(settings, ana):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN = 100  # this test is about the per-address lockout
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login("ana", "wrong", forwarded="198.51.100.66")
    status, logged_in = login("ana", PASSWORD, forwarded="198.51.100.66")
    assert (status, logged_in) == (429, False)  # the guesser's address is locked out
    status, logged_in = login("ana", PASSWORD, forwarded="198.51.100.10")
    assert logged_in, status  # ana, from her own address behind the same proxy, is not


def test_a_username_sprayed_from_many_addresses_is_slowed_never_locked(settings, ana):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN = 3
    settings.LOGIN_USERNAME_MAX_DELAY_SECONDS = 1
    for i in range(3):  # below axes's per-address limit at every address
        login("ana", "wrong", forwarded=f"198.51.100.{i + 1}")
    assert username_wait_seconds("ana") > 0
    _, logged_in = login("ana", PASSWORD, forwarded="198.51.100.10")
    assert not logged_in  # even the right password waits its turn
    deadline = time.monotonic() + 5
    while username_wait_seconds("ana") > 0:  # the delay lapses on Redis's clock
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, logged_in = login("ana", PASSWORD, forwarded="198.51.100.10")
    assert logged_in, status
    assert username_wait_seconds("ana") == 0  # a success clears it


def test_the_slowdown_of_one_username_leaves_the_others_alone(settings, ana):
    get_user_model().objects.create_superuser("bo", "bo@example.com", PASSWORD)
    settings.LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN = 2
    settings.AXES_FAILURE_LIMIT = 100
    for _ in range(4):
        login("ana", "wrong", forwarded="198.51.100.1")
    assert username_wait_seconds("ana") > 0
    assert login("bo", PASSWORD, forwarded="198.51.100.1")[1]


# ------------------------------------------------------------------ the API
@pytest.fixture
def service(make_key, clock):
    catalog_import(spec=catalog_validate(demo()))
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    subscription_create(tenant=tenant, plan_code="team", actor="test")
    return make_key("service", metrics=["ai_tokens"])


def test_failed_api_authentications_are_limited_per_client_address(settings, service):
    settings.API_AUTH_FAILURES_PER_MINUTE = 3
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    guesser = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.66")
    for _ in range(3):
        assert guesser.get("/api/v1/plans", HTTP_AUTHORIZATION="Bearer bsk_nope_nope").status_code == 401
    limited = guesser.get("/api/v1/plans", HTTP_AUTHORIZATION="Bearer bsk_nope_nope")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "address" in limited.json()["error"]["message"]  # not "this API key": it is not one
    assert int(limited["Retry-After"]) >= 1
    # a working key from the same address is not held back, nor a bad one from elsewhere
    assert guesser.get("/api/v1/plans", HTTP_AUTHORIZATION=f"Bearer {service.secret}").status_code == 200
    other = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.10")
    assert other.get("/api/v1/plans", HTTP_AUTHORIZATION="Bearer bsk_nope_nope").status_code == 401


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("success_url", "http://app.test/ok"),
        ("success_url", "https://evil.example/ok"),
        ("cancel_url", "https://app.test.evil.example/no"),
        ("cancel_url", "https://user@evil.example/no"),
        ("success_url", "javascript:alert(1)"),
        ("success_url", "https://evil.example\\@app.test/"),  # a browser's host: evil.example
        ("cancel_url", "https://evil.example%5C@app.test/"),
        ("cancel_url", "https://app.test@evil.example/"),
    ],
)
def test_checkout_sends_the_user_back_only_to_an_allowed_https_host(api, service, field, url):
    body = {"plan": "team", "success_url": "https://app.test/ok", "cancel_url": "https://app.test/no", field: url}
    response = api.post("/api/v1/tenants/acme/checkout", body, format="json", **service.header)
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["details"]["fields"]) == {field}


def test_the_portal_scope_alone_starts_a_checkout_and_changes_a_plan_but_nothing_else(api, make_key, service):
    portal = make_key("service", scopes=["portal"])
    change = api.post(
        "/api/v1/tenants/acme/subscription/change",
        {"plan": "pro", "when": "period_end"},
        format="json",
        **portal.header,
    )
    assert change.status_code == 200, change.content
    checkout = api.post(
        "/api/v1/tenants/acme/checkout",
        {"plan": "team", "success_url": "http://app.test/ok", "cancel_url": "https://app.test/no"},
        format="json",
        **portal.header,
    )
    assert checkout.status_code == 400  # past the scope check, refused for its URL
    cancel = api.post("/api/v1/tenants/acme/subscription/cancel", {}, format="json", **portal.header)
    assert (cancel.status_code, cancel.json()["error"]["code"]) == (403, "missing_scope")


def test_refused_attempts_neither_re_arm_the_delay_nor_count_for_axes(settings, ana):
    """An attacker trying once a minute kept the delay at its maximum for ever, and the real
    person's refused tries counted as axes failures until their own address was locked."""
    from axes.models import AccessAttempt

    from billing_project.login_throttle import _keys
    from billing_project.redis_client import get_redis

    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN = 2
    settings.LOGIN_USERNAME_MAX_DELAY_SECONDS = 60
    for i in range(3):
        login("ana", "wrong", forwarded=f"198.51.100.{i + 1}")
    assert get_redis().pttl(_keys("ana")[1]) > 0
    get_redis().set(_keys("ana")[1], "1", px=30_000)  # as if armed long: longer than the loop below takes
    armed = get_redis().pttl(_keys("ana")[1])
    for _ in range(settings.AXES_FAILURE_LIMIT + 2):  # refused in the form: no password checked
        assert login("ana", "wrong", forwarded="198.51.100.200") == (200, False)
        assert login("ana", PASSWORD, forwarded="192.0.2.77") == (200, False)
    assert get_redis().pttl(_keys("ana")[1]) <= armed  # not re-armed by the refusals
    locked = AccessAttempt.objects.filter(username="ana", ip_address__in=["198.51.100.200", "192.0.2.77"])
    assert sum(a.failures_since_start for a in locked) == 0


def test_from_an_address_it_logged_in_from_before_a_staff_member_is_never_slowed(settings, ana):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN = 2
    assert login("ana", PASSWORD, forwarded="192.0.2.77")[1]  # ana's office
    for i in range(5):
        login("ana", "wrong", forwarded=f"198.51.100.{i + 1}")
    assert username_wait_seconds("ana", "198.51.100.99") > 0  # a new address waits
    assert username_wait_seconds("ana", "192.0.2.77") == 0
    assert login("ana", PASSWORD, forwarded="192.0.2.77")[1]
