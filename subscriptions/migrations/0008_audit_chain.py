"""Subscription events join the audit chain (billing_project/chain.py)."""

from django.db import migrations

from billing_project.db import chained


class Migration(migrations.Migration):
    dependencies = [("subscriptions", "0007_billing_periods"), ("billing_project", "0006_audit_chain")]

    operations = [chained("subscriptions_subscriptionevent")]
