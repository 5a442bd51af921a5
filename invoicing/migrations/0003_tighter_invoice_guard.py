"""A tighter invoice guard: a draft becomes final only as `open` (or `paid`, when nothing is
due) and with the number its sequence has just handed out, so no number can be typed in
or skipped; and collection dates, once set, never move."""

from django.db import migrations

FROZEN = [
    "tenant_id", "subscription_id", "boundary_id", "currency", "series", "number", "period_start", "period_end",
    "subtotal", "tax", "credit_applied", "total", "tax_status", "seller", "buyer", "created_at", "finalized_at",
    "due_at",
]  # fmt: skip
SET_ONCE = ["paid_at", "voided_at", "uncollectible_at"]

GUARD = f"""
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
    IF ({", ".join(f"OLD.{c}" for c in FROZEN)}) IS DISTINCT FROM ({", ".join(f"NEW.{c}" for c in FROZEN)})
       OR (OLD.stripe_invoice_id IS NOT NULL AND NEW.stripe_invoice_id IS DISTINCT FROM OLD.stripe_invoice_id)
       OR (OLD.stripe_number <> '' AND NEW.stripe_number IS DISTINCT FROM OLD.stripe_number)
       {"".join(f"OR (OLD.{c} IS NOT NULL AND NEW.{c} IS DISTINCT FROM OLD.{c}) " for c in SET_ONCE)}THEN
        RAISE EXCEPTION 'invoice % is finalized: its content cannot change', OLD.number
            USING ERRCODE = 'insufficient_privilege', HINT = 'Correct it with a credit note.';
    END IF;
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


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0002_finalized_invoices_are_frozen")]

    # Going back keeps this stricter guard: 0002's is a subset of it.
    operations = [migrations.RunSQL(GUARD, migrations.RunSQL.noop)]
