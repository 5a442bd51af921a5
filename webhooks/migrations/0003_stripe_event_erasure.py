"""A stored Stripe event stays what Stripe sent, with one exception: an erasure (privacy/) may
replace the personal values in its payload (a customer's name, email, phone, address, as
Stripe put them in the event) by "(erased)", in a transaction that says so
(billing.stripe_event_erasure), and nothing else about it (billing_erased_only, billing_project
migration 0008)."""

from django.db import migrations


def guard(payload_rule: str) -> str:
    return rf"""
CREATE OR REPLACE FUNCTION webhooks_guard_stripe_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'webhooks_stripeevent is append-only: DELETE refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.id, NEW.stripe_id, NEW.type, NEW.api_version, NEW.livemode, NEW.created, NEW.received_at)
       IS DISTINCT FROM
       (OLD.id, OLD.stripe_id, OLD.type, OLD.api_version, OLD.livemode, OLD.created, OLD.received_at)
       OR (NEW.payload IS DISTINCT FROM OLD.payload AND NOT ({payload_rule})) THEN
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
"""


class Migration(migrations.Migration):
    dependencies = [("webhooks", "0002_stripe_events_guard"), ("billing_project", "0008_audit_entry_erasure")]

    operations = [
        migrations.RunSQL(
            guard(
                "coalesce(current_setting('billing.stripe_event_erasure', true), '') = 'on'"
                " AND billing_erased_only(OLD.payload::jsonb, NEW.payload::jsonb)"
            ), guard("false")
        )
    ]
