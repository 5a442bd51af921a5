"""Start-up checks of the settings that decide money and time (Django system checks,
tag `billing`). A bad value is refused before the service starts, with a message naming
its environment variable, rather than found later in an invoice or a lock-out.

The checks live with the app that uses each setting (this module: the API's and the
admin's limits; invoicing/checks.py: series, invoicing times and dunning). `manage.py
check`, `migrate` and `runserver` run them like every system check, so `make run`
stops at its migrate step. The WSGI application (gunicorn) and the Celery worker and
beat call `refuse_bad_settings()` as they start: Celery runs Django's checks too but
ignores what they find.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register, run_checks
from django.core.exceptions import ImproperlyConfigured

TAG = "billing"


def whole_number(name: str, *, minimum: int, check_id: str, unit: str, env: str | None = None) -> list[CheckMessage]:
    """An Error unless settings.`name` is an int ≥ `minimum` (0 or 1)."""
    value = getattr(settings, name, None)
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return []
    wanted = "a positive whole number" if minimum > 0 else "a whole number, 0 or more,"
    env = env or name
    return [
        Error(f"{env} must be {wanted} of {unit}; it is {value!r}.", hint=f"Set {env} in the environment.", id=check_id)
    ]


# (setting, environment variable, unit): limits that mean nothing at zero or below.
POSITIVE_LIMITS = [
    ("API_MAX_BODY_BYTES", "API_MAX_BODY_BYTES", "bytes"),
    ("API_DEFAULT_RATE_PER_MINUTE", "API_DEFAULT_RATE_PER_MINUTE", "requests"),
    ("API_KEY_CACHE_SECONDS", "API_KEY_CACHE_SECONDS", "seconds"),
    ("API_AUTH_FAILURES_PER_MINUTE", "API_AUTH_FAILURES_PER_MINUTE", "failures"),
    ("LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN", "LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN", "failures"),
    ("LOGIN_USERNAME_WINDOW_SECONDS", "LOGIN_USERNAME_WINDOW_SECONDS", "seconds"),
    ("LOGIN_USERNAME_MAX_DELAY_SECONDS", "LOGIN_USERNAME_MAX_DELAY_SECONDS", "seconds"),
    ("STRIPE_WEBHOOK_MAX_BODY_BYTES", "STRIPE_WEBHOOK_MAX_BODY_BYTES", "bytes"),
    ("AXES_FAILURE_LIMIT", "ADMIN_LOGIN_FAILURE_LIMIT", "failures"),
    ("COUNTER_TRUST_MS", "COUNTER_TRUST_MS", "milliseconds"),
    ("COUNTER_PENDING_GRACE_MS", "COUNTER_PENDING_GRACE_MS", "milliseconds"),
    ("READYZ_HEARTBEAT_MAX_AGE_SECONDS", "READYZ_HEARTBEAT_MAX_AGE_SECONDS", "seconds"),
]


@register(TAG)
def check_limits(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, env, unit in POSITIVE_LIMITS:
        errors += whole_number(name, env=env, minimum=1, check_id="billing.E009", unit=unit)
    deadline = getattr(settings, "READYZ_DEADLINE_SECONDS", None)
    if not isinstance(deadline, (int, float)) or isinstance(deadline, bool) or not 0 < deadline <= 10:
        errors.append(
            Error(
                f"READYZ_DEADLINE_SECONDS must be a number of seconds above 0 and at most 10; it is {deadline!r}.",
                hint="A readiness probe that waits longer holds a web worker as long.",
                id="billing.E009",
            )
        )
    cooloff = getattr(settings, "AXES_COOLOFF_TIME", None)
    if not isinstance(cooloff, timedelta) or cooloff <= timedelta(0):
        errors.append(
            Error(
                f"ADMIN_LOGIN_COOLOFF_MINUTES must be a positive whole number of minutes; it is {cooloff!r}.",
                id="billing.E009",
            )
        )
    return errors


@register(TAG)
def check_personal_data_keys(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """Personal data at rest (billing_project/personal_data.py): every key a Fernet key."""
    from cryptography.fernet import Fernet

    named = [("PERSONAL_DATA_KEY", settings.PERSONAL_DATA_KEY)]
    named += [(f"PERSONAL_DATA_KEY_FALLBACKS[{i}]", k) for i, k in enumerate(settings.PERSONAL_DATA_KEY_FALLBACKS)]
    errors: list[CheckMessage] = []
    for name, key in named:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            errors.append(
                Error(
                    f"{name} must be a Fernet key (32 bytes in URL-safe base64, 44 characters); it is not.",
                    hint='Make one with: python -c "from cryptography.fernet import Fernet; '
                    'print(Fernet.generate_key().decode())"',
                    id="billing.E012",
                )
            )
    if not errors and not settings.DEBUG and not os.environ.get("PERSONAL_DATA_KEY"):
        errors.append(
            Warning(
                "PERSONAL_DATA_KEY is unset: personal data is encrypted under a key derived from SECRET_KEY, so "
                "rotating SECRET_KEY (or its leak) is the data key's too.",
                hint="Set PERSONAL_DATA_KEY apart (README, Privacy and compliance: Rotating the key).",
                id="billing.W002",
            )
        )
    return errors


def refuse_bad_settings() -> None:
    """Raise ImproperlyConfigured listing every error of the `billing` checks (warnings pass)."""
    errors = [m for m in run_checks(tags=[TAG]) if m.is_serious()]
    if errors:
        listed = "\n".join(f"  {m.id}: {m.msg}" for m in errors)
        raise ImproperlyConfigured(f"Refusing to start: settings that decide money or time are wrong.\n{listed}")
