"""Subscription events are the lifecycle's audit trail: append-only."""

from django.db import migrations

TABLE = "subscriptions_subscriptionevent"


class Migration(migrations.Migration):
    dependencies = [
        ("subscriptions", "0002_subscriptions"),
        ("billing_project", "0004_truncate_only_in_test_databases"),
    ]

    operations = [
        migrations.RunSQL(
            f"""
            CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE}
                FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
            CREATE TRIGGER {TABLE}_append_only_truncate BEFORE TRUNCATE ON {TABLE}
                FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
            """,
            f"""
            DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE};
            DROP TRIGGER IF EXISTS {TABLE}_append_only_truncate ON {TABLE};
            """,
        )
    ]
