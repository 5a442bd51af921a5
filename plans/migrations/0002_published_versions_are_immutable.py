"""A published plan version, its charges, tiers and entitlements cannot be edited or
deleted by anything — admin, ORM or raw SQL. The one change allowed is retiring
it (published → archived). Prices change by publishing a new version."""

from django.db import migrations

GUARD_VERSION = r"""
CREATE OR REPLACE FUNCTION plans_guard_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'plan version % is %: it cannot be deleted', OLD.id, OLD.status
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'draft' THEN
        IF NEW.status NOT IN ('draft', 'published') THEN
            RAISE EXCEPTION 'a draft plan version can only be published'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW IS NOT DISTINCT FROM OLD THEN
        RETURN NEW;
    END IF;
    IF OLD.status = 'published' AND NEW.status = 'archived'
       AND (NEW.plan_id, NEW.version, NEW.interval, NEW.currency, NEW.base_fee, NEW.trial_days,
            NEW.content_hash, NEW.created_at, NEW.published_at)
           IS NOT DISTINCT FROM
           (OLD.plan_id, OLD.version, OLD.interval, OLD.currency, OLD.base_fee, OLD.trial_days,
            OLD.content_hash, OLD.created_at, OLD.published_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'plan version % is %: published versions are immutable; publish a new version',
        OLD.id, OLD.status USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER plans_planversion_guard
    BEFORE UPDATE OR DELETE ON plans_planversion
    FOR EACH ROW EXECUTE FUNCTION plans_guard_version();
"""

GUARD_CHILD = r"""
CREATE OR REPLACE FUNCTION plans_guard_version_part() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    frozen boolean;
BEGIN
    -- TG_ARGV[0]: how to reach the version: 'version' (charge, entitlement) or 'charge' (tier)
    IF TG_ARGV[0] = 'version' THEN
        SELECT bool_or(v.status <> 'draft') INTO frozen FROM plans_planversion v
         WHERE v.id IN (
            CASE WHEN TG_OP <> 'INSERT' THEN OLD.version_id END,
            CASE WHEN TG_OP <> 'DELETE' THEN NEW.version_id END);
    ELSE
        SELECT bool_or(v.status <> 'draft') INTO frozen
          FROM plans_charge c JOIN plans_planversion v ON v.id = c.version_id
         WHERE c.id IN (
            CASE WHEN TG_OP <> 'INSERT' THEN OLD.charge_id END,
            CASE WHEN TG_OP <> 'DELETE' THEN NEW.charge_id END);
    END IF;
    IF frozen THEN
        RAISE EXCEPTION '%: part of a published plan version, which is immutable', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER plans_charge_guard BEFORE INSERT OR UPDATE OR DELETE ON plans_charge
    FOR EACH ROW EXECUTE FUNCTION plans_guard_version_part('version');
CREATE TRIGGER plans_planentitlement_guard BEFORE INSERT OR UPDATE OR DELETE ON plans_planentitlement
    FOR EACH ROW EXECUTE FUNCTION plans_guard_version_part('version');
CREATE TRIGGER plans_chargetier_guard BEFORE INSERT OR UPDATE OR DELETE ON plans_chargetier
    FOR EACH ROW EXECUTE FUNCTION plans_guard_version_part('charge');
"""

DROP = """
DROP TRIGGER IF EXISTS plans_planversion_guard ON plans_planversion;
DROP TRIGGER IF EXISTS plans_charge_guard ON plans_charge;
DROP TRIGGER IF EXISTS plans_planentitlement_guard ON plans_planentitlement;
DROP TRIGGER IF EXISTS plans_chargetier_guard ON plans_chargetier;
DROP FUNCTION IF EXISTS plans_guard_version();
DROP FUNCTION IF EXISTS plans_guard_version_part();
"""


class Migration(migrations.Migration):
    dependencies = [("plans", "0001_initial")]

    operations = [
        migrations.RunSQL(GUARD_VERSION + GUARD_CHILD, DROP),
    ]
