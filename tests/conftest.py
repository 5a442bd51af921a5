"""Shared fixtures. Tests run on real PostgreSQL and Redis (never SQLite, no mocks of our code)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from billing_project.api_keys import api_key_create
from billing_project.models import ApiKey
from billing_project.redis_client import get_redis
from billing_project.scopes import AGENT_SCOPES, ALL_SCOPES
from tests.clock import NOW, SHIFTED_TO

_shifted: time_machine.travel | None = None


def pytest_configure(config: pytest.Config) -> None:
    """BILLING_TEST_CLOCK moves the whole process (ticking) before any test module is
    imported; tests that set their own clock nest inside it (tests/clock.py)."""
    global _shifted
    if SHIFTED_TO is not None and _shifted is None:
        _shifted = time_machine.travel(SHIFTED_TO, tick=True)
        _shifted.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _shifted
    if _shifted is not None:
        _shifted.stop()
        _shifted = None


def pytest_report_header(config: pytest.Config) -> str:
    process = f"shifted to {SHIFTED_TO.isoformat()}" if SHIFTED_TO else "real"
    return f"clock: {process}; the clock fixture freezes at {NOW.isoformat()}"


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """The clock frozen at tests/clock.NOW; `clock.shift(timedelta)` / `clock.move_to(at)`
    move it. Anything a test expects of periods, numbers or windows is computed from NOW."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@dataclass
class Key:
    key: ApiKey
    secret: str

    @property
    def header(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.secret}"}


@pytest.fixture
def make_key(db: None) -> Callable[..., Key]:
    def make(
        kind: str = "service",
        scopes: Iterable[str] | None = None,
        metrics: Iterable[str] = (),
        tenant: str | None = None,
        rate: int | None = None,
        name: str = "test key",
    ) -> Key:
        if scopes is None:
            scopes = AGENT_SCOPES if kind == "agent" else ALL_SCOPES
        created = api_key_create(
            name=name,
            kind=kind,
            scopes=scopes,
            metrics=metrics,
            tenant=tenant,
            rate_limit_per_minute=rate,
        )
        return Key(created.key, created.secret)

    return make


@pytest.fixture
def service_key(make_key: Callable[..., Key]) -> Key:
    return make_key("service")


@pytest.fixture
def agent_key(make_key: Callable[..., Key]) -> Key:
    return make_key("agent")


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture(autouse=True)
def _reset_redis() -> None:
    # Tests that point the service at a dead Redis must not leak the pool, nor a process's
    # memory of a missed counter update (usage.counters).
    get_redis.cache_clear()
    import usage.counters

    usage.counters._suspect = False
    # The database rolls back after each test but Redis does not: start every test without
    # the caches and counters of the one before (only this suite's own keys).
    from django.conf import settings

    client = get_redis()
    keys = list(client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def worker() -> Iterator[Any]:
    """A Celery worker thread on the suite's queue, running our tasks for real. The queue is
    purged around it, so nothing queued by an earlier test runs against this one's data."""
    from celery.contrib.testing.worker import start_worker

    from billing_project.celery import app

    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10) as w:
        yield w
    app.control.purge()


def verified_login(client: Any, user: Any) -> None:
    """Log `user` in as the admin's login does for staff with a second factor: a confirmed
    TOTP device, and a session verified by it (billing_project/staff_otp.py). Without it,
    finance staff and superusers are sent to enrol. The login itself, code and all, is
    tested in tests/security/test_staff_otp.py and in the browser."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client.force_login(user)
    device, _ = TOTPDevice.objects.get_or_create(user=user, name="test", defaults={"confirmed": True})
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


@pytest.fixture
def admin_client(db: None, admin_user: Any) -> Any:
    """pytest-django's admin_client, logged in with a second factor."""
    from django.test import Client

    client = Client()
    verified_login(client, admin_user)
    return client
