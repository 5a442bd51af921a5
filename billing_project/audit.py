"""Audit plumbing shared by every app.

django-auditlog records who changed which row. Requests get their actor from
its middleware; tasks and management commands run as `system_actor()` so that
no change is ever anonymous. The log table itself is append-only (a trigger
refuses UPDATE, DELETE and TRUNCATE; see migrations/0002).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from auditlog.context import set_actor, set_extra_data
from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from .api_keys import ApiPrincipal
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


@contextlib.contextmanager
def api_actor(principal: ApiPrincipal, remote_addr: str | None = None) -> Iterator[None]:
    """For a write made through the API: no staff user stands behind an API key, so its
    entries name the key in `additional_data` (`{"actor": "service:bsk_…", "api_key_id"}`,
    shown as the actor in the admin's audit log). Not nested in another actor context:
    API requests have none (StaffAuditlogMiddleware serves staff pages only)."""
    extra = {
        "additional_data": {"actor": principal.label(), "api_key_id": principal.key_id},
        "remote_addr": remote_addr,
    }
    with set_extra_data(extra):
        yield


def api_actor_of(entry: LogEntry) -> str | None:
    """The API key an entry was made with, as api_actor() recorded it."""
    data = entry.additional_data
    return str(data["actor"]) if isinstance(data, dict) and data.get("actor") else None


auditlog.register(ApiKey, exclude_fields=["last_used_at", "secret_hash"])
