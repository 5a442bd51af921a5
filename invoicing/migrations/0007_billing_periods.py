"""Invoices read billing periods: an invoice bills one period's usage (`period`), each
fee and usage line names the period it bills, and every line carries its currency.

Existing invoices are linked from the boundary event they closed to the period that
event closed. Their lines are frozen by the line guard, so it is lifted for this one
statement (inside the migration's transaction) and the guard gains a currency rule:
a line is in its invoice's currency, whatever writes it.
"""

import django.db.models.deletion
from django.db import migrations, models

LINE_GUARD = """
CREATE OR REPLACE FUNCTION invoicing_line_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    invoice_status text;
    invoice_currency text;
BEGIN
    SELECT status, currency INTO invoice_status, invoice_currency FROM invoicing_invoice
        WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END
        FOR SHARE;
    IF invoice_status IS DISTINCT FROM 'draft'
       OR (TG_OP = 'UPDATE' AND OLD.invoice_id <> NEW.invoice_id) THEN
        RAISE EXCEPTION 'invoice lines of a finalized invoice cannot change (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege', HINT = 'Correct it with a credit note.';
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.currency IS DISTINCT FROM invoice_currency THEN
        RAISE EXCEPTION 'an invoice line in % on an invoice in % refused', NEW.currency, invoice_currency
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
"""

LINK_EXISTING = """
SET CONSTRAINTS ALL IMMEDIATE;  -- no pending FK checks before the table is altered
ALTER TABLE invoicing_invoiceline DISABLE TRIGGER invoicing_line_guard;
UPDATE invoicing_invoiceline l SET currency = i.currency FROM invoicing_invoice i WHERE i.id = l.invoice_id;
UPDATE invoicing_invoice i SET period_id = p.id
    FROM subscriptions_billingperiod p
    WHERE p.closed_by_id = i.boundary_id AND p.kind = 'paid' AND i.boundary_id IS NOT NULL;
UPDATE invoicing_invoiceline l SET billing_period_id = p.id
    FROM invoicing_invoice i, subscriptions_billingperiod p
    WHERE i.id = l.invoice_id AND p.subscription_id = i.subscription_id
      AND l.kind IN ('base_fee', 'usage', 'late_usage')
      AND p.start = l.period_start AND p."end" = l.period_end
      AND NOT EXISTS (SELECT 1 FROM invoicing_invoiceline o WHERE o.kind = 'base_fee' AND l.kind = 'base_fee'
                      AND o.billing_period_id = p.id);
ALTER TABLE invoicing_invoiceline ENABLE TRIGGER invoicing_line_guard;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("invoicing", "0006_line_guard_waits_for_finalization"),
        ("subscriptions", "0007_billing_periods"),
    ]

    operations = [
        migrations.AddField(
            model_name="invoice",
            name="period",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="invoice",
                to="subscriptions.billingperiod",
            ),
        ),
        migrations.AddField(
            model_name="invoiceline",
            name="billing_period",
            field=models.ForeignKey(
                blank=True,
                help_text="The period whose base fee or usage this line bills.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="invoice_lines",
                to="subscriptions.billingperiod",
            ),
        ),
        migrations.AddField(
            model_name="invoiceline",
            name="currency",
            field=models.CharField(default="", max_length=3),
            preserve_default=False,
        ),
        migrations.RunSQL(LINK_EXISTING, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="invoiceline",
            name="currency",
            field=models.CharField(help_text="Always the invoice's (a trigger refuses another).", max_length=3),
        ),
        migrations.AddConstraint(
            model_name="invoiceline",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "base_fee")),
                fields=("billing_period",),
                name="invoiceline_one_fee_per_period",
            ),
        ),
        migrations.RunSQL(LINE_GUARD, migrations.RunSQL.noop),
    ]
