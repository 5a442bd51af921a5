"""The invoice guard allows a finalized invoice one change: its buyer as printed replaced by
the pseudonymised form, once the retention period of the seller's country has ended after
the tenant's erasure (privacy/). Only in a transaction that says so (billing.buyer_erasure),
only from a buyer not erased yet, and only to the account reference and country it had,
marked erased; every other column stays frozen as before (0003)."""

from django.db import migrations

FROZEN = [
    "tenant_id", "subscription_id", "boundary_id", "currency", "series", "number", "period_start", "period_end",
    "subtotal", "tax", "credit_applied", "total", "tax_status", "seller", "created_at", "finalized_at",
    "due_at",
]  # fmt: skip
SET_ONCE = ["paid_at", "voided_at", "uncollectible_at"]


def guard(frozen: list[str], buyer_rule: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION invoicing_invoice_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    issued text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is finalized: DELETE refused', OLD.number
                USING ERRCODE = 'insufficient_privilege', HINT = 'Correct it with a credit note.';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'draft' THEN
        IF NEW.status = 'draft' THEN
            RETURN NEW;
        END IF;
        SELECT series || '-' || year || '-' || lpad(last_number::text, 6, '0') INTO issued
            FROM invoicing_invoicesequence
            WHERE series = NEW.series AND year = extract(year FROM NEW.finalized_at AT TIME ZONE 'UTC');
        IF NEW.status NOT IN ('open', 'paid') OR NEW.number IS DISTINCT FROM issued THEN
            RAISE EXCEPTION 'invoice finalization refused: % with number % (the sequence is at %)',
                NEW.status, NEW.number, issued
                USING ERRCODE = 'insufficient_privilege', HINT = 'Finalize through invoicing.services.';
        END IF;
        RETURN NEW;
    END IF;
    IF ({", ".join(f"OLD.{c}" for c in frozen)}) IS DISTINCT FROM ({", ".join(f"NEW.{c}" for c in frozen)})
       OR (OLD.stripe_invoice_id IS NOT NULL AND NEW.stripe_invoice_id IS DISTINCT FROM OLD.stripe_invoice_id)
       OR (OLD.stripe_number <> '' AND NEW.stripe_number IS DISTINCT FROM OLD.stripe_number)
       {"".join(f"OR (OLD.{c} IS NOT NULL AND NEW.{c} IS DISTINCT FROM OLD.{c}) " for c in SET_ONCE)}THEN
        RAISE EXCEPTION 'invoice % is finalized: its content cannot change', OLD.number
            USING ERRCODE = 'insufficient_privilege', HINT = 'Correct it with a credit note.';
    END IF;
    {buyer_rule}
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
        (OLD.status = 'open' AND NEW.status IN ('paid', 'void', 'uncollectible'))
        OR (OLD.status = 'uncollectible' AND NEW.status IN ('paid', 'void'))
    ) THEN
        RAISE EXCEPTION 'invoice %: % → % refused', OLD.number, OLD.status, NEW.status
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
"""


BUYER_RULE = """IF NEW.buyer IS DISTINCT FROM OLD.buyer AND NOT (
        coalesce(current_setting('billing.buyer_erasure', true), '') = 'on'
        AND NOT (OLD.buyer ? 'erased')
        AND NEW.buyer = jsonb_strip_nulls(jsonb_build_object(
            'reference', nullif(OLD.buyer ->> 'reference', ''),
            'country', nullif(OLD.buyer ->> 'country', ''),
            'erased', true))
    ) THEN
        RAISE EXCEPTION 'invoice % is finalized: its buyer changes only when its retention ended after an erasure',
            OLD.number USING ERRCODE = 'insufficient_privilege', HINT = 'privacy.services.buyers_erase_due';
    END IF;"""


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0013_audit_chain")]

    operations = [migrations.RunSQL(guard(FROZEN, BUYER_RULE), guard([*FROZEN, "buyer"], ""))]
