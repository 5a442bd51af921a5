"""Usage events are append-only; the aggregation watermark starts at the epoch."""

from django.db import migrations

TABLE = "usage_usageevent"


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0001_usage"),
        ("billing_project", "0004_truncate_only_in_test_databases"),
    ]

    operations = [
        migrations.RunSQL(
            f"""
            CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE}
                FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
            CREATE TRIGGER {TABLE}_append_only_truncate BEFORE TRUNCATE ON {TABLE}
                FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
            ALTER TABLE {TABLE} ALTER COLUMN received_at SET DEFAULT now();
            """,
            f"""
            DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE};
            DROP TRIGGER IF EXISTS {TABLE}_append_only_truncate ON {TABLE};
            """,
        ),
    ]
