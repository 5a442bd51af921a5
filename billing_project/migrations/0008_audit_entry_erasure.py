"""The audit log stays append-only, with one exception: an erasure (privacy/) may replace
the tenant's personal values in what old entries recorded, in a transaction that says so
(billing.audit_erasure), and change nothing else about an entry. DELETE and TRUNCATE are
refused as before."""

from django.db import migrations

# the columns that carry what an entry recorded; every other one must stay as it was
SCRUBBED = ["changes", "changes_text", "object_repr", "serialized_data", "additional_data"]

GUARD = f"""
CREATE OR REPLACE FUNCTION billing_audit_entry_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND coalesce(current_setting('billing.audit_erasure', true), '') = 'on'
       AND (to_jsonb(NEW) - '{{{",".join(SCRUBBED)}}}'::text[]) = (to_jsonb(OLD) - '{{{",".join(SCRUBBED)}}}'::text[]) THEN
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

    operations = [migrations.RunSQL(GUARD, UNGUARD)]
