"""Usage events are append-only; received_at defaults to the inserting transaction's start."""

from django.db import migrations

from billing_project.db import append_only

TABLE = "usage_usageevent"


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0001_usage"),
        ("billing_project", "0004_truncate_only_in_test_databases"),
    ]

    operations = [
        append_only(TABLE),
        migrations.RunSQL(f"ALTER TABLE {TABLE} ALTER COLUMN received_at SET DEFAULT now();", migrations.RunSQL.noop),
    ]
