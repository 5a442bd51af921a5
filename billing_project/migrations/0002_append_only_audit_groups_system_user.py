"""Append-only guard (shared by every insert-only table), the audit log under it,
the staff groups, and the system user that tasks and commands act as."""

from django.db import migrations

APPEND_ONLY_FUNCTION = r"""
CREATE OR REPLACE FUNCTION billing_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Test connections set billing.allow_truncate to reset tables between
    -- tests; UPDATE and DELETE are refused whatever the session says.
    IF TG_OP = 'TRUNCATE' AND current_setting('billing.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Records here are never edited or deleted; write a correcting record instead.';
END;
$$;
"""


def guard_sql(table: str) -> str:
    return f"""
CREATE TRIGGER {table}_append_only
    BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
CREATE TRIGGER {table}_append_only_truncate
    BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
"""


def unguard_sql(table: str) -> str:
    return f"""
DROP TRIGGER IF EXISTS {table}_append_only ON {table};
DROP TRIGGER IF EXISTS {table}_append_only_truncate ON {table};
"""


GROUPS = ["finance", "finance-approver", "auditor", "support"]


def create_groups_and_system_user(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    for name in GROUPS:
        Group.objects.get_or_create(name=name)
    User.objects.get_or_create(
        username="billing-system",
        defaults={"is_active": False, "is_staff": False, "first_name": "Billing",
                  "last_name": "system", "password": "!"},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("billing_project", "0001_initial"),
        ("auditlog", "0017_add_actor_email"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunSQL(APPEND_ONLY_FUNCTION, "DROP FUNCTION IF EXISTS billing_refuse_change() CASCADE;"),
        migrations.RunSQL(guard_sql("auditlog_logentry"), unguard_sql("auditlog_logentry")),
        migrations.RunPython(create_groups_and_system_user, migrations.RunPython.noop),
    ]
