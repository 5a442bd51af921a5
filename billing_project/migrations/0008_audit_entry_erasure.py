"""The audit log stays append-only, with one exception: an erasure (privacy/) may replace
personal values in what old entries recorded, in a transaction that says so
(billing.audit_erasure). Only that: billing_erased_only() holds when the new JSON is the old
one with some values replaced by "(erased)" (same keys, same lengths, every other value
equal), so no amount, actor or status can be rewritten through it; the change message may
only be emptied; every other column stays as it was. DELETE and TRUNCATE are refused as
before."""

from django.db import migrations

ERASED_ONLY = r"""
CREATE OR REPLACE FUNCTION billing_erased_only(o jsonb, n jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k text;
    i int;
BEGIN
    IF o IS NOT DISTINCT FROM n OR n = '"(erased)"'::jsonb THEN
        RETURN true;
    END IF;
    IF o IS NULL OR n IS NULL OR jsonb_typeof(o) <> jsonb_typeof(n) THEN
        RETURN false;
    END IF;
    IF jsonb_typeof(o) = 'object' THEN
        IF (SELECT array_agg(x ORDER BY x) FROM jsonb_object_keys(o) x)
           IS DISTINCT FROM (SELECT array_agg(x ORDER BY x) FROM jsonb_object_keys(n) x) THEN
            RETURN false;
        END IF;
        FOR k IN SELECT jsonb_object_keys(o) LOOP
            IF NOT billing_erased_only(o -> k, n -> k) THEN
                RETURN false;
            END IF;
        END LOOP;
        RETURN true;
    END IF;
    IF jsonb_typeof(o) = 'array' THEN
        IF jsonb_array_length(o) <> jsonb_array_length(n) THEN
            RETURN false;
        END IF;
        FOR i IN 0 .. jsonb_array_length(o) - 1 LOOP
            IF NOT billing_erased_only(o -> i, n -> i) THEN
                RETURN false;
            END IF;
        END LOOP;
        RETURN true;
    END IF;
    RETURN false;  -- a scalar that changed into anything but "(erased)"
END;
$$;
"""

GUARD = """
CREATE OR REPLACE FUNCTION billing_audit_entry_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND coalesce(current_setting('billing.audit_erasure', true), '') = 'on'
       AND (to_jsonb(NEW) - '{changes,changes_text,serialized_data,additional_data}'::text[])
           = (to_jsonb(OLD) - '{changes,changes_text,serialized_data,additional_data}'::text[])
       AND billing_erased_only(OLD.changes::jsonb, NEW.changes::jsonb)
       AND billing_erased_only(OLD.serialized_data::jsonb, NEW.serialized_data::jsonb)
       AND billing_erased_only(OLD.additional_data::jsonb, NEW.additional_data::jsonb)
       AND (NEW.changes_text = OLD.changes_text OR NEW.changes_text = '') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Records here are never edited or deleted; write a correcting record instead.';
END;
$$;
DROP TRIGGER IF EXISTS auditlog_logentry_append_only ON auditlog_logentry;
CREATE TRIGGER auditlog_logentry_append_only BEFORE UPDATE OR DELETE ON auditlog_logentry
    FOR EACH ROW EXECUTE FUNCTION billing_audit_entry_guard();
"""

UNGUARD = """
DROP TRIGGER IF EXISTS auditlog_logentry_append_only ON auditlog_logentry;
CREATE TRIGGER auditlog_logentry_append_only BEFORE UPDATE OR DELETE ON auditlog_logentry
    FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
DROP FUNCTION IF EXISTS billing_audit_entry_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("billing_project", "0007_privacy_admin_scope")]

    operations = [
        migrations.RunSQL(ERASED_ONLY, "DROP FUNCTION IF EXISTS billing_erased_only(jsonb, jsonb);"),
        migrations.RunSQL(GUARD, UNGUARD),
    ]
