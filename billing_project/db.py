"""Database building blocks shared by the apps' migrations."""

from __future__ import annotations

from django.db import migrations


def append_only(table: str) -> migrations.RunSQL:
    """Make `table` insert-only: the shared billing_refuse_change() trigger (billing_project
    migrations 0002/0004) refuses UPDATE, DELETE and TRUNCATE on it."""
    return migrations.RunSQL(
        f"""
        CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER {table}_append_only_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
        """,
        f"""
        DROP TRIGGER IF EXISTS {table}_append_only ON {table};
        DROP TRIGGER IF EXISTS {table}_append_only_truncate ON {table};
        """,
    )
