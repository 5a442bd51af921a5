"""The permission matrix, walked: every admin page and every admin action of every installed
app (ours, dj-stripe's, axes's, auditlog's, celery beat's), as each staff group and as a
staff member in no group, against the one declared matrix (billing_project/staff_matrix.py).
A model, a page or an action nobody declared fails here.

Found by an audit before: dj-stripe's `/admin/djstripe/<model>/action/<action>/<model>/`
ran `_sync_all_instances` (and `_cancel`, a subscription at Stripe) for a `support` user
with no dj-stripe permission, and answered 500 to a GET; an `auditor` could revoke any API
key, and run axes's "clean up expired attempts"."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory
from django.urls import reverse

from billing_project.staff_matrix import ACTIONS, EXTRA_PAGES, NO_GROUP, ROLES, page_rights
from tests.conftest import verified_login

pytestmark = [pytest.mark.django_db]
STANDARD = ("_changelist", "_add", "_history", "_delete", "_change")
MISSING = "999999999"  # no row has this key: the permission check comes before the lookup
MODELS = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def _label(item: Any) -> str:
    return str(item[0]._meta.label)


@pytest.fixture
def staff(db) -> dict[str, User]:
    users = {}
    for role in ROLES:
        user = User.objects.create_user(f"staff-{role}".replace(" ", "-"), password="x" * 16, is_staff=True)
        if role != NO_GROUP:
            user.groups.add(Group.objects.get(name=role))
        users[role] = User.objects.get(pk=user.pk)  # fresh: no permission cache
    return users


def client_for(user: User) -> Client:
    client = Client()
    verified_login(client, user)
    return client


def test_every_model_in_the_admin_is_in_the_matrix():
    undeclared = [label for label in map(_label, MODELS) if page_rights(label) is None]
    assert undeclared == [], f"declare who may see these in billing_project/staff_matrix.py: {undeclared}"


def test_every_extra_admin_page_is_in_the_matrix():
    extra = set()
    for model, model_admin in MODELS:
        for pattern in model_admin.get_urls():
            name = getattr(pattern, "name", None)
            if name and not name.endswith(STANDARD):
                extra.add((model._meta.label, name.removeprefix(f"{model._meta.app_label}_{model._meta.model_name}_")))
    assert extra == set(EXTRA_PAGES), extra ^ set(EXTRA_PAGES)


def test_every_admin_action_declares_its_permission_and_is_in_the_matrix(admin_user):
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    found = set()
    for model, model_admin in MODELS:
        actions: dict[str, Any] = model_admin.get_actions(request)
        for name, (function, _, _) in actions.items():
            if name == "delete_selected":
                continue
            assert getattr(function, "allowed_permissions", None), f"{model._meta.label}.{name} declares no permission"
            found.add((model._meta.label, name))
    assert found == set(ACTIONS), found ^ set(ACTIONS)


@pytest.mark.parametrize("item", MODELS, ids=_label)
def test_each_group_sees_and_changes_exactly_what_the_matrix_says(staff, item):
    model, model_admin = item
    label = model._meta.label
    rights = page_rights(label) or {}
    base = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    for role, user in staff.items():
        letters = rights.get(role, "")
        client = client_for(user)
        pages = {
            "list": (client.get(reverse(f"{base}_changelist")).status_code, 200 if "v" in letters else 403),
            "add": (client.get(reverse(f"{base}_add")).status_code, 200 if "a" in letters else 403),
            "change": (client.get(reverse(f"{base}_change", args=[MISSING])).status_code, 302 if letters else 403),
            "delete": (
                client.get(reverse(f"{base}_delete", args=[MISSING])).status_code,
                302 if "d" in letters else 403,
            ),
        }
        wrong = {page: got for page, (got, expected) in pages.items() if got != expected}
        assert not wrong, (label, role, letters, wrong)
        request = RequestFactory().get("/admin/")
        request.user = user
        actions = set(model_admin.get_actions(request)) - {"delete_selected"}
        expected = {name for (owner, name), groups in ACTIONS.items() if owner == label and role in groups}
        assert actions == expected, (label, role)
        assert ("delete_selected" in model_admin.get_actions(request)) == ("d" in letters), (label, role)


@pytest.mark.parametrize(("page", "groups"), sorted(EXTRA_PAGES.items()), ids=lambda x: str(x))
def test_each_extra_page_opens_for_its_groups_only(staff, page, groups):
    label, suffix = page
    app, model = label.lower().split(".")
    url = reverse(f"admin:{app}_{model}_{suffix}", args=[MISSING])
    for role, user in staff.items():
        status = client_for(user).get(url).status_code
        if role in groups:
            assert status != 403, (page, role, status)
        else:
            assert status == 403, (page, role, status)


@pytest.mark.parametrize(
    "action", ["_sync_all_instances", "_resync_instances", "_cancel", "_release_subscription_schedule"]
)
@pytest.mark.parametrize("model", ["subscription", "customer", "invoice"])
def test_dj_stripes_action_urls_are_gone_for_everyone(staff, admin_user, action, model):
    """The route no longer exists: what is left at that path is the admin's own redirect to
    an object's page (which checks permissions and finds no such object); nothing runs."""
    from django.urls import resolve

    url = f"/admin/djstripe/{model}/action/{action}/{model}/"
    assert resolve(url).url_name != "djstripe_custom_action"
    for user in [*staff.values(), admin_user]:
        client = client_for(user)
        for response in (client.get(url, follow=True), client.post(url, {"action": action}, follow=True)):
            assert response.status_code in (200, 403, 404), (user, response.status_code)
            assert b"Are you sure" not in response.content  # dj-stripe's confirmation page


def test_the_stripe_mirror_is_read_only_even_to_superusers(admin_user):
    """Only our services reach Stripe: the mirror has no add, change, delete or action."""
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    for model, model_admin in MODELS:
        if model._meta.app_label != "djstripe":
            continue
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request), model
        assert not model_admin.has_delete_permission(request), model
        assert model_admin.get_actions(request) == {}, model


def test_a_stripe_secret_key_is_never_shown(admin_user):
    from djstripe.models import APIKey

    model_admin = admin.site._registry[APIKey]
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    assert "secret" not in model_admin.get_fields(request)


SECRETS = sorted(
    (model._meta.label, field.name)
    for model, _ in MODELS
    for field in model._meta.concrete_fields
    if field.name in ("secret", "secret_hash", "password", "key", "bin_key", "token")
)


@pytest.mark.parametrize(("label", "field"), SECRETS, ids=lambda x: str(x))
def test_no_admin_list_filters_on_a_secret(admin_client, label, field):
    """`/admin/djstripe/apikey/?secret__startswith=sk_test_f` told an auditor whether the key
    began so: the whole Stripe key came back in 212 requests."""
    app, model = label.lower().split(".")
    url = reverse(f"admin:{app}_{model}_changelist")
    for lookup in (f"{field}__startswith", f"{field}__gt", field, f"{field}__regex"):
        assert admin_client.get(url, {lookup: "a"}).status_code == 400, (label, lookup)


def test_the_secrets_walked_include_the_stripe_keys():
    assert ("djstripe.APIKey", "secret") in SECRETS
    assert ("billing_project.ApiKey", "secret_hash") in SECRETS
    assert ("otp_totp.TOTPDevice", "key") in SECRETS
