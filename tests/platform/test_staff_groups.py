"""Staff groups exist with the permissions of ARCHITECTURE.md's principals."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from billing_project.staff import GROUPS, sync_staff_groups

pytestmark = [pytest.mark.django_db]


def perms(group: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=group).permissions.select_related("content_type")
    }


def test_the_four_groups_exist():
    assert set(Group.objects.values_list("name", flat=True)) >= set(GROUPS)


def test_auditor_reads_the_audit_trail_and_changes_nothing():
    auditor = perms("auditor")
    assert "auditlog.view_logentry" in auditor
    assert "billing_project.view_apikey" in auditor
    assert "billing_project.view_taskfailure" in auditor
    reads = {"console.export_tenant_data"}  # downloading a tenant's data export reads, changes nothing
    assert all(p.split(".")[1].startswith("view_") or p in reads for p in auditor), auditor


def test_support_cannot_see_keys_or_the_audit_trail():
    support = perms("support")
    assert "subscriptions.view_tenant" in support
    assert "billing_project.view_apikey" not in support
    assert "auditlog.view_logentry" not in support


def test_finance_can_resolve_task_failures_but_not_manage_keys():
    finance = perms("finance")
    assert "billing_project.change_taskfailure" in finance
    assert not any(p.startswith("billing_project.") and "apikey" in p for p in finance)
    assert not any(".delete_" in p for p in finance)


def test_approver_holds_everything_finance_holds():
    assert perms("finance") <= perms("finance-approver")


def test_sync_restores_permissions_someone_removed():
    Group.objects.get(name="auditor").permissions.clear()
    sync_staff_groups()
    assert "auditlog.view_logentry" in perms("auditor")
