"""Two holes in the published-version guard, closed:

* a charge, tier or entitlement edited while its draft is being published: the part's
  trigger now takes a share lock on the version row, which conflicts with publish's
  FOR UPDATE, and reads the status after waiting — so either the edit lands before
  publish validates and hashes the terms, or it is refused;
* TRUNCATE, which fires no row trigger: refused on the catalog's version tables.
"""

from django.db import migrations

GUARD_PART = r"""
CREATE OR REPLACE FUNCTION plans_guard_version_part() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
    frozen boolean;
BEGIN
    -- TG_ARGV[0]: how to reach the version: 'version' (charge, entitlement) or 'charge' (tier)
    IF TG_ARGV[0] = 'version' THEN
        ids := ARRAY[CASE WHEN TG_OP <> 'INSERT' THEN OLD.version_id END,
                     CASE WHEN TG_OP <> 'DELETE' THEN NEW.version_id END];
    ELSE
        SELECT array_agg(c.version_id) INTO ids FROM plans_charge c
         WHERE c.id IN (CASE WHEN TG_OP <> 'INSERT' THEN OLD.charge_id END,
                        CASE WHEN TG_OP <> 'DELETE' THEN NEW.charge_id END);
    END IF;
    PERFORM 1 FROM plans_planversion WHERE id = ANY(ids) FOR SHARE;
    SELECT bool_or(status <> 'draft') INTO frozen FROM plans_planversion WHERE id = ANY(ids);
    IF frozen THEN
        RAISE EXCEPTION '%: part of a published plan version, which is immutable', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
"""

TABLES = ["plans_planversion", "plans_charge", "plans_chargetier", "plans_planentitlement"]
TRUNCATE = "".join(
    f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();\n"
    for t in TABLES
)
UNDO_TRUNCATE = "".join(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t};\n" for t in TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("plans", "0003_version_currency_upper"),
        ("billing_project", "0004_truncate_only_in_test_databases"),
    ]

    operations = [
        migrations.RunSQL(GUARD_PART, migrations.RunSQL.noop),
        migrations.RunSQL(TRUNCATE, UNDO_TRUNCATE),
    ]
