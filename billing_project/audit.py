"""Audit plumbing shared by every app.

django-auditlog records who changed which row. Requests get their actor from
its middleware; tasks and management commands run as `system_actor()` so that
no change is ever anonymous. The log table itself is append-only (a trigger
refuses UPDATE, DELETE and TRUNCATE; see migrations/0002).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from auditlog.context import set_actor
from auditlog.registry import auditlog
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from .models import ApiKey

SYSTEM_USERNAME = "billing-system"


def system_user() -> AbstractBaseUser:
    """The actor of changes made by tasks and commands (created by a migration; cannot log in)."""
    user, _ = get_user_model().objects.get_or_create(
        username=SYSTEM_USERNAME,
        defaults={"is_active": False, "is_staff": False, "first_name": "Billing", "last_name": "system"},
    )
    return user


@contextlib.contextmanager
def system_actor() -> Iterator[None]:
    with set_actor(system_user()):
        yield


auditlog.register(ApiKey, exclude_fields=["last_used_at", "secret_hash"])
