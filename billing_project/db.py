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


def chained(table: str, exclude: tuple[str, ...] = (), when: str = "") -> migrations.RunSQL:
    """Put `table` under the audit chain (billing_project/chain.py): an AFTER trigger takes
    each inserted row's content hash, and a new one whenever its content changes, as a link
    for the sealer; rows already there are linked now (event `backfill`). `exclude` names
    bookkeeping columns left out of the hash (leases, retry counters); `when` is SQL on the
    row written `{row}.column`: only rows it holds for are chained (finalized invoices). The
    trigger carries what `audit verify` needs (the exclusions, the condition on `t`) as its
    arguments: the chain's registry is the database's own triggers."""
    excluded = "{" + ",".join(exclude) + "}"
    trigger_when = f"WHEN ({when.format(row='NEW')})" if when else ""
    condition = when.format(row="t")
    return migrations.RunSQL(
        f"""
        CREATE TRIGGER {table}_chain AFTER INSERT OR UPDATE ON {table}
            FOR EACH ROW {trigger_when} EXECUTE FUNCTION billing_chain_link('{excluded}', $cond${condition}$cond$);
        SET LOCAL TimeZone = 'UTC';
        INSERT INTO billing_project_chainlink
            (table_name, row_id, event, content_hash, created_at, prev_hash, link_hash)
            SELECT '{table}', t.id::text, 'backfill', billing_chain_hash(to_jsonb(t) - '{excluded}'::text[]),
                   clock_timestamp(), '', ''
            FROM {table} t {"WHERE " + condition if condition else ""} ORDER BY t.id;
        """,  # noqa: S608  (migrations' own table names)
        f"""
        DROP TRIGGER IF EXISTS {table}_chain ON {table};
        """,
    )
