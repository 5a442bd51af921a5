"""Finalized invoices are frozen below the ORM; the credit ledger is append-only."""

from django.db import migrations

from billing_project.db import append_only

FROZEN = [
    "tenant_id", "subscription_id", "boundary_id", "currency", "series", "number", "period_start", "period_end",
    "subtotal", "tax", "credit_applied", "total", "tax_status", "seller", "buyer", "created_at", "finalized_at",
    "due_at",
]  # fmt: skip

INVOICE_GUARD = f"""
CREATE OR REPLACE FUNCTION invoicing_invoice_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is finalized: DELETE refused', OLD.number
                USING ERRCODE = 'insufficient_privilege', HINT = 'Correct it with a credit note.';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'draft' THEN
        RETURN NEW;
    END IF;
    IF ({", ".join(f"OLD.{c}" for c in FROZEN)}) IS DISTINCT FROM ({", ".join(f"NEW.{c}" for c in FROZEN)})
       OR (OLD.stripe_invoice_id IS NOT NULL AND NEW.stripe_invoice_id IS DISTINCT FROM OLD.stripe_invoice_id)
       OR (OLD.stripe_number <> '' AND NEW.stripe_number IS DISTINCT FROM OLD.stripe_number) THEN
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
CREATE TRIGGER invoicing_invoice_guard BEFORE UPDATE OR DELETE ON invoicing_invoice
    FOR EACH ROW EXECUTE FUNCTION invoicing_invoice_guard();

CREATE OR REPLACE FUNCTION invoicing_line_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    invoice_status text;
BEGIN
    SELECT status INTO invoice_status FROM invoicing_invoice
        WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END;
    IF invoice_status IS DISTINCT FROM 'draft'
       OR (TG_OP = 'UPDATE' AND OLD.invoice_id <> NEW.invoice_id) THEN
        RAISE EXCEPTION 'invoice lines of a finalized invoice cannot change (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege', HINT = 'Correct it with a credit note.';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
CREATE TRIGGER invoicing_line_guard BEFORE INSERT OR UPDATE OR DELETE ON invoicing_invoiceline
    FOR EACH ROW EXECUTE FUNCTION invoicing_line_guard();
"""

UNGUARD = """
DROP TRIGGER IF EXISTS invoicing_invoice_guard ON invoicing_invoice;
DROP TRIGGER IF EXISTS invoicing_line_guard ON invoicing_invoiceline;
DROP FUNCTION IF EXISTS invoicing_invoice_guard();
DROP FUNCTION IF EXISTS invoicing_line_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0001_initial"), ("billing_project", "0002_append_only_audit_groups_system_user")]

    operations = [
        migrations.RunSQL(INVOICE_GUARD, UNGUARD),
        append_only("invoicing_creditentry"),
    ]
