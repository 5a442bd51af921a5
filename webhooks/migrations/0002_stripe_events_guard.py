"""A stored Stripe event is what Stripe sent: only its processing bookkeeping changes.
processed_at is set once and never cleared or moved, attempts only grow; every other
column is frozen, and DELETE and TRUNCATE are refused (TRUNCATE as for every append-only
table: allowed to the test suite only)."""

from django.db import migrations

GUARD = r"""
CREATE OR REPLACE FUNCTION webhooks_guard_stripe_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'webhooks_stripeevent is append-only: DELETE refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.id, NEW.stripe_id, NEW.type, NEW.api_version, NEW.livemode, NEW.created, NEW.payload, NEW.received_at)
       IS DISTINCT FROM
       (OLD.id, OLD.stripe_id, OLD.type, OLD.api_version, OLD.livemode, OLD.created, OLD.payload, OLD.received_at) THEN
        RAISE EXCEPTION 'stripe event %: only processed_at, attempts and last_error may change', OLD.stripe_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.processed_at IS NOT NULL AND NEW.processed_at IS DISTINCT FROM OLD.processed_at THEN
        RAISE EXCEPTION 'stripe event % was processed at %: that cannot change', OLD.stripe_id, OLD.processed_at
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.attempts < OLD.attempts THEN
        RAISE EXCEPTION 'stripe event %: attempts only grow', OLD.stripe_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER webhooks_stripeevent_guard
    BEFORE UPDATE OR DELETE ON webhooks_stripeevent
    FOR EACH ROW EXECUTE FUNCTION webhooks_guard_stripe_event();
CREATE TRIGGER webhooks_stripeevent_append_only_truncate
    BEFORE TRUNCATE ON webhooks_stripeevent
    FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
"""

UNGUARD = """
DROP TRIGGER IF EXISTS webhooks_stripeevent_guard ON webhooks_stripeevent;
DROP TRIGGER IF EXISTS webhooks_stripeevent_append_only_truncate ON webhooks_stripeevent;
DROP FUNCTION IF EXISTS webhooks_guard_stripe_event();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0001_stripe_events"),
        ("billing_project", "0004_truncate_only_in_test_databases"),
    ]

    operations = [migrations.RunSQL(GUARD, UNGUARD)]
