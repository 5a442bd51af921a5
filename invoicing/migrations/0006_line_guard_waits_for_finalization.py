"""The line guard reads its invoice's status FOR SHARE: a line written while another
transaction finalizes the invoice waits for it, then sees `open` and is refused, so an
invoice's total is always the sum of its lines."""

from django.db import migrations

LINE_GUARD = """
CREATE OR REPLACE FUNCTION invoicing_line_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    invoice_status text;
BEGIN
    SELECT status INTO invoice_status FROM invoicing_invoice
        WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END
        FOR SHARE;
    IF invoice_status IS DISTINCT FROM 'draft'
       OR (TG_OP = 'UPDATE' AND OLD.invoice_id <> NEW.invoice_id) THEN
        RAISE EXCEPTION 'invoice lines of a finalized invoice cannot change (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege', HINT = 'Correct it with a credit note.';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0005_credit_notes")]

    # Going back keeps this guard: 0002's differs only in not waiting.
    operations = [migrations.RunSQL(LINE_GUARD, migrations.RunSQL.noop)]
