"""Subscription events are the lifecycle's audit trail: append-only."""

from django.db import migrations

from billing_project.db import append_only


class Migration(migrations.Migration):
    dependencies = [
        ("subscriptions", "0002_subscriptions"),
        ("billing_project", "0004_truncate_only_in_test_databases"),
    ]

    operations = [append_only("subscriptions_subscriptionevent")]
