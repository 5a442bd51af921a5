"""Approval requests, as made and as decided, join the audit chain (billing_project/chain.py)."""

from django.db import migrations

from billing_project.db import chained


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial"), ("billing_project", "0006_audit_chain")]

    operations = [chained("approvals_approvalrequest")]
