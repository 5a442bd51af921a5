"""A tenant id is 1-200 characters of A-Z a-z 0-9 . _ : - and starts with a letter or digit.

The same rule as subscriptions.tenant_ids.TENANT_ID_PATTERN (the API and the services
refuse other ids with a clear message; this is the database's last word). Written as
SQL, not as a model constraint, so that the model's migration state is left alone.

Existing rows are the platform's own ids and cannot be renamed here: the constraint is
added NOT VALID (every new or changed row is checked) and validated at once when no
existing row breaks it; otherwise staff can list them with
`SELECT external_id FROM subscriptions_tenant WHERE external_id !~ '<pattern>'`
and validate later with `ALTER TABLE subscriptions_tenant VALIDATE CONSTRAINT …`.
"""

from django.db import migrations

PATTERN = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"


class Migration(migrations.Migration):
    dependencies = [
        ("subscriptions", "0005_billable_boundaries_index"),
    ]

    operations = [
        migrations.RunSQL(
            f"""
            ALTER TABLE subscriptions_tenant ADD CONSTRAINT tenant_external_id_format
                CHECK (external_id ~ '{PATTERN}') NOT VALID;
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM subscriptions_tenant WHERE external_id !~ '{PATTERN}') THEN
                    ALTER TABLE subscriptions_tenant VALIDATE CONSTRAINT tenant_external_id_format;
                END IF;
            END
            $$;
            """,
            "ALTER TABLE subscriptions_tenant DROP CONSTRAINT IF EXISTS tenant_external_id_format;",
        ),
    ]
