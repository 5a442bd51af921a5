"""Test settings: production settings plus speed knobs. Same engines, same migrations."""

from __future__ import annotations

from .settings import *  # noqa: F403
from .settings import DATABASES

# Cheap password hashing: tests create many staff users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Transactional tests wipe tables with TRUNCATE between tests. The append-only
# triggers refuse TRUNCATE unless the session sets this flag; only test
# connections do. UPDATE and DELETE stay refused whatever the flag says.
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"]["options"] = "-c billing.allow_truncate=on"
DATABASES["default"]["CONN_MAX_AGE"] = 0

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# A developer's `make run` may share the embedded Redis: keep tests out of its way.
# TEST_REDIS_KEY_PREFIX lets two suites share one Redis (e.g. two checkouts on one machine).
# Under pytest-xdist each worker has its own database (pytest-django: test_…_gw0) and its own
# keys and queue here, so workers never see each other's caches, counters or tasks.
_XDIST_WORKER = env.str("PYTEST_XDIST_WORKER", default="")  # noqa: F405
REDIS_KEY_PREFIX = env.str("TEST_REDIS_KEY_PREFIX", default="billing-test") + (  # noqa: F405
    f"-{_XDIST_WORKER}" if _XDIST_WORKER else ""
)
CACHES = {**CACHES}  # noqa: F405
CACHES["default"] = {**CACHES["default"], "KEY_PREFIX": f"{REDIS_KEY_PREFIX}-cache"}
CELERY_TASK_DEFAULT_QUEUE = REDIS_KEY_PREFIX
# A trust lease of a minute: a check warmed a moment ago stays in the fast lane however
# loaded the machine is. The tests of the lease itself set a short one.
COUNTER_TRUST_MS = 60_000
# The test client speaks plain http: no redirect to https. What production gets with DEBUG
# off is tested in a process of its own (tests/security/test_deploy.py).
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
CHECKOUT_ALLOWED_HOSTS = ["app.test", "app.example.test"]
