"""What staff may reach in the admin, once every app has registered its models.

Two holes were found by an audit, both in other apps' admins:
- dj-stripe's model admins add `/admin/djstripe/<model>/action/<action>/<model>/`, behind
  `admin_view` only: any staff member could run `_sync_all_instances` or `_cancel` (a
  subscription, at Stripe). The Stripe mirror is read-only to staff here: each dj-stripe
  model is shown by a plain read-only admin, with no actions and no URLs of its own. Only
  our services reach Stripe.
- An admin action without `allowed_permissions` is open to anyone who can see the list
  (axes's "clean up expired attempts" to an auditor). Every action of another app that
  declares none gets one here: `delete` for those that delete, `change` for the rest.
  Our own actions declare theirs (tests/security/test_admin_matrix.py walks them all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db import models

from .admin_base import ReadOnlyAdmin

# Fields no admin URL may filter on: `?secret__startswith=sk_live_a` answered whether the
# row matched, so an auditor could read a Stripe key a character at a time.
SECRET_FIELDS = frozenset({"secret", "secret_hash", "password", "key", "bin_key", "token", "secret_key"})
OURS = ("billing_project", "plans", "subscriptions", "usage", "entitlements", "invoicing", "webhooks")
DELETING = ("delete", "cleanup", "clean_up", "purge", "reset")


class StripeMirrorAdmin(ReadOnlyAdmin):
    """A dj-stripe model as Stripe last told us: read-only, no actions, no extra URLs."""

    actions = None
    show_full_result_count = False  # the mirror can be large; a count per page is not free
    list_per_page = 50

    def get_actions(self, request: Any) -> dict[str, Any]:
        return {}


def _mirror_admin(model: type[models.Model], original: admin.ModelAdmin) -> type[StripeMirrorAdmin]:  # type: ignore[type-arg]
    names = {f.name for f in model._meta.concrete_fields}
    wanted = ["__str__", "id", *getattr(original, "list_display", ()), "created", "livemode"]
    display = list(dict.fromkeys(x for x in wanted if x == "__str__" or x in names))
    attributes = {
        "list_display": display,
        "search_fields": [x for x in ("id",) if x in names],
        "list_filter": [x for x in ("livemode",) if x in names],
        # a Stripe secret key is never shown, not even to staff who may read the mirror
        "exclude": [x for x in ("secret",) if x in names],
        "__module__": __name__,
    }
    return type(f"{model.__name__}MirrorAdmin", (StripeMirrorAdmin,), attributes)


def _declared(action: Callable[..., Any], name: str) -> Callable[..., Any]:
    """The action, with the permission it needs declared (a new function: theirs is untouched)."""
    needed = ("delete",) if name.startswith(DELETING) or "delete" in name else ("change",)

    def declared(modeladmin: Any, request: Any, queryset: Any) -> Any:
        return action(modeladmin, request, queryset)

    declared.__name__ = name
    declared.short_description = getattr(action, "short_description", name.replace("_", " "))  # type: ignore[attr-defined]
    declared.allowed_permissions = needed  # type: ignore[attr-defined]
    return declared


def _with_declared_actions(model_admin: admin.ModelAdmin) -> type[admin.ModelAdmin] | None:  # type: ignore[type-arg]
    """A subclass of the admin whose undeclared actions declare a permission, or None."""
    replaced: dict[str, Any] = {}
    actions: list[Any] = []
    for entry in model_admin.actions or ():
        function = getattr(type(model_admin), entry) if isinstance(entry, str) else entry
        name = entry if isinstance(entry, str) else getattr(entry, "__name__", repr(entry))
        if getattr(function, "allowed_permissions", None):
            actions.append(entry)
            continue
        replaced[name] = _declared(function, name)
        actions.append(replaced[name])
    if not replaced:
        return None
    return type(type(model_admin).__name__, (type(model_admin),), {"actions": actions, "__module__": __name__})


class SecondFactorDeviceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Staff's authenticators (django-otp): who has one, confirmed or not. No page shows a
    device's key (django-otp's own admin had two, and answered 500 for a missing one);
    a superuser deletes a lost device, and its owner enrols a new one at /admin/otp/enroll/."""

    list_display = ["user", "name", "confirmed", "last_used_at"]
    list_filter = ["confirmed"]
    search_fields = ["user__username", "name"]
    fields = ("user", "name", "confirmed", "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


def _without_secret_lookups(model_admin: admin.ModelAdmin) -> type[admin.ModelAdmin]:  # type: ignore[type-arg]
    """A subclass of the admin that refuses every lookup through a secret field (400)."""
    base = type(model_admin)

    def lookup_allowed(self: Any, lookup: str, value: Any, request: Any = None) -> bool:
        if SECRET_FIELDS & set(lookup.split("__")):
            return False
        return bool(base.lookup_allowed(self, lookup, value, request))

    return type(base.__name__, (base,), {"lookup_allowed": lookup_allowed, "__module__": base.__module__})


def secure_admin(site: admin.AdminSite) -> None:
    """Run once every app's admin is registered (billing_project's AppConfig.ready)."""
    _replace_risky_admins(site)
    for model, model_admin in list(site._registry.items()):
        site.unregister(model)
        site.register(model, _without_secret_lookups(model_admin))


def _replace_risky_admins(site: admin.AdminSite) -> None:
    for model, model_admin in list(site._registry.items()):
        label = model._meta.app_label
        if model._meta.label == "otp_totp.TOTPDevice":
            site.unregister(model)
            site.register(model, SecondFactorDeviceAdmin)
        elif label == "djstripe":
            site.unregister(model)
            site.register(model, _mirror_admin(model, model_admin))
        elif label not in OURS:
            declared = _with_declared_actions(model_admin)
            if declared is not None:
                site.unregister(model)
                site.register(model, declared)
