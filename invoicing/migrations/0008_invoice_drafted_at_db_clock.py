"""Invoices keep when their draft was written on the database's clock (drafted_at), the one
usage's received_at is on, so that the late-usage look-back compares one clock with itself.

The column is added empty first, then given its default: invoices drafted before this
migration keep no drafted_at (the look-back falls back to created_at for them) instead of
all looking drafted at the moment of the migration, which would hide late usage received
since their real draft."""

import django.db.models.functions.datetime
from django.db import migrations, models

HELP = "When the draft was written, on the database's clock (the one usage's received_at is on)."


class Migration(migrations.Migration):
    dependencies = [
        ("invoicing", "0007_billing_periods"),
    ]

    operations = [
        migrations.AddField(
            model_name="invoice",
            name="drafted_at",
            field=models.DateTimeField(editable=False, help_text=HELP, null=True),
        ),
        migrations.AlterField(
            model_name="invoice",
            name="drafted_at",
            field=models.DateTimeField(
                db_default=django.db.models.functions.datetime.Now(), editable=False, help_text=HELP, null=True
            ),
        ),
    ]
