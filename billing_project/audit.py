"""Audit plumbing shared by every app.

django-auditlog records who changed which row. Requests get their actor from
its middleware; tasks and management commands run as `system_actor()` so that
no change is ever anonymous. The log table itself is append-only (a trigger
refuses UPDATE, DELETE and TRUNCATE; see migrations/0002).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from functools import partial
from typing import Any

from auditlog.context import _set_extra_data, auditlog_value
from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models.signals import pre_save

from .api_keys import ApiPrincipal
from .models import ApiKey, WorkItem

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
    with audit_context({"actor": system_user()}):
        yield


@contextlib.contextmanager
def acting_as(label: str) -> Iterator[None]:
    """Audit entries made inside name `label` as their actor (`task:<name>[<id>]`,
    `stripe:evt_…`), recorded as the system user with the label in `additional_data`,
    as api_actor() does for keys. Nestable: the inner label wins inside, the outer one
    holds again after (a task processing a webhook: the event is the actor)."""
    with audit_context({"actor": system_user(), "additional_data": {"actor": label}}):
        yield


_contexts = itertools.count()


@contextlib.contextmanager
def audit_context(data: dict[str, Any]) -> Iterator[None]:
    """auditlog's set_actor/set_extra_data, made nestable. Theirs name each context by
    time.time(), which repeats (always, on a frozen test clock; now and then on a real
    one), and never put the outer context back: after a nested context ended, the outer
    one's entries had no actor. Here each context has its own id and restores the outer."""
    duid = ("billing-audit", next(_contexts))
    token = auditlog_value.set({**data, "signal_duid": duid})
    pre_save.connect(partial(_set_extra_data, signal_duid=duid), sender=LogEntry, dispatch_uid=duid, weak=False)
    try:
        yield
    finally:
        pre_save.disconnect(sender=LogEntry, dispatch_uid=duid)
        auditlog_value.reset(token)


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
    with audit_context(extra):
        yield


def api_actor_of(entry: LogEntry) -> str | None:
    """The API key an entry was made with, as api_actor() recorded it."""
    data = entry.additional_data
    return str(data["actor"]) if isinstance(data, dict) and data.get("actor") else None


auditlog.register(ApiKey, exclude_fields=["last_used_at", "secret_hash"])
# Background work: each failure, block and staff retry, with who retried it and why.
auditlog.register(WorkItem)
